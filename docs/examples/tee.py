"""The article's tee snippet in Python, with ``corral.tee`` and its slow-consumer policies.

Go::

    func tee(ctx context.Context, in <-chan Value) (<-chan Value, <-chan Value) {
        out1 := make(chan Value); out2 := make(chan Value)
        go func() {
            defer close(out1); defer close(out2)
            for val := range orDone(ctx, in) {
                o1, o2 := out1, out2
                for i := 0; i < 2; i++ {
                    select {
                    case o1 <- val: o1 = nil
                    case o2 <- val: o2 = nil
                    case <-ctx.Done(): return
                    }
                }
            }
        }()
        return out1, out2
    }

Go's tee is *lockstep*: every value reaches both outputs before the next is read, so the
faster consumer waits for the slower one. That is one policy among three, and the choice
matters as soon as consumers differ in speed:

* ``policy="lockstep"`` (Go's): consumers advance together. Nothing is buffered, nothing
  lost; the slowest sets the pace. For consumers of similar speed, or that must stay in
  step (writing the same records to two stores).
* ``policy="buffer", buffer=N``: a consumer may run up to N values ahead of the slowest.
  Nothing lost; absorbs bursts and jitter. Memory: N values per output.
* ``policy="drop", buffer=N``: never waits. A full output drops its *oldest* value and
  counts it in ``out.dropped`` (tokio's broadcast ``Lagged``). For live data where fresh
  beats complete (metrics, dashboards): a stalled consumer stalls nobody.

Run it: ``python docs/examples/tee.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import corral
import corral.threads


# --8<-- [start:twin]
async def lockstep() -> None:
    events = [f"event-{i}" for i in range(3)]
    async with corral.tee(events) as (audit, search):  # two consumers
        print(f"lockstep: audit got {await audit.recv()}")
        try:
            await audit.recv(timeout=0.05)
        except corral.DeadlineExceeded:
            print("  audit waits for event-1: search has not taken event-0 yet")
        print(f"  search got {await search.recv()}, so audit gets {await audit.recv()}")
        async with corral.Group() as g:  # read the rest together
            rest_audit = await g.go(_all, audit)
            rest_search = await g.go(_all, search)
    print(f"  then both got the rest: {rest_audit.result()} {rest_search.result()}")


# --8<-- [end:twin]
async def buffered() -> None:
    async with corral.tee(range(10), policy="buffer", buffer=3) as (fast, slow):
        ahead = [await fast.recv() for _ in range(4)]  # the slow one has read nothing yet
        print(f"buffer=3: the fast consumer ran ahead by {len(ahead)} values: {ahead}")
        # Drain both (they still advance together beyond the buffer): nothing was lost.
        async with corral.Group() as g:
            rest_fast = await g.go(_all, fast)
            rest_slow = await g.go(_all, slow)
    print(
        f"  then: fast got {len(ahead) + len(rest_fast.result())}, slow got "
        f"{len(rest_slow.result())}"
    )


async def _all(ch: corral.Channel[Any]) -> list[Any]:
    return [x async for x in ch]


def dropping() -> None:
    # A dashboard that stalls must not stall the metrics source: drop its oldest values.
    with corral.threads.tee(range(100), policy="drop", buffer=5) as (live, stalled):
        live_values = list(live)  # keeps up, mostly
        stalled_values = list(stalled)  # read only after the source has ended
    print(
        f"drop, buffer=5 (threads): the stalled consumer got {stalled_values}, "
        f"dropped {stalled.dropped}"
    )
    assert len(live_values) + live.dropped == 100
    print(f"  the live one got the newest value: {live_values[-1]}")


if __name__ == "__main__":
    asyncio.run(lockstep())
    asyncio.run(buffered())
    dropping()
