"""The article's or-done snippet in Python, with ``corral.or_done``.

Go::

    func orDone(ctx context.Context, ch <-chan Value) <-chan Value {
        out := make(chan Value)
        go func() {
            defer close(out)
            for {
                select {
                case <-ctx.Done(): return
                case v, ok := <-ch:
                    if !ok { return }
                    select {
                    case out <- v:
                    case <-ctx.Done(): return
                    }
                }
            }
        }()
        return out
    }

"Read from a channel but respect context cancellation": ``or_done(ch, ctx=ctx)`` returns a
channel that carries ``ch``'s values and is closed as soon as ``ctx`` is done, so a
``for`` loop over it can never hang on a quiet producer. A relay worker (a task here, a
thread in ``corral.threads``) does what the goroutine does; it ends with ``ch``, with
``ctx``, or when the consumer closes the result. In corral every receive also takes
``ctx=`` directly: ``await ch.recv(ctx=ctx)`` is or-done for one value.
Run it: ``python docs/examples/or_done.py``.
"""

from __future__ import annotations

import asyncio
import threading

import corral
import corral.threads


def sensor(readings: corral.threads.Channel[int], stop: threading.Event) -> None:
    """A producer that never closes its channel: it only stops when told to."""
    value = 0
    while not stop.is_set():
        try:
            readings.send(value, timeout=0.01)
            value += 1
        except corral.DeadlineExceeded:
            pass  # nobody read within 10 ms: look at `stop` again


# --8<-- [start:twin]
async def read_until_enough() -> None:
    readings: corral.threads.Channel[int] = corral.threads.Channel()
    stop = threading.Event()
    producer = threading.Thread(target=sensor, args=(readings, stop))
    producer.start()

    got = []
    with corral.with_cancel(corral.background()) as ctx:
        async with corral.or_done(readings, ctx=ctx) as values:  # a thread's channel, a task
            async for value in values:
                got.append(value)
                if len(got) == 5:
                    ctx.cancel()  # e.g. the request was cancelled: the loop just ends
    print(f"asyncio: read {got}, then ctx was done: {type(ctx.err).__name__}")

    stop.set()
    producer.join()


def read_with_deadline() -> None:
    quiet: corral.threads.Channel[int] = corral.threads.Channel()  # nobody ever sends
    with (
        corral.with_timeout(corral.background(), 0.05) as ctx,
        corral.threads.or_done(quiet, ctx=ctx) as values,
    ):
        got = list(values)  # would block forever without ctx
    print(f"threads: read {got} from a quiet channel; ctx: {type(ctx.err).__name__}")


# --8<-- [end:twin]
if __name__ == "__main__":
    asyncio.run(read_until_enough())
    read_with_deadline()
