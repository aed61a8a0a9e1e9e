"""``rate=`` on fan_out and stage: every call acquires a RateLimit or Limits first.

Time is a ManualClock that a ticker thread moves in fixed steps (the ticker's sleep is a
polling interval: every assertion is about the manual clock's readings, never real time).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import corral
import corral.threads
from corral.testing import ManualClock

from .helpers import Flavour, Kind

STEP = 0.01  # manual seconds per tick


@contextlib.contextmanager
def ticking(clock: ManualClock) -> Iterator[None]:
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.0005):
            clock.advance(STEP)

    t = threading.Thread(target=tick, name="test-ticker")
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(10)


def _within_gcra(times: list[float], costs: list[float], rate: float, burst: float) -> None:
    """By each manual time t, calls costing at most burst + t * rate have started (the
    clock starts at 0 with a full burst).

    The times are when the calls *started*, at or after their grants: a call that starts
    late (its thread or task ran later) can land next to the following one and crowd a
    short window that the grants themselves never crowded (seen in CI under load). So the
    windows are counted from the clock's start, which a late start can only help.
    """
    total = 0.0
    for t, c in sorted(zip(times, costs, strict=True)):
        total += c
        assert total <= burst + t * rate + 1e-6, (t, total)


async def test_fan_out_calls_follow_the_rate(flavour: Flavour, kind: Kind) -> None:
    clock = ManualClock()
    rl = flavour.RateLimit(20, burst=2, clock=clock)  # one call per 0.05 manual s
    times: list[float] = []
    lock = threading.Lock()

    def body(x: int) -> int:
        with lock:
            times.append(clock.now())
        return x * 10

    with ticking(clock):
        got = await flavour.collect(
            flavour.fan_out(kind.fn(body), range(12), workers=4, ordered=True, rate=rl)
        )
    assert got == [x * 10 for x in range(12)]
    assert len(times) == 12
    _within_gcra(times, [1] * 12, 20, 2)
    assert rl.statistics().granted == 12
    assert max(times) >= (12 - 2) / 20 - 1e-9  # it really had to wait for the clock


async def test_weighted_cost_of_the_item(flavour: Flavour) -> None:
    clock = ManualClock()
    tpm = corral.RateLimit(100, burst=50, clock=clock)
    times: list[float] = []

    def call(n: int) -> int:
        times.append(clock.now())
        return n

    items = [10, 40, 5, 30, 50, 20]
    with ticking(clock):
        got = await flavour.collect(
            flavour.fan_out(call, items, workers=1, rate=tpm, cost=lambda n: n)
        )
    assert sorted(got) == sorted(items)
    _within_gcra(times, items, 100, 50)
    assert tpm.statistics().granted == sum(items)


async def test_limits_hold_the_semaphore_for_the_call(flavour: Flavour, kind: Kind) -> None:
    clock = ManualClock()
    rpm = corral.RateLimit(1000, burst=5, clock=clock)
    conns = corral.Semaphore(2)
    limits = corral.Limits(rpm, conns)
    inside = peak = 0
    lock = threading.Lock()

    def body(x: int) -> int:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
            held = conns.statistics().held
        with lock:
            inside -= 1
        return held

    with ticking(clock):
        held = await flavour.collect(
            flavour.fan_out(kind.fn(body), range(30), workers=6, rate=limits)
        )
    assert peak <= 2
    assert all(1 <= h <= 2 for h in held)
    assert conns.statistics().held == 0
    assert rpm.statistics().granted == 30


async def test_a_bad_cost_is_that_items_error(flavour: Flavour) -> None:
    rl = corral.RateLimit(1000, burst=10, clock=ManualClock())
    out = await flavour.collect(
        flavour.fan_out(
            lambda x: x,
            [1, 2, 3],
            workers=1,
            rate=rl,
            cost=lambda x: 99 if x == 2 else 1,
            errors="collect",
            ordered=True,
        )
    )
    assert [o.ok for o in out] == [True, False, True]
    assert isinstance(out[1].error, ValueError)
    assert "larger than the burst" in str(out[1].error)
    assert rl.statistics().granted == 2


async def test_pipeline_stage_with_a_rate(flavour: Flavour) -> None:
    clock = ManualClock()
    rl = flavour.RateLimit(50, clock=clock)
    times: list[float] = []

    def slow_stage(x: int) -> int:
        times.append(clock.now())
        return x + 1

    with ticking(clock):
        got = await flavour.collect(
            flavour.pipeline(
                range(8),
                flavour.stage(lambda x: x * 2, workers=2),
                flavour.stage(slow_stage, workers=3, rate=rl),
                ordered=True,
            )
        )
    assert got == [x * 2 + 1 for x in range(8)]
    _within_gcra(times, [1] * 8, 50, 1)


async def test_leaving_early_aborts_the_waits_and_charges_only_calls_made(
    flavour: Flavour,
) -> None:
    # The clock never moves: after the burst every worker waits; leaving the block must
    # stop them (their acquires are cancelled by the run's ctx and cost nothing).
    rl = corral.RateLimit(1, burst=3, clock=ManualClock())
    calls = 0

    def body(x: int) -> int:
        nonlocal calls
        calls += 1
        return x

    async with flavour.open(flavour.fan_out(body, range(100), workers=4, rate=rl)) as it:
        first = await flavour.next(it)
    assert first in range(100)
    st = rl.statistics()
    assert st.granted == calls == 3
    assert st.waiting == 0


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"rate": 5}, TypeError, r"rate must be a corral RateLimit or Limits"),
        ({"rate": corral.Semaphore(2)}, TypeError, r"\brate\b"),
        ({"cost": len}, ValueError, r"cost needs a rate="),
        ({"rate": corral.RateLimit(5), "cost": 3}, TypeError, r"\bcost\b"),
    ],
)
def test_rate_argument_errors(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    for make in (
        lambda: corral.fan_out(abs, [1], **kwargs),
        lambda: corral.threads.fan_out(abs, [1], **kwargs),
        lambda: corral.stage(abs, **kwargs),
    ):
        with pytest.raises(exc, match=match):
            make()


class _RefusingLimiter:
    """A limiter (the protocol corral.redis's use) that refuses these workers, as a
    corral.redis.RateLimit of the other flavour does, while the run's stages are built."""

    def _corral_rate_wrap(self, call: Any, cost: Any, task: bool, ctx: Any) -> Any:
        raise TypeError("this limiter is for the other flavour's workers")


def test_a_run_that_fails_before_any_worker_starts_raises_instead_of_hanging() -> None:
    # The refusal came before any worker was counted: no worker would ever close the
    # run's `finished`, and leaving the block waited on it forever (found on Redis).
    with pytest.raises(TypeError, match="other flavour"):
        corral.threads.fan_out(lambda x: x, range(3), rate=_RefusingLimiter()).collect()

    async def main() -> None:
        async def f(x: int) -> int:
            return x

        with pytest.raises(TypeError, match="other flavour"):
            await corral.fan_out(f, range(3), rate=_RefusingLimiter()).collect()

    asyncio.run(main())
