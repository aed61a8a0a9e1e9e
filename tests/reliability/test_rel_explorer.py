"""Self-tests of corral.testing: the explorer, the sweep and the hammer catch what they claim.

A tool that never fails proves nothing, so each check here is shown failing on a
deliberately broken program, and passing on a correct one.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import deque
from typing import Any

import pytest

import corral
import corral.testing as ct
from corral.testing import Schedule


async def _cap1_traffic(sched: Schedule) -> list[tuple[int, int]]:
    """4 producers x 10 items through a capacity-1 channel into 2 consumers."""
    ch: corral.Channel[tuple[int, int]] = corral.Channel(1)
    got: list[tuple[int, int]] = []

    async def produce(p: int) -> None:
        for i in range(10):
            await ch.send((p, i))

    async def consume() -> None:
        async for x in ch:
            got.append(x)
            sched.log(f"got {x}")

    producers = [asyncio.create_task(produce(p)) for p in range(4)]
    consumers = [asyncio.create_task(consume()) for _ in range(2)]
    await asyncio.gather(*producers)
    ch.close()
    await asyncio.gather(*consumers)
    assert sorted(got) == [(p, i) for p in range(4) for i in range(10)]
    return got


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_replays_the_same_trace_ten_times() -> None:
    traces = {ct.run_schedule(_cap1_traffic, seed=1234).trace for _ in range(10)}
    assert len(traces) == 1
    (trace,) = traces
    assert len(trace) > 50  # a real schedule, not a trivial one


def test_ten_different_seeds_give_ten_different_traces() -> None:
    traces = [ct.run_schedule(_cap1_traffic, seed=s).trace for s in range(1, 11)]
    assert len(set(traces)) == 10


def test_seeds_change_the_outcome_not_only_the_trace() -> None:
    """The perturbation reaches the program: receive order differs between seeds."""
    orders = {tuple(ct.run_schedule(_cap1_traffic, seed=s).value) for s in range(20)}
    assert len(orders) > 10


def test_seed_zero_is_asyncios_own_order() -> None:
    plain = asyncio.run(_plain(_cap1_traffic))
    assert ct.run_schedule(_cap1_traffic, seed=0).value == plain


async def _plain(scenario: Any) -> Any:
    return await scenario(Schedule(0))


def test_virtual_clock_makes_timeouts_instant_and_ordered() -> None:
    async def scenario(sched: Schedule) -> list[str]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        order: list[str] = []

        async def sleeper(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            order.append(name)

        ch: corral.Channel[int] = corral.Channel()
        with pytest.raises(corral.DeadlineExceeded):
            await ch.recv(timeout=3600)
        await asyncio.gather(sleeper("b", 20), sleeper("a", 10), sleeper("c", 30))
        assert loop.time() - start == pytest.approx(3630)
        return order

    import time

    t0 = time.monotonic()
    results = {tuple(ct.run_schedule(scenario, seed=s).value) for s in range(20)}
    assert results == {("a", "b", "c")}
    assert time.monotonic() - t0 < 30  # an hour of virtual time per run took no real hour


# --- the explorer finds bugs plain asyncio hides ------------------------------------------


async def _relies_on_fifo(sched: Schedule) -> None:
    """Wrong program: assumes two tasks woken in one tick run in creation order."""
    seen: list[str] = []

    async def step(name: str) -> None:
        await asyncio.sleep(0)
        seen.append(name)

    await asyncio.gather(step("a"), step("b"))
    assert seen == ["a", "b"], seen


def test_explore_finds_an_order_assumption_plain_asyncio_never_breaks() -> None:
    asyncio.run(_plain(_relies_on_fifo))  # passes under asyncio's own order
    with pytest.raises(ct.ScheduleFailure) as info:
        ct.explore(_relies_on_fifo, seeds=range(50))
    failure = info.value
    assert f"seed {failure.seed}" in str(failure)
    assert "run_schedule" in str(failure)
    # The failing seed replays: the same failure, every time.
    for _ in range(3):
        with pytest.raises(AssertionError, match=r"\['b', 'a'\]"):
            ct.run_schedule(_relies_on_fifo, seed=failure.seed)


def test_corral_seed_env_replays_one_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ct.ScheduleFailure) as info:
        ct.explore(_relies_on_fifo, seeds=range(50))
    monkeypatch.setenv("CORRAL_SEED", str(info.value.seed))
    with pytest.raises(ct.ScheduleFailure) as again:
        ct.explore(_relies_on_fifo, seeds=range(1000, 2000))
    assert again.value.seed == info.value.seed
    monkeypatch.setenv("CORRAL_SEED", "0")  # asyncio's own order: passes
    assert ct.explore(_relies_on_fifo, seeds=range(50)).runs == 1


# --- the cancellation sweep finds a lost item ------------------------------------------------


class _NaiveChannel:
    """Wrong channel: a receiver woken with an item and then cancelled loses the item
    (python/asyncio#343, anyio#146: the shape corral's claim protocol exists to prevent)."""

    def __init__(self) -> None:
        self.items: deque[int] = deque()
        self.getters: deque[asyncio.Future[int]] = deque()

    def send(self, item: int) -> None:
        while self.getters:
            fut = self.getters.popleft()
            if not fut.done():
                fut.set_result(item)
                return
        self.items.append(item)

    async def recv(self) -> int:
        if self.items:
            return self.items.popleft()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.getters.append(fut)
        return await fut


async def _naive_channel_scenario(sched: Schedule) -> None:
    ch = _NaiveChannel()
    got: list[int] = []

    async def consumer() -> None:
        got.append(await ch.recv())

    task = asyncio.create_task(consumer())
    sched.cancel_target(task)
    await asyncio.sleep(0)
    ch.send(1)
    await asyncio.gather(task, return_exceptions=True)
    got.extend(ch.items)  # drain what nobody took
    assert got == [1], f"item lost: received {got}"


async def _corral_channel_scenario(sched: Schedule) -> None:
    ch: corral.Channel[int] = corral.Channel()
    got: list[int] = []

    async def consumer() -> None:
        got.append(await ch.recv())

    task = asyncio.create_task(consumer())
    sched.cancel_target(task)
    await asyncio.sleep(0)
    sent = True
    try:
        ch.send_nowait(1)
    except corral.WouldBlock:
        sent = False  # the consumer was already cancelled: nobody to hand it to
    await asyncio.gather(task, return_exceptions=True)
    assert got == ([1] if sent else []), (sent, got)


def test_cancel_sweep_finds_the_woken_then_cancelled_receiver_that_loses_its_item() -> None:
    ct.run_schedule(_naive_channel_scenario, seed=0)  # passes when nobody cancels
    with pytest.raises(ct.ScheduleFailure, match="item lost") as info:
        ct.cancel_sweep(_naive_channel_scenario)
    assert info.value.cancel_at is not None
    with pytest.raises(AssertionError, match="item lost"):
        ct.run_schedule(_naive_channel_scenario, seed=0, cancel_at=info.value.cancel_at)


def test_cancel_sweep_passes_corral_channel_at_every_step() -> None:
    report = ct.cancel_sweep(_corral_channel_scenario, seeds=range(5))
    assert report.runs >= 5 * 3
    assert 0 < report.landed <= report.runs


# --- the run checks -----------------------------------------------------------------------


def test_a_deadlock_is_reported_with_the_stuck_tasks_stacks() -> None:
    async def stuck_forever(sched: Schedule) -> None:
        ch: corral.Channel[int] = corral.Channel()
        await ch.recv()

    with pytest.raises(ct.Deadlock) as info:
        ct.run_schedule(stuck_forever, seed=3, deadlock_timeout=0.2)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "stuck_forever" in notes
    assert "seed=3" in notes


def test_a_livelock_hits_the_step_limit() -> None:
    async def spins(sched: Schedule) -> None:
        while True:
            await asyncio.sleep(0)

    with pytest.raises(AssertionError, match="more than 1000 task steps"):
        ct.run_schedule(spins, seed=1, max_steps=1000)


def test_a_task_left_pending_fails_the_run() -> None:
    async def leaves_a_task(sched: Schedule) -> None:
        ch: corral.Channel[int] = corral.Channel()
        asyncio.create_task(ch.recv())  # noqa: RUF006 - the leak under test
        await asyncio.sleep(0)

    with pytest.raises(AssertionError, match="still pending when the scenario returned"):
        ct.run_schedule(leaves_a_task, seed=1)


def test_a_waiter_left_queued_fails_the_run() -> None:
    async def strands_a_waiter(sched: Schedule) -> None:
        from corral._aio.channel import new_waiter

        ch: corral.Channel[int] = corral.Channel()
        ch._st.recv(new_waiter)  # parked through the core, and never resolved

    with pytest.raises(AssertionError, match="waiter"):
        ct.run_schedule(strands_a_waiter, seed=1)


def test_a_permit_left_held_fails_the_run() -> None:
    async def keeps_a_permit(sched: Schedule) -> None:
        sem = corral.Semaphore(3)
        await sem.acquire(2)

    with pytest.raises(AssertionError, match="2 permit"):
        ct.run_schedule(keeps_a_permit, seed=1)


def test_an_unretrieved_task_exception_fails_the_run() -> None:
    async def drops_an_error(sched: Schedule) -> None:
        async def boom() -> None:
            raise ValueError("nobody looks at me")

        t = asyncio.create_task(boom())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert t.done()
        del t

    with pytest.raises(AssertionError, match="never retrieved"):
        ct.run_schedule(drops_an_error, seed=1)


# --- hammer -------------------------------------------------------------------------------


def test_hammer_runs_every_worker_and_restores_the_switch_interval() -> None:
    before = sys.getswitchinterval()
    lock = threading.Lock()
    counter = [0]

    def work() -> int:
        for _ in range(1000):
            with lock:
                counter[0] += 1
        return threading.get_ident()

    idents = ct.hammer(*[work] * 8)
    assert counter[0] == 8000
    assert len(set(idents)) == 8
    assert sys.getswitchinterval() == before


def test_hammer_reraises_a_workers_error_and_joins_the_rest() -> None:
    def ok() -> None:
        pass

    def fails() -> None:
        raise KeyError("worker 2")

    with pytest.raises(KeyError, match="worker 2"):
        ct.hammer(ok, ok, fails, ok)
    with pytest.raises(BaseExceptionGroup) as info:
        ct.hammer(fails, fails)
    assert len(info.value.exceptions) == 2


def test_hammer_reports_a_stuck_worker() -> None:
    release = threading.Event()

    def stuck() -> None:
        release.wait()

    try:
        with pytest.raises(TimeoutError, match="still running") as info:
            ct.hammer(stuck, timeout=0.2)
        assert "release.wait()" in str(info.value)
    finally:
        release.set()


# --- task stacks ----------------------------------------------------------------------------


async def test_format_task_stacks_follows_awaits_to_the_innermost_frame() -> None:
    ch: corral.Channel[int] = corral.Channel()

    async def inner_wait() -> int:
        return await ch.recv()

    async def outer() -> int:
        return await inner_wait()

    t = asyncio.create_task(outer(), name="waiting-task")
    await asyncio.sleep(0)
    text = ct.format_task_stacks(asyncio.get_running_loop())
    assert "waiting-task" in text
    assert text.index("outer") < text.index("inner_wait") < text.index("recv")
    everywhere = ct.format_task_stacks()
    assert "waiting-task" in everywhere
    ch.send_nowait(1)
    assert await t == 1
