"""The article's bounded-concurrency snippet (``processWithLimit``) in Python, with
``corral.Semaphore`` and ``corral.Group``.

Go::

    var sem = semaphore.NewWeighted(10) // Max 10 concurrent operations

    func processWithLimit(ctx context.Context, items []Item) error {
        g, ctx := errgroup.WithContext(ctx)
        for _, item := range items {
            item := item
            g.Go(func() error {
                if err := sem.Acquire(ctx, 1); err != nil { return err }
                defer sem.Release(1)
                return process(ctx, item)
            })
        }
        return g.Wait()
    }

The twin below is line for line the same: a weighted semaphore shared by everyone (here
a database that takes 10 connections), acquired with the group's ctx so that a waiting
acquire gives up as soon as a sibling fails. The semaphore is FIFO and, like every corral
primitive, shared by tasks and threads alike. When the limit only protects this one
batch, take it *before* starting the work instead (``fan_out(..., workers=10)`` or
``Group(limit=10)``): then only 10 tasks exist at a time, not one per item.
Run it: ``python docs/examples/semaphore_limit.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time

import corral
import corral.threads

# --8<-- [start:sem]
sem = corral.Semaphore(10)  # max 10 concurrent operations (one database, ten connections)
# --8<-- [end:sem]


class Tracker:
    """Counts operations running at once, and the most seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = self.done = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1
            self.done += 1


class BadItem(Exception):
    pass


async def process(ctx: corral.Context, item: int, tracker: Tracker) -> None:
    with tracker:
        await asyncio.sleep(0.01)  # a query
        if item < 0:
            raise BadItem(f"item {item} is invalid")


# --8<-- [start:twin]
async def process_with_limit(ctx: corral.Context, items: list[int], tracker: Tracker) -> None:
    async def one(item: int) -> None:
        async with sem.acquire(ctx=g.ctx):  # if err := sem.Acquire(ctx, 1); defer Release
            await process(g.ctx, item, tracker)

    async with corral.Group(ctx=ctx) as g:  # g, ctx := errgroup.WithContext(ctx)
        for item in items:
            await g.go(one, item)
    # Leaving the block is g.Wait(): it raised the first error, if any.


def process_with_limit_threads(
    ctx: corral.Context, items: list[int], tracker: Tracker, tsem: corral.threads.Semaphore
) -> None:
    def one(item: int) -> None:
        with tsem.acquire(ctx=g.ctx), tracker:
            time.sleep(0.01)  # a blocking query

    with corral.threads.Group(ctx=ctx) as g:
        for item in items:
            g.go(one, item)


# --8<-- [end:twin]
async def main() -> None:
    ctx = corral.background()
    tracker = Tracker()
    await process_with_limit(ctx, list(range(50)), tracker)
    print(f"asyncio: {tracker.done} items, at most {tracker.peak} at once")

    tracker = Tracker()
    try:
        await process_with_limit(ctx, [*range(20), -1, *range(20, 40)], tracker)
    except BadItem as err:
        print(f"  one item fails: {err!r}")
        print(f"  the items still waiting for the semaphore never ran: {tracker.done < 41}")
    print(f"  the semaphore is free again: {sem.statistics().held == 0}")

    tracker = Tracker()
    process_with_limit_threads(ctx, list(range(30)), tracker, sem.as_threads())
    print(f"threads: {tracker.done} items, at most 10 at once: {tracker.peak <= 10}")

    # The same limit taken before starting the work: only 10 workers exist.
    tracker = Tracker()

    async def limited(item: int) -> None:
        await process(ctx, item, tracker)

    await corral.fan_out(limited, range(50), workers=10).collect()
    print(f"fan_out(workers=10): {tracker.done} items, at most {tracker.peak} at once")


if __name__ == "__main__":
    asyncio.run(main())
