"""Channel conformance, run by every flavour (asyncio, threads, thread<->task, two loops).

Ported in part from Go's runtime/chan_test.go (TestChan): rendezvous and buffered blocking,
FIFO for every capacity, multi-producer/multi-consumer exact counts, close semantics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import corral
import corral.threads
from corral import ChannelClosed, ChannelStatistics, EndOfChannel, WouldBlock

from .flavours import (  # noqa: F401 (fixtures)
    STRESS,
    Flavour,
    Stage,
    consume,
    flavour_fixture,
    hammer_rng_fixture,
    parked,
    produce,
    stage_fixture,
    tiny_switch_interval_fixture,
)

# --- capacity 0, 1, N, unbounded ---------------------------------------------------------------


async def test_rendezvous_send_completes_only_when_received(flavour: Flavour) -> None:
    ch = flavour.channel(0)
    send = flavour.tx.send(ch, "x")
    await parked(ch, senders=1)
    assert not send.done()
    assert len(ch) == 0  # a rendezvous channel never holds the item itself
    assert await flavour.rx.recv(ch) == "x"
    assert await send is None
    assert ch.statistics() == ChannelStatistics(0, 0, 0, 0, False)


async def test_rendezvous_receive_waits_for_a_sender(flavour: Flavour) -> None:
    ch = flavour.channel(0)
    recv = flavour.rx.recv(ch)
    await parked(ch, receivers=1)
    assert not recv.done()
    await flavour.tx.send(ch, "x")  # handed straight to the waiting receiver
    assert await recv == "x"
    assert ch.statistics() == ChannelStatistics(0, 0, 0, 0, False)


@pytest.mark.parametrize("capacity", [1, 3])
async def test_buffered_send_waits_only_when_the_buffer_is_full(
    flavour: Flavour, capacity: int
) -> None:
    ch = flavour.channel(capacity)
    for i in range(capacity):
        await flavour.tx.send(ch, i)  # completes with no receiver: it was buffered
    assert len(ch) == capacity
    blocked = flavour.tx.send(ch, "last")
    await parked(ch, senders=1)
    assert not blocked.done()
    assert len(ch) == capacity
    assert await flavour.rx.recv(ch) == 0
    await blocked  # the freed slot went to the waiting sender
    assert len(ch) == capacity
    assert await consume(flavour.rx, ch, capacity) == [*range(1, capacity), "last"]


async def test_unbounded_channel_never_blocks_a_sender(flavour: Flavour) -> None:
    ch = flavour.channel(math.inf)
    assert ch.capacity == math.inf
    await produce(flavour.tx, ch, range(300))
    assert len(ch) == 300
    assert ch.statistics() == ChannelStatistics(math.inf, 300, 0, 0, False)
    ch.close()
    assert await flavour.rx.collect(ch) == list(range(300))


# --- ordering and exact delivery -----------------------------------------------------------------


@pytest.mark.parametrize("capacity", [*range(9), math.inf])
async def test_fifo_order_for_every_capacity(flavour: Flavour, capacity: float) -> None:
    # Go's TestChan: "Send 100 integers, ensure that we receive them non-corrupted in FIFO order."
    ch = flavour.channel(capacity)
    items = list(range(40))
    producer = asyncio.create_task(produce(flavour.tx, ch, items))
    assert await consume(flavour.rx, ch, len(items)) == items
    await producer
    assert ch.statistics() == ChannelStatistics(capacity, 0, 0, 0, False)


@pytest.mark.parametrize("capacity", [0, 1, 10, math.inf])
async def test_many_producers_and_consumers_deliver_every_item_exactly_once(
    flavour: Flavour, capacity: float
) -> None:
    # Go's TestChan: "Send 1000 integers in 4 goroutines, ensure that we receive what we send",
    # sized for two cores: 4 producers x 100 items, 4 consumers.
    producers, per_producer = 4, 100
    ch = flavour.channel(capacity)
    sending = [
        asyncio.create_task(produce(flavour.tx, ch, [(p, i) for i in range(per_producer)]))
        for p in range(producers)
    ]
    receiving = [
        asyncio.create_task(consume(flavour.rx, ch, per_producer)) for _ in range(producers)
    ]
    received = await asyncio.gather(*receiving)
    await asyncio.gather(*sending)

    counts = Counter(itertools.chain.from_iterable(received))
    assert counts == Counter({(p, i): 1 for p in range(producers) for i in range(per_producer)})
    assert sum(i for got in received for _, i in got) == producers * sum(range(per_producer))
    # FIFO across parties: each consumer sees each producer's items in the order sent.
    for got in received:
        for p in range(producers):
            seq = [i for q, i in got if q == p]
            assert seq == sorted(seq)
    assert ch.statistics() == ChannelStatistics(capacity, 0, 0, 0, False)


# --- close ---------------------------------------------------------------------------------------


async def test_close_delivers_buffered_items_then_end_of_channel(flavour: Flavour) -> None:
    ch = flavour.channel(3)
    await flavour.tx.send(ch, "a")
    await flavour.tx.send(ch, "b")
    assert await flavour.tx.close(ch) is True
    assert ch.closed
    assert await flavour.rx.recv(ch) == "a"
    assert await flavour.rx.recv(ch) == "b"
    for _ in range(2):  # and it stays ended
        with pytest.raises(EndOfChannel):
            await flavour.rx.recv(ch)
    with pytest.raises(EndOfChannel):
        flavour.rx.chan(ch).recv_nowait()


async def test_iteration_ends_when_the_channel_is_closed_and_drained(flavour: Flavour) -> None:
    ch = flavour.channel(2)
    producer = asyncio.create_task(produce(flavour.tx, ch, range(7), close=True))
    assert await flavour.rx.collect(ch) == list(range(7))
    await producer
    assert await flavour.rx.collect(ch) == []  # iterating a closed, drained channel ends at once


@pytest.mark.parametrize("capacity", [0, 1])
async def test_close_fails_blocked_senders_and_their_items_are_not_delivered(
    flavour: Flavour, capacity: int
) -> None:
    ch = flavour.channel(capacity)
    buffered = [f"buffered-{i}" for i in range(capacity)]
    await produce(flavour.tx, ch, buffered)
    blocked = [flavour.tx.send(ch, f"lost-{i}") for i in range(3)]
    await parked(ch, senders=3)
    assert await flavour.tx.close(ch) is True
    for op in blocked:
        with pytest.raises(ChannelClosed):
            await op
    assert await flavour.rx.collect(ch) == buffered
    assert ch.statistics() == ChannelStatistics(capacity, 0, 0, 0, True)


async def test_close_wakes_every_blocked_receiver(flavour: Flavour) -> None:
    ch = flavour.channel(0)
    receivers = [flavour.rx.recv(ch) for _ in range(3)]
    iterating = flavour.rx.collect(ch)
    await parked(ch, receivers=4)
    assert await flavour.tx.close(ch) is True
    for op in receivers:
        with pytest.raises(EndOfChannel):
            await op
    assert await iterating == []


async def test_close_wakes_every_waiter_in_every_thread_and_loop(stage: Stage) -> None:
    # One channel for receivers and one for senders, each shared by tasks on the test's loop,
    # worker threads and tasks on a second loop; each closed from a thread that is none of theirs.
    rch = corral.Channel(0)
    sch = corral.threads.Channel(1)
    sch.send_nowait("kept")
    spare = corral.Channel(0)
    receivers = [w.recv(rch) for w in stage.worlds for _ in range(2)]
    iterators = [w.collect(rch) for w in stage.worlds]
    recv_selects = [w.select(spare.recv_case(), rch.recv_case()) for w in stage.worlds]
    senders = [w.send(sch, (w.name, i)) for w in stage.worlds for i in range(2)]
    send_selects = [w.select(spare.recv_case(), sch.send_case(w.name)) for w in stage.worlds]
    await parked(rch, receivers=12)
    await parked(sch, senders=9)

    assert await stage.threads.close(rch) is True
    assert await stage.other_loop.close(sch) is True

    for op in receivers:
        with pytest.raises(EndOfChannel):
            await op
    for op in iterators:
        assert await op == []
    for op in recv_selects:
        s = await op
        assert (s.index, s.value, s.ok) == (1, None, False)
    for op in [*senders, *send_selects]:
        with pytest.raises(ChannelClosed):
            await op
    assert sch.recv_nowait() == "kept"  # only the buffered item; no blocked sender's
    with pytest.raises(EndOfChannel):
        sch.recv_nowait()
    assert spare.statistics().waiting_receivers == 0


async def test_second_close_returns_false_and_changes_nothing(flavour: Flavour) -> None:
    ch = flavour.channel(2)
    await flavour.tx.send(ch, "a")
    assert ch.close() is True
    before = ch.statistics()
    assert ch.close() is False
    assert flavour.rx.chan(ch).close() is False  # the other view shares the state
    assert await flavour.tx.close(ch) is False
    assert ch.statistics() == before
    assert await flavour.rx.recv(ch) == "a"
    with pytest.raises(EndOfChannel):
        await flavour.rx.recv(ch)


@pytest.mark.parametrize("capacity", [0, 1, math.inf])
async def test_send_after_close_raises_channel_closed(flavour: Flavour, capacity: float) -> None:
    ch = flavour.channel(capacity)
    ch.close()
    with pytest.raises(ChannelClosed):
        await flavour.tx.send(ch, "x")
    with pytest.raises(ChannelClosed):
        ch.send_nowait("x")
    with pytest.raises(ChannelClosed):
        flavour.rx.chan(ch).send_nowait("x")
    assert len(ch) == 0
    with pytest.raises(EndOfChannel):
        await flavour.rx.recv(ch)


# --- non-blocking operations ---------------------------------------------------------------------


async def test_nowait_operations_raise_would_block_and_change_nothing(flavour: Flavour) -> None:
    ch = flavour.channel(0)
    with pytest.raises(WouldBlock):
        ch.send_nowait(1)  # no receiver waiting
    with pytest.raises(WouldBlock):
        flavour.rx.chan(ch).recv_nowait()  # no sender waiting
    assert ch.statistics() == ChannelStatistics(0, 0, 0, 0, False)

    full = flavour.channel(1)
    full.send_nowait("a")
    with pytest.raises(WouldBlock):
        flavour.tx.chan(full).send_nowait("b")
    assert full.recv_nowait() == "a"
    with pytest.raises(WouldBlock):
        full.recv_nowait()
    assert full.statistics() == ChannelStatistics(1, 0, 0, 0, False)


async def test_nowait_operations_complete_with_a_waiting_peer(flavour: Flavour) -> None:
    ch = flavour.channel(0)
    recv = flavour.rx.recv(ch)
    await parked(ch, receivers=1)
    ch.send_nowait("x")  # a rendezvous that does not wait: the receiver is there
    assert await recv == "x"

    send = flavour.tx.send(ch, "y")
    await parked(ch, senders=1)
    assert ch.recv_nowait() == "y"
    await send

    full = flavour.channel(1)
    full.send_nowait("a")
    send = flavour.tx.send(full, "b")
    await parked(full, senders=1)
    assert full.recv_nowait() == "a"  # and the waiting sender's item moves into the buffer
    await send
    assert full.recv_nowait() == "b"


# --- introspection -------------------------------------------------------------------------------


async def test_len_capacity_and_statistics(flavour: Flavour) -> None:
    ch = flavour.channel(2)
    tx, rx = flavour.tx.chan(ch), flavour.rx.chan(ch)
    assert ch.capacity == tx.capacity == rx.capacity == 2
    assert len(ch) == 0
    assert ch.statistics() == ChannelStatistics(2, 0, 0, 0, False)

    ch.send_nowait(1)
    ch.send_nowait(2)
    # One sender parked before the next starts: with thread senders, two started at once
    # may park in either order, and the FIFO check below needs a known one.
    blocked = [flavour.tx.send(ch, 3)]
    await parked(ch, senders=1)
    blocked.append(flavour.tx.send(ch, 4))
    await parked(ch, senders=2)
    assert len(ch) == len(tx) == len(rx) == 2
    assert ch.statistics() == rx.statistics() == ChannelStatistics(2, 2, 2, 0, False)

    assert await consume(flavour.rx, ch, 4) == [1, 2, 3, 4]
    for op in blocked:
        await op
    receivers = [flavour.rx.recv(ch) for _ in range(3)]
    await parked(ch, receivers=3)
    assert ch.statistics() == ChannelStatistics(2, 0, 0, 3, False)

    ch.close()
    for op in receivers:
        with pytest.raises(EndOfChannel):
            await op
    stats = ch.statistics()
    assert stats == ChannelStatistics(2, 0, 0, 0, True)
    assert ch.closed
    assert tx.closed
    assert rx.closed
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.buffered = 5  # type: ignore[misc]

    assert flavour.channel(0).capacity == 0
    unbounded = flavour.channel(math.inf)
    assert unbounded.capacity == math.inf
    assert unbounded.statistics().capacity == math.inf


def test_views_share_one_state() -> None:
    ch = corral.Channel(2)
    tch = ch.as_threads()
    assert isinstance(tch, corral.threads.Channel)
    assert tch.as_async() is ch
    assert ch.as_threads() is tch
    tch.send_nowait("from a thread view")
    assert ch.recv_nowait() == "from a thread view"
    tch.close()
    assert ch.closed


# --- hammer: many threads and tasks, tiny switch interval ----------------------------------------


@pytest.mark.hammer
@pytest.mark.usefixtures("tiny_switch_interval")
@pytest.mark.parametrize("capacity", [0, 1, 16])
def test_hammer_threads_and_tasks_share_a_channel_losing_and_duplicating_nothing(
    capacity: int,
) -> None:
    # Two producer threads and two producer tasks, two consumer threads and two consumer tasks
    # (the tasks on an event loop of their own thread), one channel, tight loops.
    per = 1500 * STRESS
    ch = corral.threads.Channel(capacity)
    ach = ch.as_async()
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever)
    loop_thread.start()

    def thread_producer(p: int) -> None:
        for i in range(per):
            ch.send((p, i))

    async def task_producer(p: int) -> None:
        for i in range(per):
            await ach.send((p, i))

    async def task_consumer() -> list[tuple[int, int]]:
        return [x async for x in ach]

    try:
        consumers_t = [_Thread(lambda: list(ch)) for _ in range(2)]
        consumers_a = [asyncio.run_coroutine_threadsafe(task_consumer(), loop) for _ in range(2)]
        producers_t = [_Thread(thread_producer, p) for p in range(2)]
        producers_a = [asyncio.run_coroutine_threadsafe(task_producer(p), loop) for p in (2, 3)]
        for t in producers_t:
            t.result()
        for f in producers_a:
            f.result(60)
        ch.close()
        received = [t.result() for t in consumers_t] + [f.result(60) for f in consumers_a]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join()
        loop.close()
    counts = Counter(itertools.chain.from_iterable(received))
    assert counts == Counter({(p, i): 1 for p in range(4) for i in range(per)})
    for got in received:
        for p in range(4):
            seq = [i for q, i in got if q == p]
            assert seq == sorted(seq)


@pytest.mark.hammer
@pytest.mark.usefixtures("tiny_switch_interval")
@pytest.mark.parametrize("capacity", [0, 2])
def test_hammer_close_racing_sends_and_receives_conserves_items(
    capacity: int, hammer_rng: random.Random
) -> None:
    # Every send either delivered its item (received exactly once) or raised ChannelClosed.
    for _ in range(150 * STRESS):
        ch = corral.threads.Channel(capacity)

        def sender(
            p: int, ch: corral.threads.Channel[tuple[int, int]] = ch
        ) -> list[tuple[int, int]]:
            sent = []
            for i in range(5):
                try:
                    ch.send((p, i))
                except ChannelClosed:
                    break
                sent.append((p, i))
            return sent

        senders = [_Thread(sender, p) for p in range(3)]
        receivers = [_Thread(lambda ch=ch: list(ch)) for _ in range(2)]
        for _ in range(hammer_rng.randrange(30)):
            time.sleep(0)  # let a random amount of traffic happen before the close
        ch.close()
        sent = Counter(itertools.chain.from_iterable(t.result() for t in senders))
        got = Counter(itertools.chain.from_iterable(t.result() for t in receivers))
        assert got == sent
        assert ch.statistics() == ChannelStatistics(capacity, 0, 0, 0, True)


class _Thread:
    """A started thread whose ``result()`` joins it and returns (or raises) what it did."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._out: list[tuple[bool, Any]] = []
        self._t = threading.Thread(target=self._run, args=(fn, *args))
        self._t.start()

    def _run(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self._out.append((True, fn(*args)))
        except BaseException as exc:
            self._out.append((False, exc))

    def result(self) -> Any:
        self._t.join()
        ok, value = self._out[0]
        if not ok:
            raise value
        return value
