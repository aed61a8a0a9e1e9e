#!/usr/bin/env python3
"""Generate corral's thread-flavour patterns from the asyncio flavour (httpcore's unasync).

    python scripts/unasync_patterns.py          # rewrite src/corral/_patterns/_threads.py
    python scripts/unasync_patterns.py --check  # exit 1 if it is out of date (CI, tests)

The source, ``src/corral/_patterns/_aio.py``, is rewritten token by token (``async def``
-> ``def``, ``await x`` -> ``x``, ``__anext__`` -> ``__next__``, ``_rt_aio`` ->
``_rt_threads``, and in docstring examples ``asyncio.run(main())`` -> ``main()`` and
``corral.fan_out`` -> ``corral.threads.fan_out``), then formatted with ruff, so the
generated file passes ``ruff format --check``. Whatever truly differs between the
flavours lives in ``_rt_aio.py`` / ``_rt_threads.py``, never in a rule here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src/corral/_patterns/_aio.py"
TARGET = ROOT / "src/corral/_patterns/_threads.py"

# Names that differ between `corral` and `corral.threads` (the rest are the same objects).
_FLAVOURED = "fan_out|fan_in|pipeline|or_done|tee|Channel|select|Semaphore|Group"

SUBS: list[tuple[str, str]] = [
    # imports and the flavour's runtime module
    (r"from \. import _rt_aio as rt", "from . import _rt_threads as rt"),
    # docstring examples
    (r"import asyncio, corral\b", "import corral.threads"),
    (r"asyncio\.run\((.*)\)$", r"\1"),
    (rf"\bcorral\.({_FLAVOURED})\b", r"corral.threads.\1"),
    (r"\bThe asyncio flavour\b", "The thread flavour"),
    # the language
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
    # what the rewrite leaves un-idiomatic
    (r"\[x for x in self\]", "list(self)"),
]

HEADER = (
    "# GENERATED from src/corral/_patterns/_aio.py by scripts/unasync_patterns.py.\n"
    "# Do not edit: change _aio.py (or _rt_threads.py) and run the script again.\n"
)


def _ruff_format(text: str, path: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(path), "-"],
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"ruff format failed on the generated code:\n{out.stderr}")
    return out.stdout


def generate() -> str:
    lines = SOURCE.read_text().splitlines(keepends=True)
    out = []
    for line in lines:
        for pattern, repl in SUBS:
            line = re.sub(pattern, repl, line)
        out.append(line)
    return _ruff_format(HEADER + "".join(out), TARGET)


def main(argv: list[str]) -> int:
    text = generate()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run scripts/unasync_patterns.py")
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
