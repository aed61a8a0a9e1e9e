"""What every flavour of Group promises: first error wins, nothing is swallowed, nothing
queued starts after a failure, misuse gets a typed error."""

from __future__ import annotations

import contextvars
import gc
import sys
import time
from typing import Any

import pytest

import corral
from corral import Cancelled, GroupError

from .conftest import Counter, Flavour, until

pytestmark = pytest.mark.timeout(30)


class Boom(Exception):
    pass


async def test_first_error_wins_and_siblings_see_the_cancellation(
    flavour: Flavour, gate: corral.CancelContext
) -> None:
    first, second = Boom("first"), Boom("second")
    g = flavour.group()
    with pytest.raises(Boom) as info:
        async with g:
            # A sibling blocked until the group's Context is done, then cooperative.
            sibling = await g.go(flavour.worker(wait=g.ctx, check=g.ctx))
            await g.go(flavour.worker(error=first))
    assert info.value is first
    assert g.errors == (first,)
    assert g.ctx.cause is first
    # The sibling was cancelled (a task) or saw g.ctx done (a thread): not an error.
    with pytest.raises((Cancelled, corral.Cancelled, BaseException)):
        await flavour.result(sibling)
    del second


async def test_other_errors_are_kept_in_order(flavour: Flavour, gate: corral.CancelContext) -> None:
    errs = [Boom(f"e{i}") for i in range(3)]
    g = flavour.group()
    started = Counter()
    with pytest.raises(Boom) as info:
        async with g:
            for e in errs:
                # All wait for the gate, then fail together: ignoring g.ctx, as real code
                # that is not cooperative would.
                await g.go(flavour.worker(started=started.enter, wait=gate, error=e))
            await until(lambda: started.total == 3)
            gate.cancel()
    assert info.value in errs
    assert set(map(id, g.errors)) == set(map(id, errs))
    assert info.value is g.errors[0]
    assert any("more worker error(s)" in n for n in getattr(info.value, "__notes__", []))


async def test_all_mode_raises_an_exception_group_without_cancellations(
    flavour: Flavour, gate: corral.CancelContext
) -> None:
    a, b = Boom("a"), Boom("b")
    started = Counter()
    g = flavour.group(report="all")
    with pytest.raises(ExceptionGroup) as info:
        async with g:
            await g.go(flavour.worker(started=started.enter, wait=gate, error=a))
            await g.go(flavour.worker(started=started.enter, wait=gate, error=b))
            # A cooperative sibling: its cancellation is not an error.
            await g.go(flavour.worker(started=started.enter, wait=g.ctx, check=g.ctx))
            await until(lambda: started.total == 3)
            gate.cancel()
    assert sorted(map(str, info.value.exceptions)) == ["a", "b"]


async def test_one_error_in_all_mode_is_still_a_group(flavour: Flavour) -> None:
    g = flavour.group(report="all")
    with pytest.raises(ExceptionGroup) as info:
        async with g:
            await g.go(flavour.worker(error=Boom("only")))
    assert [str(e) for e in info.value.exceptions] == ["only"]


async def test_queued_work_is_not_started_after_a_failure(flavour: Flavour) -> None:
    """golang/go#54045: errgroup's Go blocks on the limit and then still runs f."""
    ran = Counter()
    boom = Boom("boom")
    g = flavour.group(limit=1)
    with pytest.raises(Boom):
        async with g:
            await g.go(flavour.worker(error=boom))
            # Waits for the slot; the failure aborts the wait: nothing starts.
            with pytest.raises(Cancelled) as info:
                await g.go(flavour.worker(started=ran.enter))
            assert info.value.cause is boom
            # And once failed, go / try_go refuse at once.
            with pytest.raises(Cancelled):
                await g.go(flavour.worker(started=ran.enter))
            with pytest.raises(Cancelled):
                g.try_go(flavour.worker(started=ran.enter))
    assert ran.total == 0


async def test_error_from_wait_is_sticky(flavour: Flavour) -> None:
    boom = Boom()
    g = flavour.group()
    await g.go(flavour.worker(error=boom))
    for _ in range(3):
        with pytest.raises(Boom) as info:
            await g.wait()
        assert info.value is boom


async def test_ctx_done_after_exit_with_cause(flavour: Flavour) -> None:
    async with flavour.group() as g:
        await g.go(flavour.worker())
        assert not g.ctx.cancelled
    assert g.ctx.cancelled
    assert isinstance(g.ctx.cause, Cancelled)


async def test_parent_context_cancelled_cuts_work_short(
    flavour: Flavour, gate: corral.CancelContext
) -> None:
    parent = corral.with_cancel(corral.background())
    started = Counter()
    g = flavour.group(ctx=parent)
    with pytest.raises(Cancelled) as info:
        async with g:
            await g.go(flavour.worker(started=started.enter, wait=g.ctx, check=g.ctx))
            await until(lambda: started.total == 1)
            parent.cancel(Boom("shutdown"))
    assert isinstance(info.value.cause, Boom)
    assert g.errors == ()


async def test_parent_cancelled_after_work_done_is_not_an_error(flavour: Flavour) -> None:
    parent = corral.with_cancel(corral.background())
    g = flavour.group(ctx=parent)
    async with g:
        h = await g.go(flavour.worker(result=7))
        assert await flavour.result(h) == 7
        await until(lambda: g.statistics().running == 0)
        parent.cancel()
    assert g.ctx.cancelled


async def test_body_error_fails_the_group(flavour: Flavour) -> None:
    g = flavour.group()
    boom = Boom("body")
    with pytest.raises(Boom) as info:
        async with g:
            await g.go(flavour.worker(wait=g.ctx, check=g.ctx))
            raise boom
    assert info.value is boom
    assert g.errors == (boom,)
    assert g.ctx.cause is boom


async def test_a_worker_error_keeps_its_own_context(flavour: Flavour) -> None:
    def fail() -> None:
        try:
            raise KeyError("inner")
        except KeyError:
            raise Boom("outer") from None

    try:
        fail()
    except Boom as e:
        err = e
    g = flavour.group()
    with pytest.raises(Boom) as info:
        async with g:
            await g.go(flavour.worker(error=err))
            await until(lambda: bool(g.errors))  # asyncio: the group cancels the body here
            raise RuntimeError("the body, after the worker")  # must not become err's context
    assert isinstance(info.value.__context__, KeyError)
    assert info.value.__suppress_context__


class Fatal(BaseException):
    pass


async def test_base_exception_wins_over_errors(
    flavour: Flavour, gate: corral.CancelContext
) -> None:
    started = Counter()
    g = flavour.group(report="all")
    with pytest.raises(Fatal):
        async with g:
            await g.go(flavour.worker(started=started.enter, wait=gate, error=Boom()))
            await g.go(flavour.worker(started=started.enter, wait=gate, error=Fatal()))
            await until(lambda: started.total == 2)
            gate.cancel()
    assert {type(e) for e in g.errors} == {Boom, Fatal}


# Threads only: asyncio re-raises SystemExit out of the event loop (see test_group_aio).
@pytest.mark.parametrize("flavour", ["threads"], indirect=True)
async def test_system_exit_in_a_worker_propagates(flavour: Flavour) -> None:
    g = flavour.group()
    with pytest.raises(SystemExit):
        async with g:
            await g.go(flavour.worker(wait=g.ctx, check=g.ctx))
            await g.go(flavour.worker(error=SystemExit(3)))


# --- misuse and bad arguments ----------------------------------------------------------------


async def test_go_after_finish_is_a_group_error(flavour: Flavour) -> None:
    async with flavour.group() as g:
        pass
    with pytest.raises(GroupError, match="finished"):
        await g.go(flavour.worker())
    with pytest.raises(GroupError, match="finished"):
        g.try_go(flavour.worker())
    with pytest.raises(GroupError, match="finished"):
        g.set_limit(3)
    with pytest.raises(GroupError):
        async with g:
            pass


async def test_reentering_is_a_group_error(flavour: Flavour) -> None:
    g = flavour.group()
    async with g:
        with pytest.raises(GroupError, match="entered only once"):
            async with g:
                pass


async def test_set_limit_while_workers_run_is_a_group_error(
    flavour: Flavour, gate: corral.CancelContext
) -> None:
    async with flavour.group() as g:
        await g.go(flavour.worker(wait=gate))
        with pytest.raises(GroupError, match="while 1 worker"):
            g.set_limit(2)
        gate.cancel()


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"limit": -1}, ValueError, "limit"),
        ({"limit": 1.5}, TypeError, "limit"),
        ({"limit": True}, TypeError, "limit"),
        ({"report": "some"}, ValueError, "report"),
        ({"errors": "all"}, TypeError, "errors"),  # 0.1's name: errors is the per-item policy
        ({"ctx": object()}, TypeError, "ctx"),
    ],
)
def test_bad_arguments(flavour: Flavour, kwargs: dict[str, Any], exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        flavour.group(**kwargs)


async def test_bad_set_limit_and_fn(flavour: Flavour) -> None:
    async with flavour.group() as g:
        with pytest.raises(ValueError, match="limit"):
            g.set_limit(-1)
        with pytest.raises(TypeError, match="fn must be callable"):
            await g.go(42)

        async def coro() -> None:
            pass

        c = coro()
        with pytest.raises(TypeError, match="not a coroutine object"):
            await g.go(c)  # closed for us: no "never awaited" warning
        if flavour.name == "threads":
            with pytest.raises(TypeError, match="async function"):
                await g.go(coro)


async def test_limit_zero_go_waits_until_the_group_fails(flavour: Flavour) -> None:
    g = flavour.group(limit=0)
    boom = Boom()
    # A worker cannot start; g.ctx can be cancelled from outside: go() gives up.
    g.ctx.cancel(boom)
    with pytest.raises(Cancelled):
        await g.go(flavour.worker())
    await g.wait()


# --- never swallowed --------------------------------------------------------------------------


async def settled(g: Any) -> None:
    await until(lambda: g.statistics().running == 0)


async def test_error_nobody_waited_for_is_reported(flavour: Flavour) -> None:
    reports: list[Any] = []
    saved = sys.unraisablehook
    sys.unraisablehook = reports.append
    try:
        boom = Boom("lost?")
        g = flavour.group()
        h = await g.go(flavour.worker(error=boom))
        with pytest.raises(Boom):
            await flavour.result(h)
        await settled(g)
        del g, h
        gc.collect()
    finally:
        sys.unraisablehook = saved
    mine = [r for r in reports if r.exc_value.__cause__ is boom]
    assert len(mine) == 1
    assert isinstance(mine[0].exc_value, GroupError)
    assert "garbage-collected" in str(mine[0].exc_value)


async def test_statistics_and_repr(flavour: Flavour, gate: corral.CancelContext) -> None:
    g = flavour.group(limit=3)
    assert g.statistics() == corral.GroupStatistics(0, 0, 3, 0, False)
    async with g:
        await g.go(flavour.worker(wait=gate))
        try:
            s = g.statistics()
            assert (s.running, s.limit, s.finished) == (1, 3, False)
            assert "running=1" in repr(getattr(g, "g", g))
        finally:
            gate.cancel()
    assert g.statistics().finished


async def test_contextvars_reach_workers(flavour: Flavour) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")
    var.set("from the caller")
    seen: list[str] = []
    async with flavour.group() as g:
        await g.go(flavour.worker(started=lambda: seen.append(var.get())))
    assert seen == ["from the caller"]


async def test_worker_results(flavour: Flavour) -> None:
    async with flavour.group(limit=2) as g:
        hs = [await g.go(flavour.worker(result=i)) for i in range(5)]
    assert [await flavour.result(h) for h in hs] == list(range(5))


# Not "aio-threads": a thread worker of an asyncio group cannot await its wait().
@pytest.mark.parametrize("flavour", ["aio", "threads"], indirect=True)
async def test_wait_from_a_worker_is_a_group_error(flavour: Flavour) -> None:
    g = flavour.group()
    target = g.g if flavour.name == "threads" else g
    seen: list[BaseException] = []

    def sync_wait() -> None:
        try:
            target.wait()
        except GroupError as e:
            seen.append(e)

    async def async_wait() -> None:
        try:
            await target.wait()
        except GroupError as e:
            seen.append(e)

    async with g:
        if flavour.name == "threads":
            await g.go(sync_wait)
        else:
            await g.go(async_wait)
    assert len(seen) == 1
    assert "wait for itself" in str(seen[0])


async def test_expired_parent_deadline_refuses_work(flavour: Flavour) -> None:
    parent = corral.with_deadline(corral.background(), time.monotonic())
    g = flavour.group(ctx=parent)
    with pytest.raises(corral.DeadlineExceeded):
        await g.go(flavour.worker())
    with pytest.raises(corral.DeadlineExceeded):
        g.try_go(flavour.worker())
    await g.wait()  # nothing ran: nothing was cut short
