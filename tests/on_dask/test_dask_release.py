"""A Dask run leaves nothing of its own on the scheduler, and blames a dead worker on the
item that was running there (issue 18, item 4).

The scheduler's own state is the judge: ``scheduler.tasks`` must hold no key of the run once
it has failed, been cancelled or been abandoned, and once the caller has dropped the error and
collected garbage, even while the run object itself is still referenced. The client releases
keys in batches nobody announces, so the check polls (the poll's sleep is an interval).
"""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

import pytest

import corral
import corral.threads

from . import remote
from .test_dask_patterns import known, prefix, wait_until

try:
    import distributed

    import corral.dask
except ImportError:  # conftest skips these tests, or fails them under CI (never a silent skip)
    distributed = None


# Known gap (issue 18, open): on the free-threaded 3.13t build an erred task of a failed run
# stays on the scheduler after the error is dropped (its future is still referenced there;
# the frame clearing that frees it on GIL builds is not enough). Not strict: should it pass
# there one day, the run reports XPASS instead of failing.
PINNED_ON_FREE_THREADED = pytest.mark.xfail(
    not getattr(sys, "_is_gil_enabled", lambda: True)(),
    reason="free-threaded 3.13t: a failed run's erred tasks stay pinned (issue 18, open)",
    strict=False,
)


def nothing_left(client: Any, key_prefix: str) -> None:
    gc.collect()
    left: list[str] = []

    def gone() -> bool:
        left[:] = known(client, key_prefix)  # any state: erred, memory, queued...
        return not left

    try:
        wait_until(gone, "the scheduler to forget the run's tasks")
    except AssertionError:
        raise AssertionError(f"tasks of the run still on the scheduler: {left}") from None


# -- releasing every future -----------------------------------------------------------------


@PINNED_ON_FREE_THREADED
@pytest.mark.parametrize("flavour", ["threads", "aio"])
async def test_failed_run_leaves_no_task_on_the_scheduler(client: Any, flavour: str) -> None:
    kp = prefix()
    ex = corral.dask.DaskExecutor(client, key_prefix=kp)
    items = range(1, 30)
    failed = False
    if flavour == "threads":
        tout = corral.threads.fan_out(remote.fail_on_multiples_of_3, items, workers=4, executor=ex)
        try:
            await asyncio.to_thread(tout.collect)
        except ValueError:
            failed = True  # the error is dropped here; the run object stays referenced
        run: Any = tout
    else:
        aout = corral.fan_out(remote.fail_on_multiples_of_3, items, workers=4, executor=ex)
        try:
            await aout.collect()
        except ValueError:
            failed = True
        run = aout
    assert failed
    await asyncio.to_thread(nothing_left, client, kp)
    assert run is not None  # still referenced: the run object must not pin the futures


@PINNED_ON_FREE_THREADED
def test_collected_errors_leave_no_task_on_the_scheduler(client: Any) -> None:
    """errors="collect": the caller keeps every Outcome (and its error), not the tasks."""
    kp = prefix()
    ex = corral.dask.DaskExecutor(client, key_prefix=kp)
    got = corral.threads.fan_out(
        remote.fail_on_multiples_of_3, range(12), workers=4, executor=ex, errors="collect"
    ).collect()
    assert sum(not o.ok for o in got) == 4
    nothing_left(client, kp)
    assert len(got) == 12


def test_cancelled_run_leaves_no_task_on_the_scheduler(client: Any) -> None:
    event = distributed.Event(prefix(), client=client)
    kp = prefix()
    ctx = corral.threads.with_cancel(corral.threads.background())
    ex = corral.dask.DaskExecutor(client, key_prefix=kp)
    # Items 0-3 return at once (they are in memory when the run is cancelled); the rest wait.
    items = [(event.name if i > 3 else "", i) for i in range(20)]
    out = corral.threads.fan_out(remote.maybe_wait, items, workers=6, executor=ex, ctx=ctx)
    try:
        try:
            with out:
                it = iter(out)
                next(it)
                ctx.cancel()
                list(it)
        except corral.Cancelled:
            pass
        event.set()  # the two calls running on the workers finish (their results dropped)
        nothing_left(client, kp)
        assert out is not None
    finally:
        event.set()


@pytest.mark.parametrize("flavour", ["threads", "aio"])
async def test_abandoned_run_leaves_no_task_on_the_scheduler(client: Any, flavour: str) -> None:
    event = distributed.Event(prefix(), client=client)
    kp = prefix()
    items = [(event.name if i > 3 else "", i) for i in range(100)]
    ex = corral.dask.DaskExecutor(client, key_prefix=kp)
    try:
        if flavour == "threads":

            def leave_early() -> Any:
                with corral.threads.fan_out(remote.maybe_wait, items, workers=6, executor=ex) as o:
                    next(iter(o))
                return o

            run: Any = await asyncio.to_thread(leave_early)
        else:
            async with corral.fan_out(remote.maybe_wait, items, workers=6, executor=ex) as run:
                await anext(aiter(run))
        await event.set()  # an async-capable Event on a sync client: set() is a plain call
    except TypeError:
        event.set()
    try:
        await asyncio.to_thread(nothing_left, client, kp)
        assert run is not None
    finally:
        event.set()


# -- blaming the right item for a dead worker -------------------------------------------------


def _no_second_chance(client: Any) -> None:
    client.run_on_scheduler(remote.set_allowed_failures, n=0)


@PINNED_ON_FREE_THREADED
def test_killed_worker_blames_the_running_item_not_its_neighbour(breakable_client: Any) -> None:
    """Item 0 kills its worker while item k waits behind it there: Dask fails both with
    KilledWorker (allowed-failures 0); corral retries both alone and only item 0 fails."""
    c = breakable_client
    _no_second_chance(c)
    kp = prefix()
    ex = corral.dask.DaskExecutor(c, key_prefix=kp)
    got = corral.threads.fan_out(
        remote.kill_own_worker_behind_another,
        range(12),
        workers=4,
        executor=ex,
        errors="collect",
        ordered=True,
    ).collect()
    failed = {o.item: o.error for o in got if not o.ok}
    assert list(failed) == [0], failed
    assert isinstance(failed[0], distributed.KilledWorker)
    assert [o.value for o in got if o.ok] == list(range(1, 12))
    nothing_left(c, kp)


def test_killed_worker_error_names_the_poison_item(breakable_client: Any) -> None:
    c = breakable_client
    _no_second_chance(c)
    with pytest.raises(distributed.KilledWorker) as info:
        corral.threads.fan_out(
            remote.kill_own_worker_behind_another, range(12), workers=4, executor=c
        ).collect()
    assert "item 0 " in "\n".join(getattr(info.value, "__notes__", [])) + " "
