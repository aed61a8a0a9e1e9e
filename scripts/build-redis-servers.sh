#!/usr/bin/env bash
# Build (or reuse) Redis 8 and Valkey 9 servers for corral's server matrix (tests/redis_ext).
#
# This machine's Debian (bookworm) packages redis-server 7.0 only. Debian sid packages Redis 8
# and Valkey 9, but its *binaries* need sid's glibc (2.4x), so they cannot run on a bookworm host
# by path, and a sid chroot is not something a fresh CI machine has. So, as
# scripts/build-python-ft.sh does for CPython, the upstream *orig* tarballs that Debian sid ships
# (`apt-get source --download-only` through a private sources list and private apt state dirs,
# scripts/debian-source.sh; the system's apt configuration is never touched) are built with a plain `make`: no TLS, no
# systemd, libc malloc, none of Redis 8's optional modules. Only the server and the cli are kept.
#
# Each build lives in its own cache dir, $CACHE/<name>-<version>/bin, and is reused when its
# server answers `--version` with the wanted major version, so only a fresh machine pays the
# builds (measured on 2 shared cores: see docs/redis.md, "Servers tested").
#
# Prints one line per server on stdout, in the format of CORRAL_REDIS_SERVERS
# (tests/redis_ext/conftest.py):
#   redis8=/…/redis-8.0.6/bin/redis-server
#   valkey9=/…/valkey-9.1.2/bin/valkey-server
# so CI can run  CORRAL_REDIS_SERVERS="$(scripts/build-redis-servers.sh | tr '\n' ' ')".
# The cli sits next to each server (redis-cli, valkey-cli). Environment:
#   CORRAL_REDIS_CACHE  cache dir            (default: $HOME/.cache/corral-redis)
#   CORRAL_REDIS_JOBS   make -j              (default: nproc)
#   CORRAL_REDIS_BUILD  which servers to build, space-separated (default: "redis8 valkey9")
set -euo pipefail

CACHE="${CORRAL_REDIS_CACHE:-$HOME/.cache/corral-redis}"
JOBS="${CORRAL_REDIS_JOBS:-$(nproc 2>/dev/null || echo 2)}"
read -r -a WANTED <<<"${CORRAL_REDIS_BUILD:-redis8 valkey9}"
SUITE="sid"

log() { printf '[build-redis-servers] %s\n' "$*" >&2; }

# name -> Debian source package, binary prefix, wanted major version
source_of() { case "$1" in redis8) echo redis ;; valkey9) echo valkey ;; *) return 1 ;; esac; }
major_of() { case "$1" in redis8) echo 8 ;; valkey9) echo 9 ;; *) return 1 ;; esac; }

# The server at $1 runs and reports major version $2 ("Redis server v=8.0.6 ...").
works() {
  [[ -x "$1" ]] && "$1" --version 2>/dev/null | grep -qE " v=$2\."
}

reuse() {  # name: prints the path of a cached, working server, if any
  local src major bin
  src="$(source_of "$1")" major="$(major_of "$1")"
  for bin in "$CACHE/$src-$major".*/bin/"$src-server"; do
    if works "$bin" "$major"; then echo "$bin"; return 0; fi
  done
  return 1
}

mkdir -p "$CACHE"
# Two CI runs on one machine must not build into one cache dir at once.
exec 9>"$CACHE/.lock"
flock 9

# shellcheck source=scripts/debian-source.sh
source "$(dirname "${BASH_SOURCE[0]}")/debian-source.sh"

BUILT=""
build() {  # name: downloads, builds and installs one server into $BUILT (no subshell: the
  # suite's source index is fetched once per run)
  local name="$1" src major work orig version dest start
  src="$(source_of "$name")" major="$(major_of "$name")"
  work="$CACHE/work-$src"
  rm -rf "$work" && mkdir -p "$work"
  debian_source_download "$CACHE/apt" "$SUITE" "$src" "$work"
  orig="$(ls "$work/${src}_"*.orig.tar.* 2>/dev/null | head -1 || true)"
  [[ -n "$orig" ]] || { log "no $src orig tarball downloaded"; return 1; }
  version="$(basename "$orig" | sed -E "s/^${src}_([^-]+)\.orig\.tar\..*/\1/; s/\+dfsg.*//")"
  [[ "$version" == "$major".* ]] || { log "$SUITE ships $src $version, not $major.x"; return 1; }
  mkdir -p "$work/build"
  tar -xf "$orig" -C "$work/build" --strip-components=1
  log "building $src $version: make -j$JOBS (log: $work/make.log)"
  start=$SECONDS
  # MALLOC=libc: no bundled jemalloc to build; BUILD_TLS/USE_SYSTEMD off: no -dev packages
  # needed. nice: the machine is shared; the build must not starve others' test runs.
  (cd "$work/build" && nice -n 10 make -j"$JOBS" MALLOC=libc BUILD_TLS=no USE_SYSTEMD=no \
    >"$work/make.log" 2>&1) || { tail -40 "$work/make.log" >&2; return 1; }
  dest="$CACHE/$src-$version"
  rm -rf "$dest" && mkdir -p "$dest/bin"
  cp "$work/build/src/$src-server" "$work/build/src/$src-cli" "$dest/bin/" 2>/dev/null ||
    cp "$work/build/src/redis-server" "$work/build/src/redis-cli" "$dest/bin/"
  # Valkey's build may name its binaries redis-*; keep both names available.
  [[ -x "$dest/bin/$src-server" ]] || mv "$dest/bin/redis-server" "$dest/bin/$src-server"
  [[ -x "$dest/bin/$src-cli" ]] || mv "$dest/bin/redis-cli" "$dest/bin/$src-cli"
  rm -rf "$work"
  works "$dest/bin/$src-server" "$major" || { log "built $dest/bin/$src-server but it does not run"; return 1; }
  log "built $src $version in $((SECONDS - start)) s: $dest/bin"
  BUILT="$dest/bin/$src-server"
}

for name in "${WANTED[@]}"; do
  source_of "$name" >/dev/null || { log "unknown server '$name' (known: redis8 valkey9)"; exit 2; }
  if bin="$(reuse "$name")"; then
    log "reusing $bin ($("$bin" --version | head -1))"
  else
    build "$name"
    bin="$BUILT"
  fi
  echo "$name=$bin"
done
