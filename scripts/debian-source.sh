# shellcheck shell=bash
# Sourced, not run: fetch a Debian source package (its orig tarball) from another suite through
# a private apt configuration, leaving the system's apt sources and lists untouched.
#
#   source scripts/debian-source.sh
#   debian_source_download <apt-dir> <suite> <source-package> <dest-dir>
#
# The mirror is the one this machine's apt already uses (debian_mirror reads it from
# /etc/apt/sources.list.d/*.sources, else sources.list): no host name is written in the repo.
# <apt-dir> holds the private sources list, lists and cache; the suite's source index is
# fetched once per apt-dir and suite per shell (a second package reuses it).

debian_mirror() {  # prints the Debian archive URI of the system's apt sources (one reader)
  "$(dirname "${BASH_SOURCE[0]}")/debian-mirror.sh"
}

_DEBIAN_SOURCE_READY=""
debian_source_download() {  # apt-dir suite package dest
  local apt_dir="$1" suite="$2" pkg="$3" dest="$4" mirror
  local -a opts=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list"
    -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir/cache"
    -o "APT::Sandbox::User=root"
  )
  if [[ "$_DEBIAN_SOURCE_READY" != "$apt_dir $suite" ]]; then
    mirror="$(debian_mirror)" || return 1
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources.list.d"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" >"$apt_dir/sources.list"
    echo "fetching the $suite source index (private apt lists in $apt_dir)" >&2
    apt-get "${opts[@]}" update -q >&2 || return 1
    _DEBIAN_SOURCE_READY="$apt_dir $suite"
  fi
  mkdir -p "$dest"
  (cd "$dest" && apt-get "${opts[@]}" source --download-only "$pkg" >&2)
}
