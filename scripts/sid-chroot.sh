#!/usr/bin/env bash
# A Debian sid chroot with CPython 3.14 and 3.15 for CI: create it, or reuse it from a cache dir.
#
# No 3.14/3.15 source can be fetched on this machine (Debian lists the tarballs, they answer 404),
# so neither can be built as 3.13t is (build-python-ft.sh); Debian sid's *binary* packages can be
# had. This script debootstraps a minimal sid (~40 s), installs into it
#
#   python3.14 python3.14-venv python3.15 python3.15-venv   the interpreters under test
#   redis-server (8.x) valkey-server (9.x)                 the tests start their own, on loopback
#   make                                                    `make test` runs inside
#
# (~20 s), copies the host's CA bundle to /etc/ssl/ca-host.crt inside (pip and build isolation
# need it where a proxy re-signs TLS) and mounts /proc and /dev (rbind: /dev/shm is where
# multiprocessing's semaphores live, and Dask's LocalCluster uses them). The chroot shares the
# host's network, so servers started inside listen on the host's loopback.
#
# The 3.14/3.15 runs use sid's redis-server 8 (the host's /usr/bin is not visible inside), while
# the host's runs (3.11, 3.13t) use the host's: CI covers two Redis majors for free.
#
# Usage (root: debootstrap, chroot and mount need it; CI runs as root):
#   scripts/sid-chroot.sh              create or reuse; mount proc and /dev; print the root dir
#   scripts/sid-chroot.sh bind DIR     also bind-mount DIR (absolute) at the same path inside,
#                                      so a clone's paths match in and out (idempotent)
#   scripts/sid-chroot.sh unbind DIR   undo `bind DIR` (what .ci/run does at exit)
#   scripts/sid-chroot.sh umount       unmount everything mounted under the root (binds, /dev,
#                                      /proc), deepest first; the tree stays for the next run
#   scripts/sid-chroot.sh run DIR CMD...
#                                      run CMD inside, in DIR (bound first), with the CA bundle
#                                      and a clean PATH; the caller's other variables pass through
#
# Mounts stay up between calls (a second call finds them and does nothing); `umount` undoes them.
# Never delete the root dir with mounts up: `rm -rf` would walk into the host's /dev. The cache
# is rebuilt when a wanted package is missing (the stamp lists them). Environment:
#   CORRAL_SID_ROOT       the chroot        (default: $HOME/.cache/corral-sid/root)
#   CORRAL_DEBIAN_MIRROR  Debian archive    (default: read from this machine's apt sources, see
#                                            scripts/debian-mirror.sh; no host name in the repo)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${CORRAL_SID_ROOT:-$HOME/.cache/corral-sid/root}"
ROOT="${ROOT%/}"
PACKAGES=(python3.14 python3.14-venv python3.15 python3.15-venv redis-server valkey-server make)
STAMP="$ROOT/.corral-sid-packages"
# sid's Release files are signed but may be past their Valid-Until on a snapshot mirror.
APT_OPTS=(-o Acquire::Check-Valid-Until=false -o Acquire::Check-Date=false -o APT::Install-Recommends=false -q)
CA_INSIDE=/etc/ssl/ca-host.crt

log() { printf '[sid-chroot] %s\n' "$*" >&2; }

sid_env() {
  # What a command run inside needs: the CA bundle for pip/uv/ssl, and a PATH (chroot keeps
  # the caller's, which may name host-only dirs).
  echo "PIP_CERT=$CA_INSIDE"
  echo "SSL_CERT_FILE=$CA_INSIDE"
  echo "REQUESTS_CA_BUNDLE=$CA_INSIDE"
  echo "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  echo "DEBIAN_FRONTEND=noninteractive"
}

is_mounted() { mountpoint -q "$1" 2>/dev/null; }

mount_all() {
  mkdir -p "$ROOT/proc" "$ROOT/dev"
  is_mounted "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  if ! is_mounted "$ROOT/dev"; then
    mount --rbind /dev "$ROOT/dev"
    # slave: unmounting the chroot's view never propagates back to the host's /dev.
    mount --make-rslave "$ROOT/dev"
  fi
}

umount_all() {
  # Every mount point under the root, deepest first (sort -r on the path puts a child before
  # its parent); again while any is left, since one path can hold stacked mounts (two runs that
  # bound it at once). /proc/mounts escapes spaces as \040; CI paths have none.
  local points pass
  for pass in 1 2 3 4 5; do
    points="$(awk -v root="$ROOT" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/mounts | sort -r -u)"
    [[ -z "$points" ]] && return 0
    while read -r p; do
      umount "$p" 2>/dev/null || umount -l "$p"
    done <<<"$points"
  done
}

ready() {
  [[ -f "$STAMP" && "$(cat "$STAMP")" == "${PACKAGES[*]}" ]] &&
    [[ -x "$ROOT/usr/bin/python3.14" && -x "$ROOT/usr/bin/python3.15" && -x "$ROOT/usr/bin/redis-server" ]]
}

case "${1:-setup}" in
  setup) ;;
  bind)
    dir="${2:?usage: sid-chroot.sh bind /absolute/dir}"
    [[ "$dir" == /* && -d "$dir" ]] || { log "bind: '$dir' is not an absolute directory"; exit 2; }
    ready || { log "bind: no chroot at $ROOT yet (run scripts/sid-chroot.sh first)"; exit 1; }
    dir="$(cd "$dir" && pwd -P)"
    mkdir -p "$ROOT$dir"
    # Serialized: two lanes binding at once would both see it unmounted and stack two mounts.
    exec 8>"$(dirname "$ROOT")/.bind.lock"
    flock 8
    is_mounted "$ROOT$dir" || mount --bind "$dir" "$ROOT$dir"
    exec 8>&-
    echo "$ROOT"
    exit 0
    ;;
  unbind)
    dir="${2:?usage: sid-chroot.sh unbind /absolute/dir}"
    dir="$(cd "$dir" 2>/dev/null && pwd -P || echo "$dir")"
    # In a loop, in case two binds stacked. Never lazily: a run still inside (another CI run
    # of the same clone) would lose its files mid-test; a busy mount is left, with a warning.
    for _ in 1 2 3 4 5; do
      is_mounted "$ROOT$dir" || break
      umount "$ROOT$dir" 2>/dev/null || { log "unbind: $ROOT$dir is in use; left mounted"; break; }
    done
    exit 0
    ;;
  umount)
    umount_all
    exit 0
    ;;
  run)
    dir="${2:?usage: sid-chroot.sh run /absolute/dir CMD...}"
    shift 2
    "$0" bind "$dir" >/dev/null
    dir="$(cd "$dir" && pwd -P)"
    # PIP_FIND_LINKS and the like may name host-only paths: unset, pip then warns about nothing.
    # shellcheck disable=SC2046
    exec chroot "$ROOT" env -u PIP_FIND_LINKS -u VIRTUAL_ENV -u PYTHONHOME $(sid_env) \
      sh -c 'cd "$1" && shift && exec "$@"' sh "$dir" "$@"
    ;;
  *)
    log "unknown command '$1' (setup, bind DIR, unbind DIR, run DIR CMD..., umount)"
    exit 2
    ;;
esac

[[ $(id -u) -eq 0 ]] || { log "needs root (debootstrap, chroot, mount)"; exit 1; }

if ready; then
  mount_all
  log "reusing $ROOT ($(chroot "$ROOT" python3.14 -V 2>&1), $(chroot "$ROOT" python3.15 -V 2>&1))"
  echo "$ROOT"
  exit 0
fi

mkdir -p "$(dirname "$ROOT")"
# Two CI runs on one machine must not debootstrap into one dir at once.
exec 9>"$(dirname "$ROOT")/.lock"
flock 9
if ready; then  # another run finished it while we waited
  mount_all
  echo "$ROOT"
  exit 0
fi

if [[ ! -x "$ROOT/usr/bin/apt-get" ]]; then
  command -v debootstrap >/dev/null 2>&1 || {
    log "installing debootstrap (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2 ||
      { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2; }
  }
  mirror="$("$HERE/debian-mirror.sh")"
  # A half-made tree (an interrupted debootstrap) is rebuilt from scratch, never finished:
  # unmount first, so removing it cannot reach the host's /dev or /proc.
  umount_all
  rm -rf "$ROOT"
  log "debootstrap --variant=minbase sid $ROOT (the machine's Debian mirror)"
  started=$SECONDS
  debootstrap --variant=minbase sid "$ROOT" "$mirror" >"$(dirname "$ROOT")/debootstrap.log" 2>&1 ||
    { tail -30 "$(dirname "$ROOT")/debootstrap.log" >&2; exit 1; }
  log "debootstrap done in $((SECONDS - started)) s"
fi

mount_all
# The host's CA bundle: pip (PIP_CERT) and build isolation (SSL_CERT_FILE) inside use it.
host_ca="${SSL_CERT_FILE:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}"
[[ -f "$host_ca" ]] || { log "no CA bundle at $host_ca (set SSL_CERT_FILE)"; exit 1; }
install -D -m 0644 "$host_ca" "$ROOT$CA_INSIDE"
# Name resolution: debootstrap copies resolv.conf, but a reused tree may hold a stale one.
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
# No service starts inside (redis-server's package would start one on port 6379 otherwise):
# the tests start their own servers on free ports.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"

log "apt-get install ${PACKAGES[*]}"
started=$SECONDS
# shellcheck disable=SC2046
chroot "$ROOT" env $(sid_env) apt-get "${APT_OPTS[@]}" update >&2
chroot "$ROOT" env $(sid_env) apt-get "${APT_OPTS[@]}" install -y "${PACKAGES[@]}" >&2
chroot "$ROOT" apt-get clean
log "apt done in $((SECONDS - started)) s"
echo "${PACKAGES[*]}" >"$STAMP"
ready || { log "packages installed but python3.14/python3.15/redis-server missing in $ROOT"; exit 1; }
log "ready: $ROOT ($(chroot "$ROOT" python3.14 -V), $(chroot "$ROOT" python3.15 -V), $(chroot "$ROOT" redis-server --version | cut -d' ' -f3))"
echo "$ROOT"
