"""Go's context in Python, with ``corral.Context``: for tasks and threads alike.

Go (every snippet of the article passes a ``ctx`` down; these are its lines that use it)::

    g, ctx := errgroup.WithContext(ctx)     // a child, cancelled by the first error
    if err := sem.Acquire(ctx, 1); err != nil { return err }
    select {
    case out <- v:
    case <-ctx.Done():
        return
    }

and the standard idioms around them::

    ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
    defer cancel()
    ctx = context.WithValue(ctx, requestIDKey, 42)
    err := ctx.Err(); cause := context.Cause(ctx)
    stop := context.AfterFunc(ctx, func() { ... })

In corral ``with_timeout``/``with_cancel``/``with_deadline`` return a context whose
``with`` block is ``defer cancel()``; ``ctx.err``, ``ctx.cause``, ``ctx.value(key)``,
``ctx.after_func(fn)`` are Go's. A task is interrupted where it waits
(``async with ctx.cancel_scope()``, or ``ctx=`` on any blocking call); a thread cannot
be interrupted, so it looks (``ctx.raise_if_cancelled()``, ``ctx.wait_blocking(t)``).
Run it: ``python docs/examples/context.py``.
"""

from __future__ import annotations

import asyncio
import threading

import corral
import corral.threads


# --8<-- [start:twin]
async def call_service(ctx: corral.Context, name: str, latency: float) -> str:
    async with ctx.cancel_scope():  # this task is cancelled as soon as ctx is done
        await asyncio.sleep(latency)  # any awaitable: a socket, a query, ...
    return f"{name}: ok (request {ctx.value('request_id')})"


async def handle_request(request_id: int) -> None:
    root = corral.background()
    # ctx, cancel := context.WithTimeout(ctx, 500ms); defer cancel()
    with corral.with_timeout(root, 0.5) as ctx:
        ctx = corral.with_value(ctx, "request_id", request_id)  # context.WithValue
        print(await call_service(ctx, "fast", 0.001))
        try:
            print(await call_service(ctx, "slow", 10))
        except corral.DeadlineExceeded as err:  # ctx.Err() == context.DeadlineExceeded
            print(f"slow: {type(err).__name__}, ctx.err is {type(ctx.err).__name__}")


def blocking_worker(ctx: corral.Context, steps: list[int]) -> None:
    # A thread looks at ctx between steps; wait_blocking is a sleep that ctx cuts short.
    for step in range(1000):
        ctx.raise_if_cancelled()  # if err := ctx.Err(); err != nil { return err }
        steps.append(step)
        ctx.wait_blocking(timeout=0.001)


# --8<-- [end:twin]


async def cancel_with_cause() -> None:
    with corral.with_cancel(corral.background()) as parent:
        child = corral.with_timeout(parent, 60)  # cancelled with its parent
        detached = corral.without_cancel(child)  # context.WithoutCancel: never cancelled
        stop = child.after_func(lambda: print("  after_func ran: child is done"))
        parent.cancel(RuntimeError("shutting down"))  # context.WithCancelCause
        print(f"  child.err={type(child.err).__name__}, cause={child.cause!r}")
        print(f"  detached is still live: {not detached.cancelled}")
        print(f"  stop() after it ran: {stop()}")


async def done_channel() -> None:
    # ctx.Done() is a channel: a select case like any other.
    ch: corral.Channel[int] = corral.Channel()  # nobody sends
    with corral.with_timeout(corral.background(), 0.01) as ctx:
        s = await corral.select(ch.recv_case(), ctx.done().recv_case())
        print(f"select woke on case {s.index} (ctx.done()), ok={s.ok}")
        try:
            await ch.recv(ctx=ctx)  # ctx= on a blocking call: the same in one argument
        except corral.Cancelled as err:  # DeadlineExceeded is a Cancelled
            print(f"recv(ctx=ctx) raised {type(err).__name__}")


def threads_share_ctx() -> None:
    steps: list[int] = []
    with corral.with_cancel(corral.background()) as ctx:
        errors: list[BaseException] = []

        def run() -> None:
            try:
                blocking_worker(ctx, steps)
            except corral.Cancelled as err:
                errors.append(err)

        t = threading.Thread(target=run)
        t.start()
        while len(steps) < 3:  # let it work a little (a demo, not a test)
            ctx.wait_blocking(timeout=0.001)
        ctx.cancel()  # from this thread; the worker sees it at its next look
        t.join()
    print(f"threads: the worker stopped with {type(errors[0]).__name__}: {len(errors)} error")


async def main() -> None:
    await handle_request(42)
    print("cancel with a cause:")
    await cancel_with_cause()
    await done_channel()
    threads_share_ctx()


if __name__ == "__main__":
    asyncio.run(main())
