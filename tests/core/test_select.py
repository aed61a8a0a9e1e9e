"""select conformance, run by every flavour: exactly one case takes effect, and fairly.

Ported in part from Go's runtime/chan_test.go (TestSelectFairness, TestNonblockSelectRace,
TestSelfSelect) and select semantics (a non-blocking select never takes default when a case
is ready).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import Counter
from types import ModuleType
from typing import Any

import pytest

import corral
import corral.threads
from corral import Cancelled, ChannelClosed, DeadlineExceeded, RecvCase, Selected, WouldBlock

from .flavours import (  # noqa: F401 (fixtures)
    STRESS,
    Flavour,
    Stage,
    World,
    flavour_fixture,
    parked,
    stage_fixture,
    tiny_switch_interval_fixture,
    world_fixture,
)

SHORT = 0.01  # a timeout value for tests about timeouts


def _idle(*chans: Any) -> bool:
    """No waiter left on any of the channels."""
    return all(
        c.statistics().waiting_senders == c.statistics().waiting_receivers == 0 for c in chans
    )


async def test_select_fires_exactly_one_ready_case_and_leaves_the_others(
    flavour: Flavour,
) -> None:
    chans = [flavour.channel(1) for _ in range(3)]
    for i, c in enumerate(chans):
        c.send_nowait(i)
    for _ in range(12):
        cases = [c.recv_case() for c in chans]
        s = await flavour.rx.select(*cases)
        assert s == Selected(s.index, s.index, True, cases[s.index])
        assert [len(c) for c in chans] == [int(i != s.index) for i in range(3)]
        chans[s.index].send_nowait(s.index)  # refill
    assert _idle(*chans)


async def test_blocked_select_takes_exactly_one_item_when_several_arrive(
    flavour: Flavour,
) -> None:
    a, b = flavour.channel(0), flavour.channel(0)
    sel = flavour.rx.select(a.recv_case(), b.recv_case())
    await parked(a, receivers=1)
    await parked(b, receivers=1)
    send_a, send_b = flavour.tx.send(a, "A"), flavour.tx.send(b, "B")
    s = await sel
    won_op, lost, lost_op, lost_item = (
        (send_a, b, send_b, "B") if s.index == 0 else (send_b, a, send_a, "A")
    )
    assert s.value == "AB"[s.index]
    await won_op
    # The losing sender still waits with its item: the select's other case took nothing.
    await parked(lost, senders=1, receivers=0)
    assert not lost_op.done()
    assert await flavour.rx.recv(lost) == lost_item
    await lost_op
    assert _idle(a, b)


async def test_select_with_default_and_nothing_ready_returns_none(flavour: Flavour) -> None:
    empty = flavour.channel(0)
    full = flavour.channel(1)
    full.send_nowait("old")
    assert await flavour.rx.select(empty.recv_case(), full.send_case("x"), default=True) is None
    assert _idle(empty, full)
    assert full.recv_nowait() == "old"
    with pytest.raises(WouldBlock):
        full.recv_nowait()


async def test_select_with_default_takes_a_ready_case(flavour: Flavour) -> None:
    a, b = flavour.channel(0), flavour.channel(1)
    b.send_nowait("x")
    s = await flavour.rx.select(a.recv_case(), b.recv_case(), default=True)
    assert s is not None
    assert (s.index, s.value, s.ok) == (1, "x", True)
    s = await flavour.rx.select(a.recv_case(), b.send_case("y"), default=True)
    assert s is not None
    assert (s.index, s.value, s.ok) == (1, None, True)
    assert b.recv_nowait() == "y"


async def test_select_with_default_never_takes_default_while_a_case_is_ready(
    flavour: Flavour,
) -> None:
    # Go's TestNonblockSelectRace: at every instant c1 or c2 holds an item (c1 is emptied
    # only after c2 was filled), so a concurrent select with default must find one.
    for _ in range(60):
        c1, c2 = flavour.channel(1), flavour.channel(1)
        c1.send_nowait(1)
        sel = flavour.rx.select(c1.recv_case(), c2.recv_case(), default=True)
        await flavour.tx.start(lambda c2=c2: flavour.tx.chan(c2).send_nowait(1))
        try:
            c1.recv_nowait()
        except WouldBlock:
            pass
        assert await sel is not None, "no channel was ready"


async def test_select_timeout_raises_deadline_exceeded_and_takes_nothing(
    flavour: Flavour,
) -> None:
    empty, full = flavour.channel(0), flavour.channel(1)
    full.send_nowait("old")
    with pytest.raises(DeadlineExceeded) as caught:
        await flavour.rx.select(empty.recv_case(), full.send_case("new"), timeout=SHORT)
    assert isinstance(caught.value, TimeoutError)  # `except TimeoutError` catches it
    assert _idle(empty, full)
    assert full.recv_nowait() == "old"
    with pytest.raises(WouldBlock):
        empty.send_nowait("x")


async def test_select_ctx_cancelled_raises_cancelled_and_takes_nothing(flavour: Flavour) -> None:
    ch = flavour.channel(0)
    ctx = corral.with_cancel(corral.background())
    cause = KeyError("shutdown")
    sel = flavour.rx.select(ch.recv_case(), ch.send_case("mine"), ctx=ctx)
    await parked(ch, senders=1, receivers=1)
    ctx.cancel(cause)
    with pytest.raises(Cancelled) as caught:
        await sel
    assert caught.value.cause is cause
    assert _idle(ch)
    with pytest.raises(WouldBlock):
        ch.send_nowait("x")


async def test_select_with_a_done_ctx_fails_even_when_a_case_is_ready(flavour: Flavour) -> None:
    ch = flavour.channel(1)
    ch.send_nowait("x")
    ctx = corral.with_cancel(corral.background())
    ctx.cancel()
    with pytest.raises(Cancelled):
        await flavour.rx.select(ch.recv_case(), ctx=ctx)
    assert len(ch) == 1


@pytest.mark.parametrize("ns", [corral, corral.threads], ids=["asyncio", "threads"])
async def test_select_chooses_uniformly_among_ready_cases(ns: ModuleType) -> None:
    # Go's TestSelectFairness: 10,000 selects over two always-ready channels (and two never
    # ready ones); each should win about half: within 10 sigma = 500 of 5,000.
    trials = 10_000
    c1, c2 = ns.Channel(trials + 1), ns.Channel(trials + 1)
    for _ in range(trials + 1):
        c1.send_nowait(1)
        c2.send_nowait(2)
    c3, c4 = ns.Channel(0), ns.Channel(0)
    cases = [c3.recv_case(), c4.recv_case(), c1.recv_case(), c2.recv_case()]
    counts: Counter[int] = Counter()
    for _ in range(trials):
        s = ns.select(*cases)
        if asyncio.iscoroutine(s):
            s = await s
        counts[s.value] += 1
    assert counts[1] + counts[2] == trials
    assert 4500 <= counts[1] <= 5500, counts


async def test_select_on_one_channel_twice_takes_one_item(flavour: Flavour) -> None:
    ch = flavour.channel(2)
    ch.send_nowait("a")
    ch.send_nowait("b")
    s = await flavour.rx.select(ch.recv_case(), ch.recv_case())
    assert s.value == "a"
    assert len(ch) == 1

    rv = flavour.channel(0)
    sel = flavour.rx.select(rv.recv_case(), rv.recv_case())
    await parked(rv, receivers=2)
    await flavour.tx.send(rv, "x")
    assert (await sel).value == "x"
    # Its other entry is stale: it must not swallow the next item.
    second = flavour.tx.send(rv, "y")
    await parked(rv, senders=1, receivers=0)
    assert not second.done()
    assert rv.recv_nowait() == "y"
    await second

    sel = flavour.rx.select(rv.send_case(1), rv.send_case(2))
    await parked(rv, senders=2)
    got = await flavour.tx.recv(rv)
    s = await sel
    assert got == s.index + 1
    with pytest.raises(WouldBlock):
        rv.recv_nowait()  # the other send case sent nothing
    assert _idle(ch, rv)


async def test_select_alone_on_a_rendezvous_channel_never_matches_its_own_send(
    flavour: Flavour,
) -> None:
    ch = flavour.channel(0)
    assert await flavour.rx.select(ch.send_case(1), ch.recv_case(), default=True) is None
    with pytest.raises(DeadlineExceeded):
        await flavour.rx.select(ch.send_case(1), ch.recv_case(), timeout=SHORT)
    assert _idle(ch)


@pytest.mark.parametrize("capacity", [0, 10])
async def test_select_never_receives_its_own_send(flavour: Flavour, capacity: int) -> None:
    # Go's TestSelfSelect: two parties select over a send and a receive on one channel.
    ch = flavour.channel(capacity)

    async def party(world: World, p: int) -> None:
        for i in range(100):
            if p == 0 or i % 2 == 0:
                s = await world.select(ch.send_case(p), ch.recv_case())
            else:
                s = await world.select(ch.recv_case(), ch.send_case(p))
            if isinstance(s.case, RecvCase) and capacity == 0:
                assert s.value != p, "self receive"

    await asyncio.gather(party(flavour.tx, 0), party(flavour.rx, 1))
    assert _idle(ch)


async def test_select_over_channels_of_both_flavours(world: World, stage: Stage) -> None:
    a = corral.Channel(0)
    b = corral.threads.Channel(0)
    peer = stage.threads if world is stage.main else stage.main
    for index, ch in enumerate((a, b)):
        sel = world.select(a.recv_case(), b.recv_case())
        await parked(a, receivers=1)
        await parked(b, receivers=1)
        await peer.send(ch, f"to {index}")
        s = await sel
        assert (s.index, s.value) == (index, f"to {index}")
    sel = world.select(a.send_case("from a"), b.send_case("from b"))
    await parked(b, senders=1)
    assert await peer.recv(b) == "from b"
    assert (await sel).index == 1
    assert _idle(a, b)


async def test_select_send_case_on_a_closed_channel_raises_channel_closed(
    flavour: Flavour,
) -> None:
    other = flavour.channel(0)
    closed = flavour.channel(1)
    closed.close()
    with pytest.raises(ChannelClosed):
        await flavour.rx.select(other.recv_case(), closed.send_case("x"))
    # closed while the select waits on it
    rv = flavour.channel(0)
    sel = flavour.rx.select(other.recv_case(), rv.send_case("x"))
    await parked(rv, senders=1)
    assert await flavour.tx.close(rv) is True
    with pytest.raises(ChannelClosed, match="case 1"):
        await sel
    assert _idle(other, rv)


async def test_select_recv_case_on_a_closed_channel_fires_with_ok_false(
    flavour: Flavour,
) -> None:
    other = flavour.channel(0)
    ch = flavour.channel(1)
    ch.send_nowait("last")
    ch.close()
    cases = [other.recv_case(), ch.recv_case()]
    assert await flavour.rx.select(*cases) == Selected(1, "last", True, cases[1])
    assert await flavour.rx.select(*cases) == Selected(1, None, False, cases[1])
    # closed while the select waits on it
    rv = flavour.channel(0)
    cases = [other.recv_case(), rv.recv_case()]
    sel = flavour.rx.select(*cases)
    await parked(rv, receivers=1)
    assert await flavour.tx.close(rv) is True
    assert await sel == Selected(1, None, False, cases[1])
    assert _idle(other, rv)


async def test_select_with_an_unbounded_channel_send_case_never_waits(flavour: Flavour) -> None:
    inf = flavour.channel(math.inf)
    never = flavour.channel(0)
    for i in range(50):
        s = await flavour.rx.select(never.recv_case(), inf.send_case(i))
        assert s.index == 1
    assert len(inf) == 50


@pytest.mark.hammer
@pytest.mark.usefixtures("tiny_switch_interval")
def test_hammer_select_with_default_never_takes_default_while_a_case_is_ready() -> None:
    # Go's TestNonblockSelectRace, with the select in a thread racing this one.
    T = corral.threads
    for _ in range(2000 * STRESS):
        c1, c2 = T.Channel(1), T.Channel(1)
        c1.send_nowait(1)
        result: list[Selected | None] = []

        def select(c1: Any = c1, c2: Any = c2, result: list[Selected | None] = result) -> None:
            result.append(T.select(c1.recv_case(), c2.recv_case(), default=True))

        t = threading.Thread(target=select)
        t.start()
        c2.send_nowait(1)
        try:
            c1.recv_nowait()
        except WouldBlock:
            pass
        t.join()
        assert result[0] is not None, "no channel was ready"


@pytest.mark.hammer
@pytest.mark.usefixtures("tiny_switch_interval")
@pytest.mark.parametrize("capacity", [0, 10])
def test_hammer_select_never_receives_its_own_send_across_threads(capacity: int) -> None:
    # Go's TestSelfSelect with two real threads and no round trips.
    T = corral.threads
    ch = T.Channel(capacity)
    errors: list[str] = []

    def party(p: int) -> None:
        for i in range(1000 * STRESS):
            if p == 0 or i % 2 == 0:
                s = T.select(ch.send_case(p), ch.recv_case())
            else:
                s = T.select(ch.recv_case(), ch.send_case(p))
            if isinstance(s.case, RecvCase) and capacity == 0 and s.value == p:
                errors.append(f"party {p} received its own send")

    threads = [threading.Thread(target=party, args=(p,)) for p in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _idle(ch)
