#!/usr/bin/env python3
"""Run corral's benchmark rows: a thin wrapper over ``corral._bench`` (what ``corral bench`` runs).

    python bench/run.py                      # every row, full size, best of 5
    python bench/run.py --quick              # every row, small, best of 3 (< 1 minute)
    python bench/run.py chan.async.cap128 sem --json out.json
    python bench/run.py --list

The table goes to stdout, progress to stderr. Exit status 1 if a corral implementation failed
its own correctness check or crashed (a peer's failure is reported in the table, a missing peer
as MISSING; neither fails the run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import corral._bench as engine
except ImportError:  # a checkout without `pip install -e .`: use the tree next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import corral._bench as engine


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("rows", nargs="*", help="row ids, globs (chan.async.*) or prefixes (sem)")
    ap.add_argument("--quick", action="store_true", help="fewer items and repeats")
    ap.add_argument("--repeat", type=int, default=0, help="measured runs (default 5, quick 3)")
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default=None)
    ap.add_argument("--gc", choices=["on", "off"], default=None, help="override every row's GC")
    ap.add_argument("--json", metavar="PATH", help="also write the JSON report ('-': stdout)")
    ap.add_argument("--list", action="store_true", help="list the rows and exit")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)

    def progress(line: str) -> None:
        print(f"  {line}", file=sys.stderr, flush=True)

    try:
        if args.list:
            for row in engine.select_rows(args.rows or None):
                impls = ", ".join(i.name for i in row.impls)
                print(f"{row.id:<30} {impls}")
            return 0
        report = engine.run(
            args.rows or None,
            quick=args.quick,
            repeat=args.repeat,
            loop=args.loop,
            gc_mode=args.gc,
            progress=None if args.quiet else progress,
        )
    except engine.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json == "-":
        print(report.to_json())
    else:
        print(report.to_table(), end="")
        if args.json:
            Path(args.json).write_text(report.to_json() + "\n")
    broken = [r for r in report.results if r.status == "error" and not r.peer]
    for r in broken:
        print(f"error: {r.benchmark} / {r.impl} failed: {r.error}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
