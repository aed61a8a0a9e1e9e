"""fan_out / pipeline stages on a real Dask cluster (LocalCluster, 2 worker processes).

Waiting for a state of the cluster nobody announces (tasks queued on the scheduler, tasks
gone) polls the scheduler: the poll's sleep is an interval, never the synchronization.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import corral
import corral.threads

from . import remote

try:
    import distributed

    import corral.dask
except ImportError:  # conftest skips these tests, or fails them under CI (never a silent skip)
    distributed = None

POLL_LIMIT_SECONDS = 30.0


def wait_until(cond: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + POLL_LIMIT_SECONDS
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def unfinished(client: Any, key_prefix: str) -> list[str]:
    return client.run_on_scheduler(remote.our_unfinished_tasks, prefix=key_prefix)  # type: ignore[no-any-return]


def known(client: Any, key_prefix: str) -> list[str]:
    return client.run_on_scheduler(remote.our_tasks, prefix=key_prefix)  # type: ignore[no-any-return]


class Counted:
    """An input that counts how many items were taken from it."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.taken = 0

    def __iter__(self) -> Iterator[Any]:
        for x in self.items:
            self.taken += 1
            yield x


# -- results ------------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [False, True])
def test_threads_fan_out_equals_local_run(client: Any, ordered: bool) -> None:
    items = list(range(200))
    local = corral.threads.fan_out(remote.square, items, workers=4, ordered=ordered).collect()
    out = corral.threads.fan_out(remote.square, items, workers=16, ordered=ordered, executor=client)
    got = out.collect()
    if ordered:
        assert got == local
    else:
        assert sorted(got) == sorted(local)
    stats = out.statistics().stages[0]
    assert (stats.run_in, stats.items_in, stats.items_out, stats.errors) == ("dask", 200, 200, 0)


async def test_aio_fan_out_sync_client_equals_local_run(client: Any) -> None:
    items = list(range(200))
    local = await corral.fan_out(remote.square, items, workers=4, ordered=True).collect()
    got = await corral.fan_out(
        remote.square, items, workers=16, ordered=True, executor=client
    ).collect()
    assert got == local


async def test_aio_fan_out_asynchronous_client(cluster: Any) -> None:
    async with distributed.Client(cluster.scheduler_address, asynchronous=True) as ac:
        got = await corral.fan_out(
            remote.square, range(100), workers=8, ordered=True, executor=ac
        ).collect()
        assert got == [x * x for x in range(100)]


def test_pipeline_with_one_stage_on_dask(client: Any) -> None:
    with corral.threads.pipeline(
        range(50),
        corral.stage(lambda x: x + 1, name="local-in"),
        corral.stage(remote.square, workers=8, executor=client, name="remote"),
        corral.stage(str, name="local-out"),
        ordered=True,
    ) as out:
        got = list(out)
    assert got == [str((x + 1) ** 2) for x in range(50)]
    names = [(s.name, s.run_in) for s in out.statistics().stages]
    assert names == [("local-in", "thread"), ("remote", "dask"), ("local-out", "thread")]


def test_lambda_runs_on_the_cluster(client: Any) -> None:
    # Dask pickles functions with cloudpickle: unlike run_in="process", a lambda is fine.
    got = corral.threads.fan_out(lambda x: -x, range(10), workers=4, executor=client).collect()
    assert sorted(got) == sorted(-x for x in range(10))


# -- error policies -------------------------------------------------------------------------


def test_errors_raise_surfaces_the_remote_exception(client: Any) -> None:
    with pytest.raises(ValueError, match="bad item"):
        corral.threads.fan_out(
            remote.fail_on_multiples_of_3, range(1, 30), workers=4, executor=client
        ).collect()


def test_errors_collect_gives_an_outcome_per_item(client: Any) -> None:
    got = corral.threads.fan_out(
        remote.fail_on_multiples_of_3,
        range(12),
        workers=4,
        executor=client,
        errors="collect",
        ordered=True,
    ).collect()
    assert [o.item for o in got] == list(range(12))
    for o in got:
        if o.item % 3 == 0:
            assert isinstance(o.error, ValueError)
            assert str(o.error) == f"bad item {o.item}"
        else:
            assert o.unwrap() == o.item * 10


async def test_errors_skip_drops_failed_items(client: Any) -> None:
    out = corral.fan_out(
        remote.fail_on_multiples_of_3,
        range(12),
        workers=4,
        executor=client,
        errors="skip",
        ordered=True,
    )
    got = await out.collect()
    assert got == [x * 10 for x in range(12) if x % 3]
    assert out.statistics().stages[0].errors == 4


# -- backpressure and cancellation ----------------------------------------------------------


def test_lazy_input_at_most_workers_tasks_on_the_cluster(client: Any) -> None:
    """Every task blocks on an Event: the run holds exactly ``workers`` items, no more."""
    event = distributed.Event(prefix(), client=client)
    kp = prefix()
    src = Counted([(event.name, i) for i in range(40)])
    ex = corral.dask.DaskExecutor(client, key_prefix=kp)
    out = corral.threads.fan_out(remote.wait_for_event, src, workers=5, buffer=2, executor=ex)
    with out:
        tasks = wait_until(lambda: len(known(client, kp)) >= 5 and known(client, kp), "5 tasks")
        assert len(tasks) == 5, tasks  # 2 running, 3 queued: never the whole input
        assert src.taken == 5
        event.set()
        got = sorted(x for x in out)
    assert got == list(range(40))
    assert src.taken == 40


async def test_aio_asynchronous_client_bounded_then_cancelled(cluster: Any) -> None:
    """The asyncio flavour on an asynchronous client: ``workers`` tasks on the cluster, and
    leaving early leaves none of them queued."""
    async with distributed.Client(cluster.scheduler_address, asynchronous=True) as ac:
        event = distributed.Event(prefix(), client=ac)
        kp = prefix()
        src = Counted([(event.name, i) for i in range(30)])
        ex = corral.dask.DaskExecutor(ac, key_prefix=kp)

        async def ours(states: tuple[str, ...]) -> list[str]:
            got = await ac.run_on_scheduler(remote.our_tasks, prefix=kp)
            return [k for k in got if k.rsplit(":", 1)[1] in states]

        try:
            async with corral.fan_out(remote.wait_for_event, src, workers=4, executor=ex):
                deadline = time.monotonic() + POLL_LIMIT_SECONDS
                while len(await ours(("processing", "queued", "waiting", "no-worker"))) < 4:
                    assert time.monotonic() < deadline, "timed out waiting for 4 tasks"
                    await asyncio.sleep(0.02)
                assert len(await ac.run_on_scheduler(remote.our_tasks, prefix=kp)) == 4
                assert src.taken == 4
            deadline = time.monotonic() + POLL_LIMIT_SECONDS
            while await ours(("processing", "queued", "waiting", "no-worker")):
                assert time.monotonic() < deadline, "timed out waiting for no task left"
                await asyncio.sleep(0.02)
            assert src.taken == 4  # nothing more was read from the input after leaving
        finally:
            await event.set()


@pytest.mark.parametrize("flavour", ["threads", "aio"])
async def test_leaving_early_cancels_outstanding_tasks(client: Any, flavour: str) -> None:
    event = distributed.Event(prefix(), client=client)
    kp = prefix()
    # Items 0 and 1 return at once; the rest wait for the event, which is set only after.
    items = [(event.name if i > 1 else "", i) for i in range(100)]
    ex = corral.dask.DaskExecutor(client, key_prefix=kp)
    try:
        if flavour == "threads":
            with corral.threads.fan_out(remote.maybe_wait, items, workers=6, executor=ex) as out:
                first = next(iter(out))
        else:
            async with corral.fan_out(remote.maybe_wait, items, workers=6, executor=ex) as aout:
                first = await anext(aiter(aout))
        assert first in (0, 1)
        # The run is over: none of its tasks is waiting or queued any more.
        await asyncio.to_thread(wait_until, lambda: not unfinished(client, kp), "no task left")
    finally:
        event.set()  # release the two calls still running on the workers (results dropped)


def test_ctx_cancel_cancels_outstanding_tasks(client: Any) -> None:
    event = distributed.Event(prefix(), client=client)
    kp = prefix()
    ctx = corral.threads.with_cancel(corral.threads.background())
    ex = corral.dask.DaskExecutor(client, key_prefix=kp)
    out = corral.threads.fan_out(
        remote.wait_for_event, [(event.name, i) for i in range(20)], workers=4, executor=ex, ctx=ctx
    )
    try:
        with pytest.raises(corral.Cancelled), out:
            wait_until(lambda: len(known(client, kp)) == 4, "4 tasks on the cluster")
            ctx.cancel()
            list(out)
        wait_until(lambda: not unfinished(client, kp), "no task left")
    finally:
        event.set()


# -- workers that die ------------------------------------------------------------------------


def test_killed_worker_is_rescheduled_by_dask(breakable_client: Any, tmp_path: Any) -> None:
    """A worker SIGKILLed mid-task: the scheduler runs the task again elsewhere (its
    ``allowed-failures``), and the run's results are complete."""
    marker = str(tmp_path / "killed-once")
    got = corral.threads.fan_out(
        remote.kill_own_worker_once,
        [(marker, i) for i in range(10)],
        workers=4,
        executor=breakable_client,
        ordered=True,
    ).collect()
    assert got == list(range(10))


def test_killed_worker_surfaces_as_the_stage_error(breakable_client: Any) -> None:
    """With no failures allowed, the dead worker's task fails with KilledWorker."""
    breakable_client.run_on_scheduler(remote.set_allowed_failures, n=0)
    with pytest.raises(distributed.KilledWorker):
        corral.threads.fan_out(
            remote.kill_own_worker, range(10), workers=4, executor=breakable_client
        ).collect()


def test_retries_reruns_a_failed_call(client: Any, tmp_path: Any) -> None:
    marker = str(tmp_path / "failed-once")
    ex = corral.dask.DaskExecutor(client, retries=1)
    got = corral.threads.fan_out(
        remote.fail_once, [(marker, i) for i in range(6)], workers=3, executor=ex, ordered=True
    ).collect()
    assert got == list(range(6))
    with pytest.raises(RuntimeError, match="first attempt"):
        corral.threads.fan_out(
            remote.fail_once, [(marker + "-2", 0)], workers=1, executor=client
        ).collect()


def test_restart_surfaces_as_dask_task_cancelled(breakable_client: Any) -> None:
    """``client.restart()`` mid-run: the run's outstanding tasks are cancelled by Dask."""
    c = breakable_client
    event = distributed.Event(prefix(), client=c)
    kp = prefix()
    ex = corral.dask.DaskExecutor(c, key_prefix=kp)
    out = corral.threads.fan_out(
        remote.wait_for_event, [(event.name, i) for i in range(8)], workers=4, executor=ex
    )
    with pytest.raises(corral.dask.DaskTaskCancelled), out:
        wait_until(lambda: len(known(c, kp)) == 4, "4 tasks on the cluster")
        c.restart(wait_for_workers=False)  # the cluster is the test's own: no need
        list(out)
    assert not unfinished(c, kp)


# -- bad input ------------------------------------------------------------------------------


def test_bad_dask_arguments(client: Any) -> None:
    with pytest.raises(TypeError, match=r"DaskExecutor\.client must be a distributed\.Client"):
        corral.threads.fan_out(abs, [1], executor=corral.dask.DaskExecutor(object()))
    with pytest.raises(ValueError, match=r"DaskExecutor\.retries"):
        corral.stage(abs, executor=corral.dask.DaskExecutor(client, retries=-1))
    with pytest.raises(ValueError, match="not both"):
        corral.stage(abs, executor=client, run_in="thread")

    async def coro(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="coroutine function"):
        corral.stage(coro, executor=client)


async def test_threads_flavour_refuses_an_asynchronous_client(cluster: Any) -> None:
    async with distributed.Client(cluster.scheduler_address, asynchronous=True) as ac:
        with pytest.raises(TypeError, match="asynchronous"):
            corral.threads.fan_out(abs, [1], executor=ac).collect()


def test_default_workers_follow_the_cluster(client: Any) -> None:
    from corral._patterns._dask import (
        IN_FLIGHT_PER_THREAD,
        MAX_DEFAULT_WORKERS,
        MIN_DEFAULT_WORKERS,
    )

    threads = sum(client.nthreads().values())
    expect = min(max(IN_FLIGHT_PER_THREAD * threads, MIN_DEFAULT_WORKERS), MAX_DEFAULT_WORKERS)
    out = corral.threads.fan_out(remote.square, range(100), executor=client)
    assert sorted(out.collect()) == [x * x for x in range(100)]
    assert out.statistics().stages[0].workers == expect
    # A short input still gets no idle workers.
    out = corral.threads.fan_out(remote.square, range(3), executor=client)
    assert sorted(out.collect()) == [0, 1, 4]
    assert out.statistics().stages[0].workers == 3


@pytest.mark.parametrize("ordered", [False, True])
def test_never_more_than_workers_dask_futures(
    client: Any, ordered: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's connection to Dask counts its outstanding futures: never above ``workers``."""
    from corral._patterns import _dask

    made: list[Any] = []

    class Spy(_dask.StageOnDask):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(_dask, "StageOnDask", Spy)
    got = corral.threads.fan_out(
        remote.square, range(300), workers=7, executor=client, ordered=ordered
    ).collect()
    assert sorted(got) == [x * x for x in range(300)]
    (conn,) = made
    assert conn.submitted == 300
    assert 1 <= conn.high_water <= 7
    assert 1 <= conn.batches <= 300
