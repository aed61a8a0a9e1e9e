#!/usr/bin/env bash
# Build corral's sdist and wheel, check them, and exercise the wheel as a user gets it.
#
#   scripts/check-package.sh [PYTHON]     (make package; .ci/run's packaging block)
#
# PYTHON (default .venv/bin/python) builds the packages and runs twine (the `dist` extra:
# build, twine). Steps, each fatal:
#   1. build the sdist, then the wheel *from the sdist* (uv build and python -m build both do
#      that): a file the sdist lacks breaks the wheel build or shows up missing in step 3;
#   2. twine check --strict on both (metadata, the README renders on PyPI);
#   3. contents: every file under src/corral is in the wheel (py.typed included) and nothing
#      else is; the sdist holds what its tests and docs read; neither holds CI or build junk;
#   4. a fresh venv, the wheel installed (not editable) and run from an empty temp dir, so no
#      source tree is on sys.path: the imports, `corral --help`, `python -m corral --help`,
#      every docs/examples/*.py of the sdist, and the sdist's own tests that exercise the
#      installed package (tests/examples, the README's snippets, the docstring examples,
#      the docstring check, the docs site's example checks).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
PY="${1:-.venv/bin/python}"
[[ "$PY" == /* ]] || PY="$ROOT/$PY"
export UV_PYTHON_DOWNLOADS=never PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export PYTHONDONTWRITEBYTECODE=1

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
step() { printf '\n--- package: %s\n' "$*"; }
fail() { echo "package check FAILED: $*" >&2; exit 1; }
have_uv() { command -v uv >/dev/null 2>&1; }

# --- 1. build ---------------------------------------------------------------------------------
step "build the sdist, then the wheel from it"
if have_uv; then
  uv build --quiet --python "$PY" --out-dir "$WORK/dist" .
else
  "$PY" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; fail "build"; }
fi
shopt -s nullglob
sdists=("$WORK"/dist/*.tar.gz)
wheels=("$WORK"/dist/*.whl)
[[ ${#sdists[@]} -eq 1 && ${#wheels[@]} -eq 1 ]] || fail "expected one sdist and one wheel, got: $(ls "$WORK/dist")"
SDIST="${sdists[0]}"
WHEEL="${wheels[0]}"
ls -l "$WORK/dist" | tail -n +2

# --- 2. twine check ---------------------------------------------------------------------------
step "twine check --strict"
"$PY" -m twine check --strict "$SDIST" "$WHEEL"

# --- 3. contents ------------------------------------------------------------------------------
step "contents of the wheel and the sdist"
mkdir "$WORK/sdist"
tar -xzf "$SDIST" -C "$WORK/sdist"
SRC_TREE="$(echo "$WORK"/sdist/*/)"
SRC_TREE="${SRC_TREE%/}"
"$PY" - "$WHEEL" "$SRC_TREE" "$ROOT" <<'PY'
import sys
import zipfile
from pathlib import Path

wheel, sdist, root = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
problems = []


def junk(name: str) -> bool:
    return "__pycache__" in name or name.endswith((".pyc", ".pyo"))


# The wheel: exactly the package's files (py.typed and any data file included) + metadata.
names = zipfile.ZipFile(wheel).namelist()
in_wheel = {n for n in names if not n.split("/")[0].endswith(".dist-info")}
want = {
    p.relative_to(root / "src").as_posix()
    for p in (root / "src" / "corral").rglob("*")
    if p.is_file() and not junk(p.as_posix())
}
if missing := sorted(want - in_wheel):
    problems.append(f"wheel lacks {missing}")
if extra := sorted(in_wheel - want):
    problems.append(f"wheel has files that are not in src/corral: {extra}")
for need in ("corral/py.typed", "corral/__init__.py", "corral/threads/__init__.py"):
    if need not in in_wheel:
        problems.append(f"wheel lacks {need}")
entry = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
if not entry or "corral = corral.cli:main" not in zipfile.ZipFile(wheel).read(entry[0]).decode():
    problems.append("wheel lacks the `corral` console script")

# The sdist: the wheel's sources, and what its tests and docs site read.
need_sdist = [
    "pyproject.toml",
    "README.md",
    "mkdocs.yml",
    "src/corral/py.typed",
    "tests/conftest.py",
    "scripts/unasync_patterns.py",
    *(
        p.relative_to(root).as_posix()
        for p in sorted((root / "docs").rglob("*"))
        if p.is_file() and not junk(p.as_posix())
    ),
]
for rel in need_sdist:
    if not (sdist / rel).is_file():
        problems.append(f"sdist lacks {rel}")
for bad in (".ci", ".venv", "site", "dist", ".git"):
    if (sdist / bad).exists():
        problems.append(f"sdist contains {bad}/")
pyc = [str(p.relative_to(sdist)) for p in sdist.rglob("*") if junk(p.as_posix())]
if pyc:
    problems.append(f"sdist contains compiled files: {pyc[:5]}")

if problems:
    sys.exit("\n".join(problems))
print(f"wheel: {len(in_wheel)} package files, py.typed and the console script present")
print(f"sdist: {sum(1 for p in sdist.rglob('*') if p.is_file())} files, {len(need_sdist)} required present")
PY

# --- 4. the installed wheel -------------------------------------------------------------------
step "install the wheel into a fresh venv"
VENV="$WORK/venv"
if have_uv; then
  uv venv --quiet --python "$PY" "$VENV"
  # pytest & co. only to run the sdist's tests below; corral itself needs nothing. The
  # extras come through the wheel's own metadata (so a broken extra fails here), because the
  # sdist's doctest test imports corral.redis and corral.dask.
  uv pip install --quiet --python "$VENV/bin/python" "$WHEEL[redis,dask]" pytest pytest-timeout hypothesis
else
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet "$WHEEL[redis,dask]" pytest pytest-timeout hypothesis
fi
VPY="$VENV/bin/python"
RUN="$WORK/run"  # an empty directory: nothing of the source tree is importable from here
mkdir "$RUN"
cd "$RUN"

step "imports, metadata, py.typed, corral --help"
"$VPY" -I - "$VENV" <<'PY'
import importlib.metadata as md
import sys
from pathlib import Path

import corral
import corral.testing
import corral.threads

venv = Path(sys.argv[1]).resolve()
where = Path(corral.__file__).resolve()
assert venv in where.parents, f"corral imported from {where}, not from the venv {venv}"
dist = md.distribution("corral")
assert dist.version == corral.__version__, (dist.version, corral.__version__)
# Not editable: the installed files are the package, no .pth pointing at a source tree.
assert not list(Path(where.parent.parent).glob("*corral*.pth")), "an editable install?"
assert (where.parent / "py.typed").is_file(), "py.typed not installed"
assert corral.threads.Channel and corral.testing.explore
print(f"corral {corral.__version__} from {where.parent}")
PY
"$VENV/bin/corral" --help >"$WORK/help.txt"
grep -q "demo" "$WORK/help.txt" && grep -q "bench" "$WORK/help.txt" || fail "corral --help lacks its commands"
"$VPY" -I -m corral --help >/dev/null

step "the sdist's docs/examples against the installed wheel"
# The examples that talk to Redis (they read REDIS_URL: the fleet rate-limit one) get a private
# redis-server on a free loopback port, stopped on exit; without one they fail, as they should.
REDIS_PID=""
trap 'if [[ -n "$REDIS_PID" ]]; then kill "$REDIS_PID" 2>/dev/null; fi; rm -rf "$WORK"' EXIT
if command -v redis-server >/dev/null 2>&1; then
  REDIS_PORT="$("$VPY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  "$VPY" - "$REDIS_URL" <<'PY' || fail "redis-server for the examples did not start"
import sys, time, redis
c = redis.Redis.from_url(sys.argv[1])
for _ in range(200):
    try:
        c.ping()
        break
    except redis.ConnectionError:
        time.sleep(0.05)
else:
    sys.exit(1)
PY
fi
for ex in "$SRC_TREE"/docs/examples/*.py; do
  if ! "$VPY" -I "$ex" >"$WORK/ex.out" 2>"$WORK/ex.err" || [[ -s "$WORK/ex.err" ]]; then
    cat "$WORK/ex.err" >&2
    fail "example $(basename "$ex")"
  fi
  echo "ok  docs/examples/$(basename "$ex") ($(wc -l <"$WORK/ex.out") lines of output)"
done

step "the sdist's tests that exercise the installed package"
# Run from the unpacked sdist, which has no corral on sys.path (src layout, and tests/ is not a
# package at its top): `import corral` finds the wheel's copy.
cd "$SRC_TREE"
# `python -m` puts the current directory on sys.path: make sure that is not where corral is.
"$VPY" -c "import corral, pathlib, sys; p = pathlib.Path(corral.__file__).resolve()
sys.exit(0 if pathlib.Path(sys.argv[1]).resolve() in p.parents else f'corral from {p}')" "$VENV"
"$VPY" -m pytest -q -p no:cacheprovider tests/examples tests/test_readme.py tests/test_doctests.py \
  tests/test_public_docstrings.py tests/test_docs_site.py

echo
echo "package check OK: $(basename "$SDIST"), $(basename "$WHEEL")"
