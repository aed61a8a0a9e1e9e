"""The ``corral`` command: ``corral demo`` and ``corral bench``.

Exit status: 0 on success; 1 if the demo saw one of its promises broken (peak connections
above the limit, a wrong count, an error that did not surface) or the benchmark failed a
check; 2 for bad arguments; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

__all__ = ["main"]

PROG = "corral"

DESCRIPTION = """\
corral: Go's concurrency patterns (errgroup, singleflight, weighted semaphore, channels,
fan-out, pipelines) for asyncio and threads. This command shows them at work and measures
them."""

EPILOG = """\
commands:
  demo    run a small dashboard service over SQLite that fans out with a Group,
          deduplicates cache misses with SingleFlight and limits database connections
          with a Semaphore, under many concurrent requests; prints what it measured
  bench   time corral against hand-rolled asyncio/threading code and peer libraries,
          in one process; prints ns per item and corral's ratio to the best peer

Start with `corral demo`; `corral COMMAND --help` lists a command's options."""

DEMO_DESCRIPTION = """\
A dashboard service over a real SQLite database (users, orders, stats, notifications),
created and seeded in a temporary file unless --db is given. Each request fans out with a
corral Group to three lookups (orders, stats, notifications); each lookup reads the user
through an in-memory cache with SingleFlight on a miss; every query holds a Semaphore
permit (the limit on database connections). Requests pick users with a skewed (Zipf)
distribution, so many hit the same users at once. One request's stats lookup fails on
purpose, to show the Group cancelling its siblings and raising the error.

Every figure printed is counted during the run: SQLite counts its own queries, the
connection pool measures connections in use."""

DEMO_EPILOG = """\
examples:
  corral demo                                 the defaults, a few seconds
  corral demo --flavor threads                the same service on threads
  corral demo --db-limit 2 --concurrency 200  a tighter connection limit, more load
  corral demo --db /tmp/dash.db               keep the database (reused on the next run)
  corral demo --json                          one JSON object, for scripts

exit status: 0 ok; 1 if a promise was broken (e.g. more connections in use than
--db-limit); 2 for bad arguments."""

BENCH_DESCRIPTION = """\
Runs corral and its peers (hand-rolled asyncio/threading code, and libraries such as anyio,
trio, janus, culsans, aiometer when installed) on the same workloads in one process, and
prints a table: ns per item for each, and corral's ratio to the best peer on each row
(below 1.0 means corral is faster). A peer that is not installed is reported as missing,
never estimated. Install the peers with `pip install 'corral[bench]'` or `make bench`.

Timings are only comparable on a quiet machine: the command warns when the machine is busy."""

BENCH_EPILOG = """\
examples:
  corral bench                      every row (a few minutes)
  corral bench --quick              every row, smaller (under a minute)
  corral bench --only ROW [ROW...]  some rows (see the list above)
  corral bench --loop uvloop        asyncio rows on uvloop (if installed)
  corral bench --quick --json       one JSON object, for scripts"""


# --- argument types: each names what it wants, so argparse's error is clear ---------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of milliseconds, got {text!r}"
        ) from None
    if not math.isfinite(value) or value < 0 or value > 60_000:
        raise argparse.ArgumentTypeError(f"must be between 0 and 60000 ms, got {text}")
    return value


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the descriptions' line breaks; show each option's default."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"corral {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    demo = sub.add_parser(
        "demo",
        help="run the dashboard demo (Group + SingleFlight + Semaphore over SQLite)",
        description=DEMO_DESCRIPTION,
        epilog=DEMO_EPILOG,
        formatter_class=_Formatter,
    )
    load = demo.add_argument_group("load")
    load.add_argument(
        "--requests",
        type=_positive_int,
        default=2000,
        metavar="N",
        help="dashboard requests to serve",
    )
    load.add_argument(
        "--concurrency",
        type=_positive_int,
        default=64,
        metavar="N",
        help="requests in flight at once",
    )
    load.add_argument(
        "--users",
        type=_positive_int,
        default=500,
        metavar="N",
        help="users in a new database; requests pick among them with a Zipf skew",
    )
    load.add_argument(
        "--seed",
        type=_int,
        default=1,
        metavar="N",
        help="seed for the data and the choice of users",
    )
    service = demo.add_argument_group("service")
    service.add_argument(
        "--flavor",
        choices=("asyncio", "threads"),
        default="asyncio",
        help="run the service on asyncio tasks (corral) or on threads (corral.threads)",
    )
    service.add_argument(
        "--db-limit",
        type=_positive_int,
        default=8,
        metavar="N",
        help="database connections allowed at once (the Semaphore's size)",
    )
    service.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="SQLite file to use: created and seeded if missing, reused if it is a demo "
        "database (default: a temporary file, deleted afterwards)",
    )
    service.add_argument(
        "--query-ms",
        type=_milliseconds,
        default=2.0,
        metavar="MS",
        help="simulated network round trip of each query, holding its connection",
    )
    service.add_argument(
        "--cache-ttl-ms",
        type=_milliseconds,
        default=50.0,
        metavar="MS",
        help="how long a user stays in the in-memory cache",
    )
    demo.add_argument(
        "--json",
        action="store_true",
        help="print the figures as one JSON object instead of a report",
    )
    demo.add_argument(
        "--engine",
        choices=("local", "dask"),
        default="local",
        help="dask: instead, a pipeline whose CPU stage moves from run_in='process' to a Dask "
        "LocalCluster with one argument changed (needs corral[dask]; the options above are "
        "not used)",
    )
    demo.set_defaults(handler=_cmd_demo)

    bench = sub.add_parser(
        "bench",
        help="time corral against hand-rolled code and peer libraries",
        description=BENCH_DESCRIPTION,
        epilog=BENCH_EPILOG,
        formatter_class=_Formatter,
    )
    bench.add_argument(
        "--quick", action="store_true", help="smaller workloads and fewer repeats: under a minute"
    )
    bench.add_argument(
        "--only",
        nargs="+",
        metavar="ROW",
        default=None,
        help="run only these rows: ids (chan.async.cap128), globs (chan.*) or prefixes (sem)",
    )
    bench.add_argument("--list", action="store_true", help="list the rows and exit")
    bench.add_argument(
        "--repeat",
        type=_positive_int,
        default=None,
        metavar="N",
        help="timed repeats per implementation (default: 5, or 3 with --quick)",
    )
    bench.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop for the asyncio rows (uvloop must be installed)",
    )
    bench.add_argument(
        "--json",
        action="store_true",
        help="print the results as one JSON object instead of a table",
    )
    bench.set_defaults(handler=_cmd_bench)
    return parser


# --- commands ----------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.engine == "dask":
        return _cmd_demo_dask(args, parser)
    from ._demo import DatabaseError, DemoConfig, format_text, run_demo

    if args.db is not None:
        if args.db.is_dir():
            parser.error(f"argument --db: {str(args.db)!r} is a directory; give a file path")
        if not args.db.parent.is_dir():
            parser.error(f"argument --db: directory {str(args.db.parent)!r} does not exist")
    cfg = DemoConfig(
        requests=args.requests,
        concurrency=args.concurrency,
        users=args.users,
        db_limit=args.db_limit,
        flavor=args.flavor,
        db=args.db,
        query_ms=args.query_ms,
        cache_ttl_ms=args.cache_ttl_ms,
        seed=args.seed,
    )
    try:
        result = run_demo(cfg)
    except DatabaseError as exc:
        parser.error(f"argument --db: {exc}")
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(format_text(result))
    for problem in result.problems:
        print(f"{PROG} demo: problem: {problem}", file=sys.stderr)
    return 1 if result.problems else 0


def _cmd_demo_dask(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        import distributed  # noqa: F401 - only to say clearly what is missing
    except ImportError:
        parser.error("argument --engine: dask needs the extra: pip install 'corral[dask]'")
    from ._demo.on_dask import format_dask_text, run_dask_demo

    result = run_dask_demo()
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(format_dask_text(result))
    if not result.equal or result.left_on_cluster:
        print(f"{PROG} demo: problem: results differ or tasks left on the cluster", file=sys.stderr)
        return 1
    return 0


def _cmd_bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import _bench

    if args.list:
        for row in _bench.all_rows():
            print(row.id)
            if row.note:
                print(textwrap.fill(row.note, 96, initial_indent="    ", subsequent_indent="    "))
        return 0
    try:
        _bench.select_rows(args.only)
    except _bench.BenchError as exc:
        parser.error(f"argument --only: {exc}")
    progress: Callable[[str], None] | None = None
    if sys.stderr.isatty():

        def progress(line: str) -> None:
            print(f"  {line}", file=sys.stderr, flush=True)

    try:
        report = _bench.run(args.only, args.quick, args.repeat or 0, args.loop, progress=progress)
    except _bench.BenchError as exc:  # e.g. --loop uvloop without uvloop installed
        parser.error(f"argument --loop: {exc}" if "loop" in str(exc) else str(exc))
    if args.json:
        print(report.to_json())
        for warning in report.warnings:  # the table shows them; JSON readers may not look
            print(f"{PROG} bench: warning: {warning}", file=sys.stderr)
    else:
        print(report.to_table(), end="")
    broken = [r for r in report.results if r.status == "error" and not r.peer]
    for r in broken:
        print(f"{PROG} bench: {r.benchmark} / {r.impl} failed: {r.error}", file=sys.stderr)
    return 1 if broken else 0


# --- entry point -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``corral`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    handler: Callable[[argparse.Namespace, argparse.ArgumentParser], int] = args.handler
    sub = _subparser(parser, args.command)
    try:
        return handler(args, sub)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`corral bench --list | head`): not an error of ours. Point
        # stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    _fail(parser, f"unknown command {name!r}")


def _fail(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    parser.error(message)
