"""Item-conservation scenarios: each in an asyncio form (explored over seeded schedules) and
a thread form (hammered), checked the same way.

Every item is ``(producer, seq)``. A producer records an item as produced only once its send
returned (a send that raised did not happen); a consumer records what it received, in
order, before its next await. :func:`check` then proves: nothing lost, nothing duplicated
(or invented), and every consumer saw each producer's items in increasing order (a FIFO
channel fed by a sequential producer guarantees that to each consumer).

Random choices (counts, styles, where to cancel) come from the scenario's seeded ``rng``,
so an asyncio failure replays from its seed; thread runs print theirs.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import corral
import corral.threads
from corral.testing import Schedule, hammer

Item = tuple[int, int]


@dataclass
class Tally:
    items: int  # produced (and so received) items
    ordered: bool  # whether per-producer order was checked


def check(
    produced: Iterable[Item], streams: Sequence[Sequence[Item]], *, ordered: bool = True
) -> Tally:
    """Raise ``AssertionError`` on a lost, duplicated or reordered item; else count them."""
    prod = Counter(produced)
    got = Counter(x for s in streams for x in s)
    problems = []
    lost = prod - got
    extra = got - prod
    if lost:
        problems.append(f"{sum(lost.values())} item(s) lost: {sorted(lost)[:10]}")
    if extra:
        problems.append(
            f"{sum(extra.values())} item(s) duplicated or invented: {sorted(extra)[:10]}"
        )
    if ordered:
        for ci, stream in enumerate(streams):
            last: dict[int, int] = {}
            for p, i in stream:
                if last.get(p, -1) >= i:
                    problems.append(f"consumer {ci} got producer {p}'s item {i} after {last[p]}")
                    break
                last[p] = i
    if problems:
        raise AssertionError("; ".join(problems))
    return Tally(sum(prod.values()), ordered)


AioScenario = Callable[[Schedule], Awaitable[Tally]]
ThreadScenario = Callable[[random.Random], Tally]


@dataclass(frozen=True)
class Scenario:
    name: str
    aio: AioScenario
    threads: ThreadScenario
    virtual_clock: bool = True  # False when threads take part in the asyncio form
    unit: str = "items"  # what Tally.items counts


def _plan(
    rng: random.Random, max_prod: int = 4, max_cons: int = 3, max_items: int = 12
) -> tuple[list[int], int]:
    counts = [rng.randint(0, max_items) for _ in range(rng.randint(1, max_prod))]
    return counts, rng.randint(1, max_cons)


class _LastOut:
    """Thread-safe countdown: the last of ``n`` parties to finish runs ``fn`` (closes)."""

    def __init__(self, n: int, fn: Callable[[], object]) -> None:
        self._n = n
        self._fn = fn
        self._lock = threading.Lock()
        if n == 0:
            fn()

    def done(self) -> None:
        with self._lock:
            self._n -= 1
            last = self._n == 0
        if last:
            self._fn()


# --- plain channels at capacity 0 / 1 / N / unbounded ---------------------------------------


def channel_scenario(capacity: float) -> Scenario:
    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        ch: corral.Channel[Item] = corral.Channel(capacity)
        counts, n_cons = _plan(rng)
        produced: list[Item] = []
        streams: list[list[Item]] = [[] for _ in range(n_cons)]

        async def produce(p: int, style: int) -> None:
            for i in range(counts[p]):
                if style == 1:
                    try:
                        ch.send_nowait((p, i))
                    except corral.WouldBlock:
                        await ch.send((p, i))
                else:
                    await ch.send((p, i))
                produced.append((p, i))

        async def consume(c: int, style: int) -> None:
            out = streams[c]
            if style == 0:
                async for x in ch:
                    out.append(x)
                return
            while True:
                try:
                    if style == 1:
                        try:
                            x = ch.recv_nowait()
                        except corral.WouldBlock:
                            x = await ch.recv()
                    else:
                        x = await ch.recv()
                except corral.EndOfChannel:
                    return
                out.append(x)

        prods = [asyncio.create_task(produce(p, rng.randrange(2))) for p in range(len(counts))]
        cons = [asyncio.create_task(consume(c, rng.randrange(3))) for c in range(n_cons)]
        await asyncio.gather(*prods)
        ch.close()
        await asyncio.gather(*cons)
        return check(produced, streams)

    def threads(rng: random.Random) -> Tally:
        ch: corral.threads.Channel[Item] = corral.threads.Channel(capacity)
        counts, n_cons = _plan(rng)
        produced: list[list[Item]] = [[] for _ in counts]
        streams: list[list[Item]] = [[] for _ in range(n_cons)]
        closer = _LastOut(len(counts), ch.close)

        def produce(p: int) -> None:
            try:
                for i in range(counts[p]):
                    ch.send((p, i))
                    produced[p].append((p, i))
            finally:
                closer.done()

        def consume(c: int) -> None:
            for x in ch:
                streams[c].append(x)

        hammer(
            *[lambda p=p: produce(p) for p in range(len(counts))],
            *[lambda c=c: consume(c) for c in range(n_cons)],
        )
        return check([x for ps in produced for x in ps], streams)

    cap = "inf" if capacity == math.inf else str(capacity)
    return Scenario(f"channel cap={cap}", aio, threads)


# --- select -----------------------------------------------------------------------------------


def _select_fan_in() -> Scenario:
    """Producers on 3 channels (capacities 0, 1, 2); one consumer selects over every open
    channel, another competes with plain receives on channel 0."""

    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        chans: list[corral.Channel[Item]] = [corral.Channel(c) for c in (0, 1, 2)]
        counts = [rng.randint(0, 10) for _ in chans]
        produced: list[Item] = []
        streams: list[list[Item]] = [[], []]

        async def produce(p: int) -> None:
            for i in range(counts[p]):
                await chans[p].send((p, i))
                produced.append((p, i))
            chans[p].close()

        async def selector() -> None:
            live = list(chans)
            while live:
                s = await corral.select(*[c.recv_case() for c in live])
                if not s.ok:
                    del live[s.index]
                else:
                    streams[0].append(s.value)

        async def plain() -> None:
            async for x in chans[0]:
                streams[1].append(x)

        tasks = [asyncio.create_task(produce(p)) for p in range(3)]
        tasks += [asyncio.create_task(selector()), asyncio.create_task(plain())]
        await asyncio.gather(*tasks)
        return check(produced, streams)

    def threads(rng: random.Random) -> Tally:
        chans: list[corral.threads.Channel[Item]] = [corral.threads.Channel(c) for c in (0, 1, 2)]
        counts = [rng.randint(0, 10) for _ in chans]
        produced: list[list[Item]] = [[] for _ in chans]
        streams: list[list[Item]] = [[], []]

        def produce(p: int) -> None:
            try:
                for i in range(counts[p]):
                    chans[p].send((p, i))
                    produced[p].append((p, i))
            finally:
                chans[p].close()

        def selector() -> None:
            live = list(chans)
            while live:
                s = corral.threads.select(*[c.recv_case() for c in live])
                if not s.ok:
                    del live[s.index]
                else:
                    streams[0].append(s.value)

        def plain() -> None:
            for x in chans[0]:
                streams[1].append(x)

        hammer(*[lambda p=p: produce(p) for p in range(3)], selector, plain)
        return check([x for ps in produced for x in ps], streams)

    return Scenario("select recv fan-in", aio, threads)


def _select_send() -> Scenario:
    """Producers select over send cases to two outputs (capacities 0 and 1), sometimes
    with ``default=True`` first; one consumer per output."""

    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        outs: list[corral.Channel[Item]] = [corral.Channel(0), corral.Channel(1)]
        counts, _ = _plan(rng, max_prod=3)
        produced: list[Item] = []
        streams: list[list[Item]] = [[], []]

        async def produce(p: int, eager: bool) -> None:
            for i in range(counts[p]):
                cases = [o.send_case((p, i)) for o in outs]
                if not eager or await corral.select(*cases, default=True) is None:
                    await corral.select(*cases)
                produced.append((p, i))

        async def consume(c: int) -> None:
            async for x in outs[c]:
                streams[c].append(x)

        prods = [asyncio.create_task(produce(p, rng.random() < 0.5)) for p in range(len(counts))]
        cons = [asyncio.create_task(consume(c)) for c in range(2)]
        await asyncio.gather(*prods)
        for o in outs:
            o.close()
        await asyncio.gather(*cons)
        return check(produced, streams)

    def threads(rng: random.Random) -> Tally:
        outs: list[corral.threads.Channel[Item]] = [
            corral.threads.Channel(0),
            corral.threads.Channel(1),
        ]
        counts, _ = _plan(rng, max_prod=3)
        produced: list[list[Item]] = [[] for _ in counts]
        streams: list[list[Item]] = [[], []]

        def close_all() -> None:
            for o in outs:
                o.close()

        closer = _LastOut(len(counts), close_all)

        def produce(p: int, eager: bool) -> None:
            try:
                for i in range(counts[p]):
                    cases = [o.send_case((p, i)) for o in outs]
                    if not eager or corral.threads.select(*cases, default=True) is None:
                        corral.threads.select(*cases)
                    produced[p].append((p, i))
            finally:
                closer.done()

        def consume(c: int) -> None:
            for x in outs[c]:
                streams[c].append(x)

        eager = [rng.random() < 0.5 for _ in counts]
        hammer(
            *[lambda p=p: produce(p, eager[p]) for p in range(len(counts))],
            *[lambda c=c: consume(c) for c in range(2)],
        )
        return check([x for ps in produced for x in ps], streams)

    return Scenario("select send", aio, threads)


def _select_relay() -> Scenario:
    """A relay selects between receiving from ``inp`` and sending its oldest held item to
    ``out`` (a send and a receive case in one select), until ``inp`` ends."""

    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        inp: corral.Channel[Item] = corral.Channel(rng.randrange(2))
        out: corral.Channel[Item] = corral.Channel(rng.randrange(2))
        counts, _ = _plan(rng, max_prod=3)
        produced: list[Item] = []
        stream: list[Item] = []

        async def produce(p: int) -> None:
            for i in range(counts[p]):
                await inp.send((p, i))
                produced.append((p, i))

        async def relay() -> None:
            held: list[Item] = []
            open_ = True
            while open_ or held:
                cases: list[Any] = [inp.recv_case()] if open_ else []
                if held:
                    cases.append(out.send_case(held[0]))
                s = await corral.select(*cases)
                if isinstance(s.case, corral.SendCase):
                    held.pop(0)
                elif s.ok:
                    held.append(s.value)
                else:
                    open_ = False
            out.close()

        async def consume() -> None:
            stream.extend([x async for x in out])

        prods = [asyncio.create_task(produce(p)) for p in range(len(counts))]
        others = [asyncio.create_task(relay()), asyncio.create_task(consume())]
        await asyncio.gather(*prods)
        inp.close()
        await asyncio.gather(*others)
        return check(produced, [stream])

    def threads(rng: random.Random) -> Tally:
        inp: corral.threads.Channel[Item] = corral.threads.Channel(rng.randrange(2))
        out: corral.threads.Channel[Item] = corral.threads.Channel(rng.randrange(2))
        counts, _ = _plan(rng, max_prod=3)
        produced: list[list[Item]] = [[] for _ in counts]
        stream: list[Item] = []
        closer = _LastOut(len(counts), inp.close)

        def produce(p: int) -> None:
            try:
                for i in range(counts[p]):
                    inp.send((p, i))
                    produced[p].append((p, i))
            finally:
                closer.done()

        def relay() -> None:
            held: list[Item] = []
            open_ = True
            try:
                while open_ or held:
                    cases: list[Any] = [inp.recv_case()] if open_ else []
                    if held:
                        cases.append(out.send_case(held[0]))
                    s = corral.threads.select(*cases)
                    if isinstance(s.case, corral.SendCase):
                        held.pop(0)
                    elif s.ok:
                        held.append(s.value)
                    else:
                        open_ = False
            finally:
                out.close()

        def consume() -> None:
            stream.extend(out)

        hammer(*[lambda p=p: produce(p) for p in range(len(counts))], relay, consume)
        return check([x for ps in produced for x in ps], [stream])

    return Scenario("select send+recv relay", aio, threads)


# --- close, timeouts and cancellation mid-stream ------------------------------------------


def _close_midstream() -> Scenario:
    """Someone closes the channel while producers still send: sends that raised
    ``ChannelClosed`` did not happen; everything that was sent is still received."""

    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        ch: corral.Channel[Item] = corral.Channel(rng.choice((0, 1, 3)))
        n_prod, n_cons = rng.randint(1, 3), rng.randint(1, 3)
        produced: list[Item] = []
        streams: list[list[Item]] = [[] for _ in range(n_cons)]
        close_after = rng.randint(0, 15)

        async def produce(p: int) -> None:
            i = 0
            while True:
                try:
                    await ch.send((p, i))
                except corral.ChannelClosed:
                    return
                produced.append((p, i))
                i += 1

        async def consume(c: int) -> None:
            async for x in ch:
                streams[c].append(x)
                if sum(map(len, streams)) >= close_after:
                    ch.close()

        if close_after == 0:
            ch.close()
        tasks = [asyncio.create_task(produce(p)) for p in range(n_prod)]
        tasks += [asyncio.create_task(consume(c)) for c in range(n_cons)]
        await asyncio.gather(*tasks)
        return check(produced, streams)

    def threads(rng: random.Random) -> Tally:
        ch: corral.threads.Channel[Item] = corral.threads.Channel(rng.choice((0, 1, 3)))
        n_prod, n_cons = rng.randint(1, 3), rng.randint(1, 3)
        produced: list[list[Item]] = [[] for _ in range(n_prod)]
        streams: list[list[Item]] = [[] for _ in range(n_cons)]
        close_after = rng.randint(1, 15)
        received = [0]
        lock = threading.Lock()

        def produce(p: int) -> None:
            i = 0
            while True:
                try:
                    ch.send((p, i))
                except corral.ChannelClosed:
                    return
                produced[p].append((p, i))
                i += 1

        def consume(c: int) -> None:
            for x in ch:
                streams[c].append(x)
                with lock:
                    received[0] += 1
                    if received[0] >= close_after:
                        ch.close()

        hammer(
            *[lambda p=p: produce(p) for p in range(n_prod)],
            *[lambda c=c: consume(c) for c in range(n_cons)],
        )
        return check([x for ps in produced for x in ps], streams)

    return Scenario("close mid-stream", aio, threads)


def _timeouts() -> Scenario:
    """Senders and receivers with short timeouts that retry: a timed-out operation had no
    effect, so a retried item is delivered exactly once."""

    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        ch: corral.Channel[Item] = corral.Channel(rng.choice((0, 1)))
        counts, n_cons = _plan(rng, max_prod=3, max_items=8)
        produced: list[Item] = []
        streams: list[list[Item]] = [[] for _ in range(n_cons)]

        async def produce(p: int) -> None:
            for i in range(counts[p]):
                while True:
                    try:
                        await ch.send((p, i), timeout=rng.choice((0, 0.5, 1, 2)))
                        break
                    except corral.DeadlineExceeded:
                        await asyncio.sleep(rng.choice((0, 0.3)))
                produced.append((p, i))

        async def consume(c: int) -> None:
            while True:
                try:
                    x = await ch.recv(timeout=rng.choice((0, 0.5, 1, 3)))
                except corral.DeadlineExceeded:
                    # Retry until EndOfChannel, also once the producers are done: a receive
                    # that timed out just before the last send buffered its item (seed 3047
                    # at stress counts) must not leave that item behind in the channel.
                    continue
                except corral.EndOfChannel:
                    return
                streams[c].append(x)

        prods = [asyncio.create_task(produce(p)) for p in range(len(counts))]
        cons = [asyncio.create_task(consume(c)) for c in range(n_cons)]
        await asyncio.gather(*prods)
        ch.close()
        await asyncio.gather(*cons)
        return check(produced, streams)

    def threads(rng: random.Random) -> Tally:
        ch: corral.threads.Channel[Item] = corral.threads.Channel(rng.choice((0, 1)))
        counts, n_cons = _plan(rng, max_prod=3, max_items=8)
        produced: list[list[Item]] = [[] for _ in counts]
        streams: list[list[Item]] = [[] for _ in range(n_cons)]
        closer = _LastOut(len(counts), ch.close)
        timeouts = (0, 0.0002, 0.001)

        def produce(p: int, r: random.Random) -> None:
            try:
                for i in range(counts[p]):
                    while True:
                        try:
                            ch.send((p, i), timeout=r.choice(timeouts))
                            break
                        except corral.DeadlineExceeded:
                            pass
                    produced[p].append((p, i))
            finally:
                closer.done()

        def consume(c: int, r: random.Random) -> None:
            while True:
                try:
                    x = ch.recv(timeout=r.choice(timeouts))
                except corral.DeadlineExceeded:
                    continue
                except corral.EndOfChannel:
                    return
                streams[c].append(x)

        rngs = [random.Random(rng.random()) for _ in range(len(counts) + n_cons)]
        hammer(
            *[lambda p=p: produce(p, rngs[p]) for p in range(len(counts))],
            *[lambda c=c: consume(c, rngs[len(counts) + c]) for c in range(n_cons)],
        )
        return check([x for ps in produced for x in ps], streams)

    return Scenario("timeouts with retry", aio, threads)


def _ctx_cancel() -> Scenario:
    """Consumers and producers bound to Contexts that a canceller cancels mid-stream;
    whatever the cancelled ones did not take is drained afterwards."""

    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        ch: corral.Channel[Item] = corral.Channel(rng.choice((0, 1, 2)))
        counts, n_cons = _plan(rng, max_prod=3)
        produced: list[Item] = []
        streams: list[list[Item]] = [[] for _ in range(n_cons + 1)]
        ctxs = [corral.with_cancel(corral.background()) for _ in range(len(counts) + n_cons)]

        async def produce(p: int) -> None:
            for i in range(counts[p]):
                try:
                    await ch.send((p, i), ctx=ctxs[p])
                except corral.Cancelled:
                    return
                produced.append((p, i))

        async def consume(c: int) -> None:
            while True:
                try:
                    x = await ch.recv(ctx=ctxs[len(counts) + c])
                except (corral.Cancelled, corral.EndOfChannel):
                    return
                streams[c].append(x)

        async def canceller() -> None:
            order = list(ctxs)
            rng.shuffle(order)
            for ctx in order[: rng.randint(0, len(order))]:
                for _ in range(rng.randint(0, 4)):
                    await asyncio.sleep(0)
                ctx.cancel()

        async def drain() -> None:  # takes what no live consumer took
            streams[-1].extend([x async for x in ch])

        prods = [asyncio.create_task(produce(p)) for p in range(len(counts))]
        cons = [asyncio.create_task(consume(c)) for c in range(n_cons)]
        await canceller()
        # Started only now, so the cancellations land while the others compete; without
        # it, producers could wait forever once every consumer is cancelled.
        cons.append(asyncio.create_task(drain()))
        await asyncio.gather(*prods)
        ch.close()
        await asyncio.gather(*cons)
        for ctx in ctxs:
            ctx.cancel()
        return check(produced, streams)

    def threads(rng: random.Random) -> Tally:
        ch: corral.threads.Channel[Item] = corral.threads.Channel(rng.choice((0, 1, 2)))
        counts, n_cons = _plan(rng, max_prod=3)
        produced: list[list[Item]] = [[] for _ in counts]
        streams: list[list[Item]] = [[] for _ in range(n_cons + 1)]
        ctxs = [corral.with_cancel(corral.background()) for _ in range(len(counts) + n_cons)]
        closer = _LastOut(len(counts), ch.close)

        def produce(p: int) -> None:
            try:
                for i in range(counts[p]):
                    try:
                        ch.send((p, i), ctx=ctxs[p])
                    except corral.Cancelled:
                        return
                    produced[p].append((p, i))
            finally:
                closer.done()

        def consume(c: int) -> None:
            while True:
                try:
                    x = ch.recv(ctx=ctxs[len(counts) + c])
                except (corral.Cancelled, corral.EndOfChannel):
                    return
                streams[c].append(x)

        order = list(ctxs)
        rng.shuffle(order)
        victims = order[: rng.randint(0, len(order))]

        cancelled = threading.Event()

        def canceller() -> None:
            for ctx in victims:
                ctx.cancel()
            cancelled.set()

        def drain() -> None:  # takes what no live consumer took, once the cancelling is done
            cancelled.wait()
            streams[-1].extend(ch)

        hammer(
            *[lambda p=p: produce(p) for p in range(len(counts))],
            *[lambda c=c: consume(c) for c in range(n_cons)],
            canceller,
            drain,
        )
        for ctx in ctxs:
            ctx.cancel()
        return check([x for ps in produced for x in ps], streams)

    return Scenario("Context cancel mid-stream", aio, threads)


def _task_cancel() -> Scenario:
    """asyncio: consumer and producer *tasks* cancelled at random points (threads: the
    closest thing, an interrupting Context per thread, cancelled by another thread)."""

    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        ch: corral.Channel[Item] = corral.Channel(rng.choice((0, 1, 2)))
        counts, n_cons = _plan(rng, max_prod=3)
        produced: list[Item] = []
        streams: list[list[Item]] = [[] for _ in range(n_cons + 1)]

        async def produce(p: int) -> None:
            for i in range(counts[p]):
                await ch.send((p, i))
                produced.append((p, i))

        async def consume(c: int) -> None:
            async for x in ch:
                streams[c].append(x)

        prods = [asyncio.create_task(produce(p)) for p in range(len(counts))]
        cons = [asyncio.create_task(consume(c)) for c in range(n_cons)]

        async def drain() -> None:  # takes what no live consumer took
            streams[-1].extend([x async for x in ch])

        victims = [t for t in prods + cons if rng.random() < 0.4]
        for t in victims:
            for _ in range(rng.randint(0, 5)):
                await asyncio.sleep(0)
            t.cancel()
        cons.append(asyncio.create_task(drain()))  # after the cancellations, as in _ctx_cancel
        await asyncio.gather(*prods, return_exceptions=True)
        ch.close()
        await asyncio.gather(*cons, return_exceptions=True)
        return check(produced, streams)

    return Scenario("task cancel mid-stream", aio, _ctx_cancel().threads)


# --- semaphore ---------------------------------------------------------------------------------


def _semaphore() -> Scenario:
    """Workers acquire random weights: never more than ``size`` held at once, grants in
    FIFO order of queueing for the asyncio form, every permit back at the end."""

    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        size = rng.randint(1, 5)
        sem = corral.Semaphore(size)
        held = [0]
        grants = [0]

        async def worker(w: int) -> None:
            for _ in range(rng.randint(1, 5)):
                n = rng.randint(1, size)
                async with sem.acquire(n):
                    held[0] += n
                    assert held[0] <= size, f"{held[0]} permits held, size {size}"
                    grants[0] += 1
                    await asyncio.sleep(0)
                    held[0] -= n

        await asyncio.gather(*[worker(w) for w in range(rng.randint(1, 5))])
        st = sem.statistics()
        assert (st.held, st.waiting) == (0, 0), st
        return Tally(grants[0], False)

    def threads(rng: random.Random) -> Tally:
        size = rng.randint(1, 5)
        sem = corral.threads.Semaphore(size)
        held = [0]
        grants = [0]
        lock = threading.Lock()
        plans = [
            [rng.randint(1, size) for _ in range(rng.randint(1, 8))]
            for _ in range(rng.randint(2, 5))
        ]

        def worker(plan: list[int]) -> None:
            for n in plan:
                with sem.acquire(n):
                    with lock:
                        held[0] += n
                        assert held[0] <= size, f"{held[0]} permits held, size {size}"
                        grants[0] += 1
                    with lock:
                        held[0] -= n

        hammer(*[lambda plan=plan: worker(plan) for plan in plans])
        st = sem.statistics()
        assert (st.held, st.waiting) == (0, 0), st
        return Tally(grants[0], False)

    return Scenario("semaphore weights", aio, threads, unit="grants")


# --- hand-built fan-out / fan-in over channels ------------------------------------------------


def _fan_out_fan_in_by_hand() -> Scenario:
    """One source, W workers reading it (fan-out), all writing one output (fan-in)."""

    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        src: corral.Channel[Item] = corral.Channel(rng.randrange(3))
        out: corral.Channel[Item] = corral.Channel(rng.randrange(3))
        counts, n_workers = _plan(rng, max_prod=2, max_cons=4)
        produced: list[Item] = []
        streams: list[list[Item]] = [[] for _ in range(n_workers)]
        merged: list[Item] = []

        async def produce(p: int) -> None:
            for i in range(counts[p]):
                await src.send((p, i))
                produced.append((p, i))

        async def work(w: int) -> None:
            async for x in src:
                streams[w].append(x)
                await out.send(x)

        async def collect() -> None:
            merged.extend([x async for x in out])

        prods = [asyncio.create_task(produce(p)) for p in range(len(counts))]
        workers = [asyncio.create_task(work(w)) for w in range(n_workers)]
        coll = asyncio.create_task(collect())
        await asyncio.gather(*prods)
        src.close()
        await asyncio.gather(*workers)
        out.close()
        await coll
        check(produced, streams)  # each worker: in order
        return check(produced, [merged], ordered=n_workers == 1)

    def threads(rng: random.Random) -> Tally:
        src: corral.threads.Channel[Item] = corral.threads.Channel(rng.randrange(3))
        out: corral.threads.Channel[Item] = corral.threads.Channel(rng.randrange(3))
        counts, n_workers = _plan(rng, max_prod=2, max_cons=4)
        produced: list[list[Item]] = [[] for _ in counts]
        streams: list[list[Item]] = [[] for _ in range(n_workers)]
        merged: list[Item] = []
        src_closer = _LastOut(len(counts), src.close)
        out_closer = _LastOut(n_workers, out.close)

        def produce(p: int) -> None:
            try:
                for i in range(counts[p]):
                    src.send((p, i))
                    produced[p].append((p, i))
            finally:
                src_closer.done()

        def work(w: int) -> None:
            try:
                for x in src:
                    streams[w].append(x)
                    out.send(x)
            finally:
                out_closer.done()

        def collect() -> None:
            merged.extend(out)

        hammer(
            *[lambda p=p: produce(p) for p in range(len(counts))],
            *[lambda w=w: work(w) for w in range(n_workers)],
            collect,
        )
        flat = [x for ps in produced for x in ps]
        check(flat, streams)
        return check(flat, [merged], ordered=n_workers == 1)

    return Scenario("fan-out/fan-in (by hand)", aio, threads)


# --- threads and tasks on one channel -------------------------------------------------------


def _mixed() -> Scenario:
    """Thread producers and task producers, thread consumers and task consumers, one
    channel. The thread form runs two event loops in two threads plus plain threads."""

    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        ch: corral.Channel[Item] = corral.Channel(rng.choice((0, 1, 4)))
        tch = ch.as_threads()
        n = 4  # producers: 0, 1 threads; 2, 3 tasks. Consumers: 0 thread; 1, 2 tasks.
        counts = [rng.randint(0, 10) for _ in range(n)]
        produced: list[list[Item]] = [[] for _ in range(n)]
        streams: list[list[Item]] = [[], [], []]
        closer = _LastOut(n, ch.close)
        finished: corral.Channel[str] = corral.Channel(math.inf)
        tfinished = finished.as_threads()

        def thread_produce(p: int) -> None:
            try:
                for i in range(counts[p]):
                    tch.send((p, i))
                    produced[p].append((p, i))
            finally:
                closer.done()
                tfinished.send(f"producer {p}")

        def thread_consume() -> None:
            try:
                for x in tch:
                    streams[0].append(x)
            finally:
                tfinished.send("consumer 0")

        async def task_produce(p: int) -> None:
            try:
                for i in range(counts[p]):
                    await ch.send((p, i))
                    produced[p].append((p, i))
            finally:
                closer.done()

        async def task_consume(c: int) -> None:
            async for x in ch:
                streams[c].append(x)

        threads = [threading.Thread(target=thread_produce, args=(p,)) for p in (0, 1)]
        threads.append(threading.Thread(target=thread_consume))
        for t in threads:
            t.start()
        try:
            await asyncio.gather(task_produce(2), task_produce(3), task_consume(1), task_consume(2))
            for _ in threads:
                await finished.recv()  # every thread is past its last channel operation
        finally:
            for t in threads:
                t.join()
        return check([x for ps in produced for x in ps], streams)

    def threads(rng: random.Random) -> Tally:
        ch: corral.threads.Channel[Item] = corral.threads.Channel(rng.choice((0, 1, 4)))
        ach = ch.as_async()
        n = 4  # producers: 0, 1 threads; 2 on loop A; 3 on loop B
        counts = [rng.randint(0, 10) for _ in range(n)]
        produced: list[list[Item]] = [[] for _ in range(n)]
        streams: list[list[Item]] = [[], [], []]  # consumer 0 thread, 1 loop A, 2 loop B
        closer = _LastOut(n, ch.close)

        def thread_produce(p: int) -> None:
            try:
                for i in range(counts[p]):
                    ch.send((p, i))
                    produced[p].append((p, i))
            finally:
                closer.done()

        def thread_consume() -> None:
            streams[0].extend(ch)

        def loop(p: int, c: int) -> None:
            async def produce() -> None:
                try:
                    for i in range(counts[p]):
                        await ach.send((p, i))
                        produced[p].append((p, i))
                finally:
                    closer.done()

            async def consume() -> None:
                async for x in ach:
                    streams[c].append(x)

            async def main() -> None:
                await asyncio.gather(produce(), consume())

            asyncio.run(main())

        hammer(
            lambda: thread_produce(0),
            lambda: thread_produce(1),
            thread_consume,
            lambda: loop(2, 1),
            lambda: loop(3, 2),
        )
        return check([x for ps in produced for x in ps], streams)

    return Scenario("mixed threads+tasks, 2 loops", aio, threads, virtual_clock=False)


CORE_SCENARIOS: list[Scenario] = [
    channel_scenario(0),
    channel_scenario(1),
    channel_scenario(4),
    channel_scenario(math.inf),
    _select_fan_in(),
    _select_send(),
    _select_relay(),
    _close_midstream(),
    _timeouts(),
    _ctx_cancel(),
    _task_cancel(),
    _semaphore(),
    _fan_out_fan_in_by_hand(),
    _mixed(),
]
