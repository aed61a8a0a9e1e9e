#!/usr/bin/env bash
# Build (or reuse) a free-threaded CPython 3.13 (`--disable-gil`, "3.13t") for CI.
#
# No 3.13t binary is packaged for this machine's Debian (bookworm) and none can be downloaded, so
# it is built from the upstream source tarball that Debian trixie ships for python3.13 (3.13.5).
# Only Debian's *orig* tarball is built, not Debian's patched tree: those patches assume Debian's
# own install layout, while this interpreter lives in a private prefix.
#
# The apt metadata for trixie's deb-src goes into a private sources list and private state/cache
# directories under the work dir, so the system's apt sources and lists are never touched.
#
# Prints the interpreter's path on its last line of stdout. Reuses an interpreter already at the
# prefix when it runs with the GIL off, so only a fresh machine pays the build (9 min on 2
# cores, niced, beside CI's test lanes). Environment:
#   CORRAL_FT_PREFIX   install prefix       (default: $HOME/.cache/corral-python-ft/3.13t)
#   CORRAL_FT_WORK     download/build dir   (default: $HOME/.cache/corral-python-ft/work)
#   CORRAL_FT_JOBS     make -j              (default: nproc)
#   CORRAL_DEBIAN_MIRROR  Debian archive    (default: the machine's apt sources)
set -euo pipefail

PREFIX="${CORRAL_FT_PREFIX:-$HOME/.cache/corral-python-ft/3.13t}"
WORK="${CORRAL_FT_WORK:-$HOME/.cache/corral-python-ft/work}"
JOBS="${CORRAL_FT_JOBS:-$(nproc 2>/dev/null || echo 2)}"
# The Debian archive this machine's apt uses (never a host name written here): see
# scripts/debian-mirror.sh; CORRAL_DEBIAN_MIRROR overrides it.
MIRROR="$("$(dirname "${BASH_SOURCE[0]}")/debian-mirror.sh")"
SUITE="trixie"
WANT_VERSION="3.13.5"
PY="$PREFIX/bin/python3.13t"

log() { printf '[build-python-ft] %s\n' "$*" >&2; }

works() {
  [[ -x "$PY" ]] && "$PY" -c "
import sys, sqlite3, ssl, ctypes, zlib, bz2, lzma
assert sys.version_info[:2] == (3, 13), sys.version
assert not sys._is_gil_enabled(), 'GIL is enabled'
" >/dev/null 2>&1
}

if works; then
  log "reusing $PY ($("$PY" -VV | head -1))"
  echo "$PY"
  exit 0
fi

mkdir -p "$WORK"
# Two CI runs (or two engineers) on one machine must not build into one prefix at once.
exec 9>"$WORK/.lock"
flock 9
if works; then  # another run finished the build while we waited for the lock
  log "reusing $PY (built by a concurrent run)"
  echo "$PY"
  exit 0
fi

# --- build dependencies (from the system's own sources; installed only when missing) ---------
DEPS=(build-essential pkg-config libssl-dev zlib1g-dev libffi-dev libbz2-dev libsqlite3-dev
  liblzma-dev libreadline-dev libgdbm-dev uuid-dev libncurses-dev libexpat1-dev xz-utils)
missing=()
for p in "${DEPS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing build dependencies: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
    $SUDO apt-get update -q >&2
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  fi
fi

# --- source: trixie's python3.13 via a private apt configuration -----------------------------
APT_DIR="$WORK/apt"
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/sources.list.d"
cat >"$APT_DIR/sources.list" <<SRC
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main
SRC
APT_OPTS=(
  -o "Dir::Etc::SourceList=$APT_DIR/sources.list"
  -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d"
  -o "Dir::State::Lists=$APT_DIR/lists"
  -o "Dir::Cache=$APT_DIR/cache"
  -o "APT::Sandbox::User=root"
)
SRC_DIR="$WORK/src"
mkdir -p "$SRC_DIR"
orig="$(ls "$SRC_DIR"/python3.13_"$WANT_VERSION"*.orig.tar.* 2>/dev/null | head -1 || true)"
if [[ -z "$orig" ]]; then
  log "fetching python3.13 source from $MIRROR $SUITE (private apt lists in $APT_DIR)"
  apt-get "${APT_OPTS[@]}" update -q >&2
  (cd "$SRC_DIR" && apt-get "${APT_OPTS[@]}" source --download-only python3.13 >&2)
  orig="$(ls "$SRC_DIR"/python3.13_*.orig.tar.* 2>/dev/null | head -1 || true)"
  [[ -n "$orig" ]] || { log "no python3.13 orig tarball downloaded"; exit 1; }
  case "$orig" in
    *"_$WANT_VERSION"*) ;;
    *) log "note: trixie ships $(basename "$orig"), not $WANT_VERSION; building that" ;;
  esac
fi

# --- build -----------------------------------------------------------------------------------
BUILD="$WORK/build"
rm -rf "$BUILD"
mkdir -p "$BUILD"
log "unpacking $(basename "$orig")"
tar -xf "$orig" -C "$BUILD" --strip-components=1
cd "$BUILD"
log "configure --disable-gil --prefix=$PREFIX"
# Not --enable-optimizations: PGO triples the build time; CI measures ratios, not absolutes.
# --disable-test-modules: no CPython test suite (Lib/test, 140 MB, and its C test modules),
# which `make install` would byte-compile three times over; corral's tests use none of it.
./configure --disable-gil --disable-test-modules --prefix="$PREFIX" --with-ensurepip=install >"$WORK/configure.log" 2>&1 ||
  { tail -40 "$WORK/configure.log" >&2; exit 1; }
log "make -j$JOBS (log: $WORK/make.log)"
# nice: the machine is shared; the build should not starve others' test runs.
nice -n 10 make -j"$JOBS" >"$WORK/make.log" 2>&1 || { tail -60 "$WORK/make.log" >&2; exit 1; }
rm -rf "$PREFIX"
make install >"$WORK/install.log" 2>&1 || { tail -40 "$WORK/install.log" >&2; exit 1; }
cd "$WORK" && rm -rf "$BUILD"

if ! works; then
  log "built $PY but it does not run with the GIL off (or lacks sqlite3/ssl/ctypes):"
  "$PY" -c "import sys; print(sys.version); print('gil', sys._is_gil_enabled()); import sqlite3, ssl, ctypes" >&2 || true
  exit 1
fi
log "built $PY ($("$PY" -VV | head -1))"
echo "$PY"
