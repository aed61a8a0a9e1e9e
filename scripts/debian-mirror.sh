#!/usr/bin/env bash
# Print the Debian archive this machine's apt already uses, e.g. "http://host/debian".
#
# corral's scripts fetch Debian packages (a sid chroot for Python 3.14/3.15, trixie's CPython
# source for 3.13t) and must not name a mirror themselves: a host name written in the repo is
# wrong on the next machine (a corporate proxy, a snapshot, an air-gapped mirror). The machine's
# apt configuration already says where Debian lives, so read it from there:
#
#   1. $CORRAL_DEBIAN_MIRROR, when set (an explicit override);
#   2. the `URIs:` of the deb822 files /etc/apt/sources.list.d/*.sources;
#   3. the `deb`/`deb-src` lines of /etc/apt/sources.list and /etc/apt/sources.list.d/*.list.
#
# The first URI whose path ends in /debian wins (the main archive, not .../debian-security nor a
# third-party repository). Exits 1, naming the files read, when none does.
set -euo pipefail

if [[ -n "${CORRAL_DEBIAN_MIRROR:-}" ]]; then
  echo "${CORRAL_DEBIAN_MIRROR%/}"
  exit 0
fi

APT_ETC="${CORRAL_APT_ETC:-/etc/apt}"  # a test can point this at a fake tree
shopt -s nullglob
candidates=()
for f in "$APT_ETC"/sources.list.d/*.sources; do
  # deb822: "URIs: uri [uri...]" (continuation lines are not used for URIs in practice).
  while read -r uri; do candidates+=("$uri"); done < <(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f")
done
for f in "$APT_ETC"/sources.list "$APT_ETC"/sources.list.d/*.list; do
  [[ -f "$f" ]] || continue
  # one-line style: "deb [options] uri suite components"; the options are one bracketed field
  # or several (when they contain spaces).
  while read -r uri; do candidates+=("$uri"); done < <(awk '
    $1 == "deb" || $1 == "deb-src" {
      i = 2
      if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if (i <= NF) print $i
    }' "$f")
done

for uri in "${candidates[@]}"; do
  uri="${uri%/}"
  if [[ "$uri" =~ ^https?://.+/debian$ ]]; then
    echo "$uri"
    exit 0
  fi
done
echo "debian-mirror.sh: no Debian archive (a URI ending in /debian) in $APT_ETC/sources.list{,.d/*.sources,.d/*.list};" \
  "set CORRAL_DEBIAN_MIRROR" >&2
exit 1
