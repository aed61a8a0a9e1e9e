"""Channel rows: corral's channels against asyncio.Queue, anyio, trio, queue.Queue, culsans, janus.

Every implementation moves the items ``0 .. n-1`` from its producers to its consumers; the
consumers return ``(count, sum)`` and :func:`check_transfer` verifies them. Queues without a
close operation end the stream with one ``None`` sentinel per consumer (one extra item each).
A loop binds the bound method once (``send = ch.send``) in every implementation alike.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Awaitable, Callable
from typing import Any

from ..harness import Env, Stopwatch, Timing, check, check_transfer
from ..registry import ImplFn, corral_impl, peer_impl, register
from ._common import peer

Part = tuple[int, int]
# make(capacity) -> (put, get, aclose or None); called inside the running event loop.
QueueMaker = Callable[[int], tuple[Any, Any, Callable[[], Awaitable[None]] | None]]


# -- asyncio tasks, p producers -> c consumers -------------------------------------------------


def corral_async(cap: int, p: int = 1, c: int = 1) -> ImplFn:
    """corral.Channel(cap): producers send, the last one done closes, consumers iterate."""

    def fn(env: Env, n: int) -> Timing:
        async def main() -> Timing:
            import corral

            ch: corral.Channel[int] = corral.Channel(cap)

            async def producer(k: int) -> Part:
                send = ch.send
                for i in range(k, n, p):
                    await send(i)
                return 0, 0

            async def producers() -> Part:
                if p == 1:
                    await producer(0)
                else:
                    await asyncio.gather(*[producer(k) for k in range(p)])
                ch.close()
                return 0, 0

            async def consumer() -> Part:
                count = total = 0
                async for x in ch:
                    count += 1
                    total += x
                return count, total

            sw = Stopwatch()
            parts = await asyncio.gather(producers(), *[consumer() for _ in range(c)])
            dt = sw.stop()
            check_transfer(parts, n)
            st = ch.statistics()
            check(st.buffered == 0 and st.waiting_senders == 0, f"channel left in {st}")
            return dt

        return env.run_async(main)

    return fn


def queue_async(make: QueueMaker, cap: int, p: int = 1, c: int = 1) -> ImplFn:
    """An asyncio-style queue (``await put``, ``await get``), ended by ``None`` sentinels."""

    def fn(env: Env, n: int) -> Timing:
        async def main() -> Timing:
            put, get, aclose = make(cap)

            async def producer(k: int) -> Part:
                for i in range(k, n, p):
                    await put(i)
                return 0, 0

            async def producers() -> Part:
                if p == 1:
                    await producer(0)
                else:
                    await asyncio.gather(*[producer(k) for k in range(p)])
                for _ in range(c):
                    await put(None)
                return 0, 0

            async def consumer() -> Part:
                count = total = 0
                while True:
                    x = await get()
                    if x is None:
                        break
                    count += 1
                    total += x
                return count, total

            sw = Stopwatch()
            parts = await asyncio.gather(producers(), *[consumer() for _ in range(c)])
            dt = sw.stop()
            if aclose is not None:
                await aclose()
            check_transfer(parts, n)
            return dt

        return env.run_async(main)

    return fn


def make_asyncio_queue(cap: int) -> tuple[Any, Any, None]:
    q: asyncio.Queue[int | None] = asyncio.Queue(cap)
    return q.put, q.get, None


def make_culsans_async(cap: int) -> tuple[Any, Any, None]:
    # The queue's own async methods; ``q.async_q.put`` is a proxy that calls the same ones.
    q = peer("culsans").Queue(cap)
    return q.async_put, q.async_get, None


def make_janus_async(cap: int) -> tuple[Any, Any, Callable[[], Awaitable[None]]]:
    q = peer("janus").Queue(cap)
    return q.async_q.put, q.async_q.get, q.aclose


def anyio_async(cap: int, p: int = 1, c: int = 1) -> ImplFn:
    """anyio memory object streams, run as plain tasks on the same asyncio loop."""

    def fn(env: Env, n: int) -> Timing:
        async def main() -> Timing:
            anyio = peer("anyio")
            send, recv = anyio.create_memory_object_stream(cap)
            sends = [send.clone() for _ in range(p)]
            recvs = [recv.clone() for _ in range(c)]
            send.close()
            recv.close()

            async def producer(k: int, s: Any) -> Part:
                async with s:
                    snd = s.send
                    for i in range(k, n, p):
                        await snd(i)
                return 0, 0

            async def consumer(r: Any) -> Part:
                count = total = 0
                async with r:
                    async for x in r:
                        count += 1
                        total += x
                return count, total

            sw = Stopwatch()
            parts = await asyncio.gather(
                *[producer(k, s) for k, s in enumerate(sends)], *[consumer(r) for r in recvs]
            )
            dt = sw.stop()
            check_transfer(parts, n)
            return dt

        return env.run_async(main)

    return fn


def trio_async(cap: int, p: int = 1, c: int = 1) -> ImplFn:
    """trio memory channels under ``trio.run`` in this process (a nursery instead of gather)."""

    def fn(env: Env, n: int) -> Timing:
        async def main() -> Timing:
            trio = peer("trio")
            send, recv = trio.open_memory_channel(cap)
            sends = [send.clone() for _ in range(p)]
            recvs = [recv.clone() for _ in range(c)]
            send.close()
            recv.close()
            parts: list[Part] = []

            async def producer(k: int, s: Any) -> None:
                async with s:
                    snd = s.send
                    for i in range(k, n, p):
                        await snd(i)

            async def consumer(r: Any) -> None:
                count = total = 0
                async with r:
                    async for x in r:
                        count += 1
                        total += x
                parts.append((count, total))

            sw = Stopwatch()
            async with trio.open_nursery() as nursery:
                for k, s in enumerate(sends):
                    nursery.start_soon(producer, k, s)
                for r in recvs:
                    nursery.start_soon(consumer, r)
            dt = sw.stop()
            check_transfer(parts, n)
            return dt

        return env.run_trio(main)

    return fn


# -- threads: one producer thread -> one consumer thread ---------------------------------------


def corral_threads(cap: int) -> ImplFn:
    def fn(env: Env, n: int) -> Timing:
        from corral import threads

        ch: threads.Channel[int] = threads.Channel(cap)
        parts: list[Part] = []

        def producer() -> None:
            send = ch.send
            for i in range(n):
                send(i)
            ch.close()

        def consumer() -> None:
            count = total = 0
            for x in ch:
                count += 1
                total += x
            parts.append((count, total))

        dt = env.run_threads(producer, consumer)
        check_transfer(parts, n)
        return dt

    return fn


def queue_threads(make: Callable[[int], tuple[Any, Any]], cap: int) -> ImplFn:
    """A blocking queue (``put``/``get``), ended by a ``None`` sentinel."""

    def fn(env: Env, n: int) -> Timing:
        put, get = make(cap)
        parts: list[Part] = []

        def producer() -> None:
            for i in range(n):
                put(i)
            put(None)

        def consumer() -> None:
            count = total = 0
            while True:
                x = get()
                if x is None:
                    break
                count += 1
                total += x
            parts.append((count, total))

        dt = env.run_threads(producer, consumer)
        check_transfer(parts, n)
        return dt

    return fn


def make_queue_queue(cap: int) -> tuple[Any, Any]:
    q: queue.Queue[int | None] = queue.Queue(cap)
    return q.put, q.get


def make_culsans_sync(cap: int) -> tuple[Any, Any]:
    q = peer("culsans").Queue(cap)
    return q.sync_put, q.sync_get


# -- a thread producing, an asyncio task consuming ---------------------------------------------


def corral_thread_to_async(cap: int) -> ImplFn:
    def fn(env: Env, n: int) -> Timing:
        async def main() -> Timing:
            import corral

            ch: corral.Channel[int] = corral.Channel(cap)
            tch = ch.as_threads()

            def producer() -> None:
                send = tch.send
                for i in range(n):
                    send(i)
                tch.close()

            sw = Stopwatch()
            worker = env.thread(producer, "bench-producer")
            count = total = 0
            async for x in ch:
                count += 1
                total += x
            worker.finish(env.timeout)
            dt = sw.stop()
            check_transfer([(count, total)], n)
            return dt

        return env.run_async(main)

    return fn


def queue_thread_to_async(make: QueueMaker, cap: int) -> ImplFn:
    """``make(cap) -> (blocking put, async get, aclose or None)``, called inside the loop."""

    def fn(env: Env, n: int) -> Timing:
        async def main() -> Timing:
            put, get, aclose = make(cap)

            def producer() -> None:
                for i in range(n):
                    put(i)
                put(None)

            sw = Stopwatch()
            worker = env.thread(producer, "bench-producer")
            count = total = 0
            while True:
                x = await get()
                if x is None:
                    break
                count += 1
                total += x
            worker.finish(env.timeout)
            dt = sw.stop()
            if aclose is not None:
                await aclose()
            check_transfer([(count, total)], n)
            return dt

        return env.run_async(main)

    return fn


def make_culsans_mixed(cap: int) -> tuple[Any, Any, None]:
    q = peer("culsans").Queue(cap)
    return q.sync_put, q.async_get, None


def make_janus_mixed(cap: int) -> tuple[Any, Any, Callable[[], Awaitable[None]]]:
    q = peer("janus").Queue(cap)
    return q.sync_q.put, q.async_q.get, q.aclose


# -- the rows ----------------------------------------------------------------------------------

_YIELD_NOTE = (
    "anyio/trio yield on every send and receive (checkpoint), asyncio.Queue and corral only "
    "when they must wait: asyncio.Queue is the reference"
)


def _async_buffered_row(row_id: str, cap: int, p: int, c: int, items: int, quick: int) -> None:
    shape = f"{p} producer task{'s' if p > 1 else ''} → {c} consumer task{'s' if c > 1 else ''}"
    register(
        row_id,
        items=items,
        quick_items=quick,
        note=f"{shape}, capacity {cap}; {_YIELD_NOTE}",
        impls=[
            corral_impl("corral", corral_async(cap, p, c), reference="asyncio.Queue", target=0.75),
            peer_impl("asyncio.Queue", queue_async(make_asyncio_queue, cap, p, c)),
            peer_impl("anyio.memory_stream", anyio_async(cap, p, c), requires=["anyio"]),
            peer_impl("trio.memory_channel", trio_async(cap, p, c), requires=["trio"]),
            peer_impl(
                "culsans.Queue",
                queue_async(make_culsans_async, cap, p, c),
                requires=["culsans"],
                note="async side on both ends",
            ),
            peer_impl(
                "janus.Queue",
                queue_async(make_janus_async, cap, p, c),
                requires=["janus"],
                note="async side on both ends",
            ),
        ],
    )


register(
    "chan.async.cap0",
    items=40_000,
    quick_items=10_000,
    note=(
        "1 producer task → 1 consumer task, rendezvous; asyncio has no rendezvous queue, so "
        "the reference is asyncio.Queue(maxsize=1) (a 1-slot buffer: less synchronisation "
        "than a rendezvous); anyio/trio with a 0 buffer are true rendezvous but yield always"
    ),
    impls=[
        corral_impl("corral", corral_async(0), reference="asyncio.Queue(maxsize=1)", target=0.8),
        peer_impl("asyncio.Queue(maxsize=1)", queue_async(make_asyncio_queue, 1)),
        peer_impl("anyio.memory_stream(0)", anyio_async(0), requires=["anyio"]),
        peer_impl("trio.memory_channel(0)", trio_async(0), requires=["trio"]),
    ],
)
_async_buffered_row("chan.async.cap1", 1, 1, 1, 40_000, 10_000)
_async_buffered_row("chan.async.cap128", 128, 1, 1, 100_000, 20_000)
_async_buffered_row("chan.async.4p4c", 128, 4, 4, 100_000, 20_000)

register(
    "chan.thread.cap128",
    items=100_000,
    quick_items=20_000,
    note="1 producer thread → 1 consumer thread, capacity 128; reference queue.Queue(128)",
    impls=[
        corral_impl("corral.threads", corral_threads(128), reference="queue.Queue", target=0.8),
        peer_impl("queue.Queue", queue_threads(make_queue_queue, 128)),
        peer_impl(
            "culsans.Queue",
            queue_threads(make_culsans_sync, 128),
            requires=["culsans"],
            note="sync side on both ends",
        ),
    ],
)

register(
    "chan.thread_to_async.cap128",
    items=100_000,
    quick_items=20_000,
    note=(
        "1 producer thread → 1 asyncio consumer task, capacity 128: corral via "
        "ch.as_threads() on the producer side; reference culsans (sync put, async get)"
    ),
    impls=[
        corral_impl("corral", corral_thread_to_async(128), reference="culsans.Queue", target=0.5),
        peer_impl(
            "culsans.Queue", queue_thread_to_async(make_culsans_mixed, 128), requires=["culsans"]
        ),
        peer_impl("janus.Queue", queue_thread_to_async(make_janus_mixed, 128), requires=["janus"]),
    ],
)
