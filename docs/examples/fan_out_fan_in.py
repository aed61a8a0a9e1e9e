"""The article's fan-out/fan-in snippet (``processItems``) in Python, with ``corral.fan_out``.

Go::

    numWorkers := min(len(items), runtime.NumCPU())
    jobs := make(chan Item, len(items)); results := make(chan Result, len(items))
    for i := 0; i < numWorkers; i++ {          // fan-out: start workers
        go func() { for item := range jobs {
            result, err := processItem(ctx, item)
            if err != nil { slog.Error("process item", "id", item.ID, "error", err); continue }
            results <- result
        }}()
    }
    for _, item := range items { jobs <- item }; close(jobs)
    go func() { wg.Wait(); close(results) }()  // fan-in: collect results
    for result := range results { collected = append(collected, result) }

``fan_out`` is the whole snippet: the workers, the two channels, the WaitGroup and the
closer. ``workers`` defaults to the CPU count (and never exceeds ``len(items)``), as the
Go code does by hand. The article logs failed items and goes on: that is ``errors="skip"``;
the default, ``"raise"``, stops at the first error instead, and ``"collect"`` returns
every item's outcome. ``fan_in`` merges several channels (or result streams) into one.
Run it: ``python docs/examples/fan_out_fan_in.py``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import corral
import corral.threads


@dataclass(frozen=True)
class Item:
    id: int
    payload: str


class ProcessError(Exception):
    pass


async def process_item(ctx: corral.Context, item: Item) -> str:
    await asyncio.sleep(0.001)  # a network call
    if item.payload == "":
        raise ProcessError(f"item {item.id} has no payload")
    return item.payload.upper()


def process_item_blocking(ctx: corral.Context, item: Item) -> str:
    ctx.raise_if_cancelled()  # threads look at ctx: they cannot be interrupted
    if item.payload == "":
        raise ProcessError(f"item {item.id} has no payload")
    return item.payload.upper()


# --8<-- [start:twin]
async def process_items(ctx: corral.Context, items: list[Item]) -> list[str]:
    async def one(item: Item) -> str:
        return await process_item(ctx, item)

    # Results come as they complete; errors="skip" logs a failed item and goes on.
    async with corral.fan_out(one, items, errors="skip", ctx=ctx) as results:
        return [r async for r in results]


def process_items_threads(ctx: corral.Context, items: list[Item]) -> list[str]:
    return corral.threads.fan_out(
        lambda item: process_item_blocking(ctx, item), items, errors="skip", ctx=ctx
    ).collect()


# --8<-- [end:twin]
async def merge_two_queues() -> list[str]:
    # fan_in: one channel that ends when every input has ended.
    eu, us = corral.Channel(10), corral.threads.Channel(10)  # a task's and a thread's queue
    for order in ("eu-1", "eu-2", "eu-3"):
        await eu.send(order)
    for order in ("us-1", "us-2"):
        us.send(order)
    eu.close()
    us.close()
    async with corral.fan_in(eu, us) as merged:
        return [order async for order in merged]


skipped: list[str] = []


def keep_skipped(record: logging.LogRecord) -> bool:
    # errors="skip" logs each failed item as a one-line warning on the "corral" logger; the
    # record carries the item and its exception (record.item, record.error).
    if record.levelno == logging.WARNING:
        skipped.append(str(record.error))
    return False  # kept for printing below, in a stable order


def show(title: str, results: list[str]) -> None:
    print(f"{title}:")
    print(f"  results: {sorted(results)}")
    print(f"  skipped: {sorted(skipped)}")
    skipped.clear()


async def main() -> None:
    logging.getLogger("corral").addFilter(keep_skipped)
    items = [Item(i, "" if i in (3, 7) else f"payload-{i}") for i in range(10)]
    ctx = corral.background()

    show("asyncio", await process_items(ctx, items))
    show("threads", process_items_threads(ctx, items))

    async def one(item: Item) -> str:
        return await process_item(ctx, item)

    outcomes = await corral.fan_out(one, items[:4], errors="collect", ordered=True).collect()
    print("errors='collect', in input order:")
    for o in outcomes:
        print(f"  item {o.item.id}: {o.value if o.ok else repr(o.error)}")

    print(f"fan_in of two queues: {sorted(await merge_two_queues())}")


if __name__ == "__main__":
    asyncio.run(main())
