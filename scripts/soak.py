#!/usr/bin/env python3
"""Soak test: a million items through a 3-stage pipeline, 4 workers per stage.

Checks what a long run must not do: grow memory after warm-up (measured with tracemalloc,
limit 2 MB), grow the number of threads, or lose, duplicate or corrupt an item. Not part of
CI (it takes minutes); run it by hand before a release:

    python scripts/soak.py                       # asyncio flavour, task workers
    python scripts/soak.py --flavour threads     # corral.threads.pipeline, thread workers
    python scripts/soak.py --items 200000        # a shorter run

It prints one line per checkpoint and a verdict; the exit status is 0 when every check
holds. Memory is tracemalloc's count of bytes allocated by Python and still alive, after a
``gc.collect()``, relative to the first checkpoint after warm-up; on failure the lines that
grew most are listed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import corral
import corral.threads

MB = 1024 * 1024


@dataclass
class Soak:
    flavour: str
    items: int
    stages: int
    workers: int
    warmup: int
    limit_mb: float
    seconds: float = 0.0
    received: int = 0
    checksum_ok: bool = False
    growth_mb: float = 0.0  # the largest growth over the warm-up baseline
    threads: list[int] = field(default_factory=list)  # live threads at each checkpoint
    threads_before: int = 0  # before the pipeline starts
    threads_after: int = 0  # once it has been left: every worker thread joined
    samples_mb: list[float] = field(default_factory=list)
    top_growth: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.received == self.items
            and self.checksum_ok
            and self.growth_mb < self.limit_mb
            and len(set(self.threads)) <= 1
            and self.threads_after == self.threads_before
        )


class Meter:
    """Called with each received item; measures at the warm-up mark and every ``every``."""

    def __init__(self, soak: Soak, every: int) -> None:
        self.soak = soak
        self.every = every
        self.count = 0
        self.total = 0
        self.baseline = 0
        self.snapshot: tracemalloc.Snapshot | None = None
        self.started = time.perf_counter()

    def __call__(self, y: int) -> None:
        self.count += 1
        self.total += y
        n = self.count
        if n == self.soak.warmup:
            gc.collect()
            self.baseline = tracemalloc.get_traced_memory()[0]
            self.snapshot = tracemalloc.take_snapshot()
            self.soak.threads.append(threading.active_count())
            self._print(0.0)
        elif n > self.soak.warmup and (n % self.every == 0 or n == self.soak.items):
            gc.collect()
            grown = (tracemalloc.get_traced_memory()[0] - self.baseline) / MB
            self.soak.samples_mb.append(round(grown, 3))
            if n < self.soak.items:  # at the last item, workers are already leaving
                self.soak.threads.append(threading.active_count())
            self._print(grown)

    def _print(self, grown: float) -> None:
        rate = self.count / (time.perf_counter() - self.started)
        print(
            f"  {self.count:>9} items  memory {grown:+7.3f} MB over warm-up  "
            f"threads {threading.active_count():>3}  ({rate:,.0f} items/s)",
            flush=True,
        )

    def finish(self) -> None:
        s = self.soak
        s.received = self.count
        n = s.items
        # Stages x+1, x*2, x-1: sum over x < n of 2x + 1 is n**2.
        s.checksum_ok = self.total == n * n
        s.growth_mb = round(max(s.samples_mb, default=0.0), 3)
        if self.snapshot is not None and s.growth_mb >= s.limit_mb:
            gc.collect()
            diff = tracemalloc.take_snapshot().compare_to(self.snapshot, "lineno")
            s.top_growth = [str(d) for d in diff[:10]]


def _stage_fns() -> list[Callable[[int], int]]:
    return [lambda x: x + 1, lambda x: x * 2, lambda x: x - 1]


async def _run_aio(soak: Soak, meter: Meter) -> None:
    fns = _stage_fns()

    def as_async(fn: Callable[[int], int]) -> Callable[[int], Any]:
        async def step(x: int) -> int:
            return fn(x)

        return step

    stages = [corral.stage(as_async(f), workers=soak.workers) for f in fns[: soak.stages]]
    async with corral.pipeline(range(soak.items), *stages) as out:
        async for y in out:
            meter(y)


def _run_threads(soak: Soak, meter: Meter) -> None:
    fns = _stage_fns()
    stages = [corral.threads.stage(f, workers=soak.workers) for f in fns[: soak.stages]]
    with corral.threads.pipeline(range(soak.items), *stages) as out:
        for y in out:
            meter(y)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flavour", choices=["aio", "threads"], default="aio")
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=4, help="workers per stage")
    p.add_argument("--warmup", type=int, default=None, help="default: a tenth of --items")
    p.add_argument("--checkpoints", type=int, default=10)
    p.add_argument("--limit-mb", type=float, default=2.0)
    p.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = p.parse_args(argv)
    if args.items < 10:
        p.error("--items must be >= 10")
    warmup = args.warmup if args.warmup is not None else max(1, args.items // 10)
    soak = Soak(args.flavour, args.items, 3, args.workers, warmup, args.limit_mb)
    every = max(1, (args.items - warmup) // args.checkpoints)
    print(
        f"soak: {args.items} items, {soak.stages} stages x {args.workers} workers, "
        f"{args.flavour} flavour, warm-up {warmup} items, Python {sys.version.split()[0]}"
    )
    tracemalloc.start()
    meter = Meter(soak, every)
    t0 = time.perf_counter()
    soak.threads_before = threading.active_count()
    try:
        if args.flavour == "aio":
            asyncio.run(_run_aio(soak, meter))
        else:
            _run_threads(soak, meter)
    finally:
        soak.seconds = round(time.perf_counter() - t0, 1)
        soak.threads_after = threading.active_count()
        meter.finish()
        tracemalloc.stop()
    print(
        f"result: {soak.received}/{soak.items} items, checksum "
        f"{'ok' if soak.checksum_ok else 'WRONG'}, memory growth after warm-up "
        f"{soak.growth_mb:.3f} MB (limit {soak.limit_mb} MB), threads at checkpoints "
        f"{sorted(set(soak.threads))} (before {soak.threads_before}, after "
        f"{soak.threads_after}), {soak.seconds} s"
    )
    for line in soak.top_growth:
        print(f"  grew: {line}")
    print("PASS" if soak.ok else "FAIL")
    if args.json:
        print(json.dumps({**asdict(soak), "ok": soak.ok}))
    return 0 if soak.ok else 1


if __name__ == "__main__":
    sys.exit(main())
