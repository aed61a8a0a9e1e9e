"""select fairness when it has to wait: duplicate cases of one channel, run by every flavour.

When no case is ready, a select parks one entry per case, and whoever comes later completes
the first live entry it finds in the channel's queue. If the entries were queued in argument
order, two cases on the *same* channel would always resolve to the first one. Go shuffles
the order a blocked select enqueues in (runtime/select.go's ``pollorder``); so must we.

Every trial here forces the waiting path: the select is parked (its entries counted in the
channel's statistics) before its counterpart acts, so a pass says something about the
parking order, not about the readiness poll (which tests/core/test_select.py covers).

Ported from Go's runtime/chan_test.go: TestPseudoRandomSend (each case > 10 % of 100
selects), and TestSelectFairness's 10,000 trials within 10 sigma, here with duplicate cases.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import corral
import corral.threads
from corral import Selected

from .flavours import (  # noqa: F401 (fixtures)
    Flavour,
    OtherLoopWorld,
    World,
    flavour_fixture,
    parked,
    stage_fixture,
)

FILLER = "filler"


def _idle(*chans: Any) -> bool:
    return all(
        c.statistics().waiting_senders == c.statistics().waiting_receivers == 0 for c in chans
    )


@pytest.mark.parametrize("capacity", [0, 100])
async def test_select_over_two_sends_on_one_channel_is_pseudo_random(
    flavour: Flavour, capacity: int
) -> None:
    # Go's TestPseudoRandomSend: `select { case c <- 1: case c <- 0: }` 100 times against a
    # receiver; each value must arrive more than 10 times. With capacity 100 the buffer is
    # kept full (filled first), so that every select waits, as every rendezvous one does.
    n = 100
    c = flavour.channel(capacity)
    for _ in range(capacity):
        c.send_nowait(FILLER)
    chosen: list[int] = []
    received: list[Any] = []
    for _ in range(n):
        cases = (c.send_case(1), c.send_case(0))
        sel = flavour.tx.select(*cases)
        await parked(c, senders=2)
        received.append(await flavour.rx.recv(c))
        s = await sel
        assert s == Selected(s.index, None, True, cases[s.index])
        chosen.append(1 - s.index)  # the value case s.index sent
    # With a buffer, each receive took the oldest item and moved the select's into its slot.
    received += [c.recv_nowait() for _ in range(capacity)]
    assert received == [FILLER] * capacity + chosen
    n1 = sum(chosen)
    n0 = n - n1
    assert min(n0, n1) > n // 10, (
        f"want pseudo-random, got {n0} zeros and {n1} ones (capacity {capacity})"
    )
    assert _idle(c)


@pytest.mark.parametrize("capacity", [0, 100])
async def test_select_over_two_receives_on_one_channel_is_pseudo_random(
    flavour: Flavour, capacity: int
) -> None:
    # The receive mirror of TestPseudoRandomSend: a select waits on two receive cases of one
    # (empty) channel; a sender's item must go to each case more than 10 % of the time.
    n = 100
    c = flavour.channel(capacity)
    counts: Counter[int] = Counter()
    for i in range(n):
        cases = (c.recv_case(), c.recv_case())
        sel = flavour.rx.select(*cases)
        await parked(c, receivers=2)
        await flavour.tx.send(c, i)
        s = await sel
        assert s == Selected(s.index, i, True, cases[s.index])
        counts[s.index] += 1
    assert min(counts[0], counts[1]) > n // 10, (
        f"want pseudo-random, got {counts} (capacity {capacity})"
    )
    assert len(c) == 0
    assert _idle(c)


# -- 10,000 trials ---------------------------------------------------------------------------

TRIALS = 10_000
SPINS_BEFORE_BACKOFF = 200
BACKOFF_SECONDS = 0.0005


def _waiting(c: Any, direction: str) -> int:
    s: corral.ChannelStatistics = c.statistics()
    return s.waiting_senders if direction == "send" else s.waiting_receivers


def _selector(world: World, cases: list[Any]) -> Callable[[], Any]:
    """``TRIALS`` selects over ``cases`` in ``world``; returns the Counter of fired indexes."""
    if world.is_loop:

        async def run_async() -> Counter[int]:
            counts: Counter[int] = Counter()
            for _ in range(TRIALS):
                counts[(await corral.select(*cases)).index] += 1
            return counts

        return run_async

    def run_blocking() -> Counter[int]:
        counts: Counter[int] = Counter()
        for _ in range(TRIALS):
            counts[corral.threads.select(*cases).index] += 1
        return counts

    return run_blocking


def _counterpart(world: World, c: Any, direction: str) -> Callable[[], Any]:
    """``TRIALS`` times in ``world``: wait until the select's two entries are parked on
    ``c`` (polling its statistics: corral has no "parked" event), then complete it. Returns
    what it received (the send cases' items: their indexes), or ``None``."""
    view = world.chan(c)

    def complete(i: int) -> Any:
        if direction == "send":
            return view.recv_nowait()
        view.send_nowait(i)  # a receiver waits: this completes it at once
        return None

    if world.is_loop:

        async def run_async() -> list[Any]:
            got = []
            for i in range(TRIALS):
                spins = 0
                while _waiting(c, direction) != 2:
                    await asyncio.sleep(0 if spins < SPINS_BEFORE_BACKOFF else BACKOFF_SECONDS)
                    spins += 1
                got.append(complete(i))
            return got

        return run_async

    def run_blocking() -> list[Any]:
        got = []
        for i in range(TRIALS):
            spins = 0
            while _waiting(c, direction) != 2:
                time.sleep(0 if spins < SPINS_BEFORE_BACKOFF else BACKOFF_SECONDS)
                spins += 1
            got.append(complete(i))
        return got

    return run_blocking


def _without_asyncio_debug(flavour: Flavour) -> None:
    """Turn asyncio's debug mode off in this test's loops (each test has its own): it
    captures a stack for every future, one per parked select, which made 10,000 trials
    six times slower. What is tested here is which case fires, not loop misuse."""
    asyncio.get_running_loop().set_debug(False)
    for world in (flavour.tx, flavour.rx):
        if isinstance(world, OtherLoopWorld):
            loop = world.loop
            loop.call_soon_threadsafe(loop.set_debug, False)


@pytest.mark.parametrize("direction", ["send", "recv"])
async def test_select_waiting_on_duplicate_cases_is_fair_within_go_10_sigma_bound(
    flavour: Flavour, direction: str
) -> None:
    # Go's TestSelectFairness (10,000 trials; each case within 10 sigma = 500 of 5,000), with
    # the two candidates on one channel and a select that always waits. Two never-ready
    # channels are interleaved so the select spans several locks, as in Go's test.
    _without_asyncio_debug(flavour)
    c = flavour.channel(0)
    never1, never2 = flavour.channel(0), flavour.channel(0)
    if direction == "send":
        cases = [never1.recv_case(), c.send_case(1), never2.recv_case(), c.send_case(3)]
        sel_world, other = flavour.tx, flavour.rx
    else:
        cases = [never1.recv_case(), c.recv_case(), never2.recv_case(), c.recv_case()]
        sel_world, other = flavour.rx, flavour.tx
    sel = sel_world.start(_selector(sel_world, cases))
    completed = other.start(_counterpart(other, c, direction))
    counts, got = await sel, await completed
    assert sum(counts.values()) == TRIALS
    assert set(counts) <= {1, 3}
    if direction == "send":
        assert Counter(got) == counts  # each select sent exactly the item of the case it chose
    assert 4500 <= counts[1] <= 5500, counts
    assert _idle(c, never1, never2)
