#!/usr/bin/env python3
"""Generate corral's thread flavour from its asyncio flavour (httpcore's unasync).

    python scripts/unasync_patterns.py          # rewrite every generated thread twin
    python scripts/unasync_patterns.py --check  # exit 1 if any is out of date (CI, tests)

Two sets of twins (``twins()``):

* the patterns: each ``src/corral/_patterns/_aio_<part>.py`` (see ``PARTS``) becomes
  ``_threads_<part>.py``;
* the Redis extension: ``src/corral/_redis/aio.py`` (``corral.redis``'s SingleFlight) and
  ``aio_semaphore.py`` (its Semaphore) become ``threads.py`` and ``threads_semaphore.py``
  (``corral.threads.redis``).

Each is rewritten line by line (``async def`` -> ``def``, ``await x`` -> ``x``, ``__anext__``
-> ``__next__``, ``_rt_aio`` -> ``_rt_threads``, ``from ._aio_<x>`` -> ``from ._threads_<x>``,
and in docstring examples ``asyncio.run(main())`` -> ``main()`` and ``corral.fan_out`` ->
``corral.threads.fan_out``; the Redis table has its own names and the few docstring lines
that say something else for threads), then formatted with ruff, so each generated file passes
``ruff format --check``. Whatever truly differs between the flavours lives in ``_rt_aio.py``
/ ``_rt_threads.py`` (one pair per package), never in a rule here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = ROOT / "src/corral/_patterns"
# Every asyncio-flavour module with a generated thread twin: _aio_<part>.py -> _threads_<part>.py
PARTS = ("workers", "flow", "relays")

# Names that differ between `corral` and `corral.threads` (the rest are the same objects).
_FLAVOURED = "fan_out|fan_in|pipeline|or_done|tee|Channel|select|Semaphore|Group"

# The language: the same for every twin.
LANGUAGE: list[tuple[str, str]] = [
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\baclose\b", "close"),
]

SUBS: list[tuple[str, str]] = [
    # imports and the flavour's runtime module
    (r"from \. import _rt_aio as rt", "from . import _rt_threads as rt"),
    (r"^from \._aio_(\w+) import", r"from ._threads_\1 import"),
    # docstring examples
    (r"import asyncio, corral\b", "import corral.threads"),
    (r"asyncio\.run\((.*)\)$", r"\1"),
    (rf"\bcorral\.({_FLAVOURED})\b", r"corral.threads.\1"),
    (r"\bThe asyncio flavour\b", "The thread flavour"),
    *LANGUAGE,
    # what the rewrite leaves un-idiomatic
    (r"\[x for x in self\]", "list(self)"),
]

REDIS = ROOT / "src/corral/_redis"
# Docstring lines that say something else for threads: whole lines, and each must match
# (generate() fails otherwise), so an edit of the line in aio.py cannot leave it stale.
REDIS_LINES: list[tuple[str, str]] = [
    (
        r"^(\s*)a leader gives the lease up at once, so a follower elsewhere takes over\.$",
        r"\1a follower stops waiting; a leader's ``fn`` runs on unless it watches that Context.",
    ),
    (
        r"^(\s*)An ``async def`` fn is awaited; a plain function runs in a worker thread\.",
        r"\1``fn`` runs in the thread of this process's flight.",
    ),
    (
        r"^(\s*)``await`` it for a :class:`Permit`, or use it with ``async with``\.$",
        r"\1It blocks until they are granted and returns a :class:`Permit`; ``with`` releases it.",
    ),
]
REDIS_SUBS: list[tuple[str, str]] = [
    # imports and the flavour's runtime module
    (r"from \. import _rt_aio as rt", "from . import _rt_threads as rt"),
    (r"^from \.aio import", "from .threads import"),
    (r"^from \.aio_semaphore import", "from .threads_semaphore import"),
    (r"^(\s*)from \.rate_aio import", r"\1from .rate_threads import"),
    (r"^from \.grant_aio import", "from .grant_threads import"),
    (r"^from \.\._aio\.", "from .._threads."),
    (r"\brt\.Acquire\[(\w+)\]", r"\1"),  # a blocking acquire() returns the Permit itself
    *REDIS_LINES,
    # names in docstrings and reprs
    (r"\bfor asyncio\b", "for threads"),
    (r"\bimport asyncio, ", "import "),
    (r"\bredis\.asyncio\b", "redis"),
    (r"\bcorral\.redis\b", "corral.threads.redis"),
    (r"\bcorral\.SingleFlight\b", "corral.threads.SingleFlight"),
    *LANGUAGE,
]
# The Redis rate limits (rate_aio.py -> rate_threads.py): the same rules, and a local sleep.
RATE_SUBS: list[tuple[str, str]] = [
    (r"^import asyncio$", "import time"),
    (r"\basyncio\.sleep\(", "time.sleep("),
    (r"^_TASKS = True$", "_TASKS = False"),
    (
        r"^#: Which workers ``rate=`` may run this flavour's acquire in: tasks \(asyncio\)\.$",
        "#: Which workers ``rate=`` may run this flavour's acquire in: threads.",
    ),
    *REDIS_SUBS,
]


@dataclass(frozen=True)
class Twin:
    """One generated module: ``target`` rewritten from ``source`` with ``subs``."""

    source: Path
    target: Path
    subs: list[tuple[str, str]]
    required: list[tuple[str, str]] = field(default_factory=list)  # rules that must match

    def header(self) -> str:
        src = self.source.relative_to(ROOT)
        rt = self.source.parent / "_rt_threads.py"
        return (
            f"# GENERATED from {src} by scripts/unasync_patterns.py.\n"
            f"# Do not edit: change {src.name} (or {rt.name}) and run the script again.\n"
        )


def twins() -> list[Twin]:
    """Every generated module."""
    made = [Twin(PATTERNS / f"_aio_{p}.py", PATTERNS / f"_threads_{p}.py", SUBS) for p in PARTS]
    return [
        *made,
        Twin(REDIS / "aio.py", REDIS / "threads.py", REDIS_SUBS, REDIS_LINES[:2]),
        Twin(
            REDIS / "aio_semaphore.py",
            REDIS / "threads_semaphore.py",
            REDIS_SUBS,
            REDIS_LINES[2:],
        ),
        Twin(REDIS / "rate_aio.py", REDIS / "rate_threads.py", RATE_SUBS, RATE_SUBS[:3]),
        Twin(REDIS / "limits_aio.py", REDIS / "limits_threads.py", REDIS_SUBS),
        Twin(REDIS / "grant_aio.py", REDIS / "grant_threads.py", REDIS_SUBS),
    ]


def _ruff(args: list[str], text: str, path: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(path), "-"],
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"ruff {args[0]} failed on the generated code:\n{out.stderr}")
    return out.stdout


def _ruff_format(text: str, path: Path) -> str:
    # Renamed imports (_aio_x -> _threads_x) may sort differently: sort them, then format.
    text = _ruff(["check", "--select", "I", "--fix", "--quiet", "--exit-zero"], text, path)
    return _ruff(["format"], text, path)


def generate(twin: Twin) -> str:
    lines = twin.source.read_text().splitlines(keepends=True)
    out = []
    used: set[str] = set()
    for line in lines:
        for pattern, repl in twin.subs:
            line, n = re.subn(pattern, repl, line)
            if n:
                used.add(pattern)
        out.append(line)
    unused = [pattern for pattern, _ in twin.required if pattern not in used]
    if unused:
        raise SystemExit(f"{twin.source.relative_to(ROOT)} has no line matching {unused}")
    return _ruff_format(twin.header() + "".join(out), twin.target)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for twin in twins():
        target = twin.target
        text = generate(twin)
        if check:
            if not target.exists() or target.read_text() != text:
                stale.append(target)
            continue
        target.write_text(text)
        print(f"wrote {target.relative_to(ROOT)}")
    # A _threads_*.py no source generates any more (a part renamed or removed) is stale too.
    made = {twin.target for twin in twins()}
    orphans = sorted(set(PATTERNS.glob("_threads_*.py")) - made)
    for path in orphans:
        if check:
            stale.append(path)
        else:
            print(f"note: {path.relative_to(ROOT)} is no longer generated: delete it")
    # An asyncio-flavour module missing from PARTS would have no thread twin at all.
    unlisted = sorted(set(PATTERNS.glob("_aio_*.py")) - {twin.source for twin in twins()})
    for path in unlisted:
        print(f"{path.relative_to(ROOT)} has no thread twin: add its part to PARTS")
    for path in stale:
        print(f"{path.relative_to(ROOT)} is out of date: run scripts/unasync_patterns.py")
    return 1 if stale or unlisted else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
