"""Go's channels and select in Python, with ``corral.Channel`` and ``corral.select``.

Go (the article's pipeline stage, the primitives written out by hand)::

    func validate(ctx context.Context, in <-chan RawData) <-chan ValidData {
        out := make(chan ValidData)
        go func() {
            defer close(out)
            for data := range in {
                if data.IsValid() {
                    select {
                    case out <- ValidData(data):
                    case <-ctx.Done():
                        return
                    }
                }
            }
        }()
        return out
    }

The twin is the same stage with corral's primitives: ``make(chan T)`` is ``Channel()``
(a rendezvous; ``Channel(n)`` buffers n), ``for x := range in`` is ``async for x in in_``,
``close(out)`` is ``out.close()`` (buffered items are still delivered), and ``select`` takes
*cases*: ``out.send_case(v)`` and ``ctx.done().recv_case()``; exactly one fires.
``corral.pipeline`` does all of this for each stage (see pipeline.py): this is what it is
made of. The same channel is usable from threads (``ch.as_threads()``).
Run it: ``python docs/examples/channel_select.py``.
"""

from __future__ import annotations

import asyncio
import threading

import corral
import corral.threads


# --8<-- [start:twin]
async def validate(
    g: corral.Group, ctx: corral.Context, in_: corral.Channel[str]
) -> corral.Channel[str]:
    out: corral.Channel[str] = corral.Channel()  # out := make(chan ValidData)

    async def run() -> None:  # go func() { ... }()
        try:
            async for data in in_:  # for data := range in
                if data.strip():  # data.IsValid()
                    s = await corral.select(out.send_case(data), ctx.done().recv_case())
                    if s.index == 1:  # case <-ctx.Done(): return
                        return
        finally:
            out.close()  # defer close(out)

    await g.go(run)
    return out


async def produce(ctx: corral.Context, out: corral.Channel[str], records: list[str]) -> None:
    try:
        for r in records:
            await out.send(r, ctx=ctx)  # the same select, spelled as the ctx= argument
    except corral.Cancelled:
        pass  # ctx is done: stop sending
    finally:
        out.close()


# --8<-- [end:twin]


RECORDS = ["alpha", "", "beta", "gamma", " ", "delta", "epsilon"]


async def whole_stream() -> None:
    with corral.with_cancel(corral.background()) as ctx:
        async with corral.Group() as g:
            raw: corral.Channel[str] = corral.Channel()
            await g.go(produce, ctx, raw, RECORDS)
            valid = await validate(g, ctx, raw)
            got = [v async for v in valid]
    print(f"validated: {got}")


async def cancelled_midway() -> None:
    with corral.with_cancel(corral.background()) as ctx:
        async with corral.Group() as g:
            raw: corral.Channel[str] = corral.Channel()
            await g.go(produce, ctx, raw, RECORDS)
            valid = await validate(g, ctx, raw)
            got = []
            async for v in valid:
                got.append(v)
                if len(got) == 2:
                    ctx.cancel()  # e.g. the client went away: stop reading, and tell them
                    break
        # Leaving the group waited for both: each saw ctx done in its select and returned.
    print(f"cancelled after {got}: both returned, valid.closed={valid.closed}")


async def select_forms() -> None:
    a: corral.Channel[str] = corral.Channel(1)
    b: corral.Channel[str] = corral.Channel(1)

    # select { case v := <-a: ... default: ... }: default=True never waits
    print(f"default: {await corral.select(a.recv_case(), b.recv_case(), default=True)}")

    # select with a timer case: timeout= raises DeadlineExceeded (a TimeoutError)
    try:
        await corral.select(a.recv_case(), timeout=0.01)
    except TimeoutError as err:
        print(f"timeout: {type(err).__name__}")

    # v, ok := <-ch on a closed, drained channel: ok is False
    await b.send("last")
    b.close()
    s = await corral.select(b.recv_case())
    print(f"received {s.value!r} from case {s.index}, ok={s.ok}")
    s = await corral.select(b.recv_case())
    print(f"closed and drained: value={s.value}, ok={s.ok}")
    try:
        await b.recv()  # a plain receive raises instead of returning ok=False
    except corral.EndOfChannel:
        print("recv on a closed, drained channel raises EndOfChannel")


async def thread_feeds_task() -> None:
    ch: corral.Channel[int] = corral.Channel(4)

    def producer(tch: corral.threads.Channel[int]) -> None:  # blocking calls, in a thread
        for i in range(5):
            tch.send(i * i)
        tch.close()

    t = threading.Thread(target=producer, args=(ch.as_threads(),))
    t.start()
    print(f"a thread fed a task through one channel: {[x async for x in ch]}")
    t.join()


def threads_flavour() -> None:
    # The same select in a thread: corral.threads.select blocks the calling thread.
    jobs: corral.threads.Channel[str] = corral.threads.Channel()
    quit_: corral.threads.Channel[None] = corral.threads.Channel()
    handled: list[str] = []

    def worker() -> None:
        while True:
            s = corral.threads.select(jobs.recv_case(), quit_.recv_case())
            if s.index == 1:  # case <-quit: return
                return
            handled.append(s.value)

    t = threading.Thread(target=worker)
    t.start()
    for job in ("job-1", "job-2", "job-3"):
        jobs.send(job)  # a rendezvous: returns once the worker has taken it
    quit_.close()
    t.join()
    print(f"threads: the worker handled {handled}, then quit")


async def main() -> None:
    await whole_stream()
    await cancelled_midway()
    await select_forms()
    await thread_feeds_task()
    threads_flavour()


if __name__ == "__main__":
    asyncio.run(main())
