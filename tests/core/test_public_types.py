"""What users hold has a name they can import: every handle a call returns is an instance
of a name in ``corral.__all__`` / ``corral.threads.__all__`` (so it can be annotated)."""

from __future__ import annotations

import pytest

import corral
import corral.threads


async def test_aio_calls_return_importable_types() -> None:
    def ident(x: int) -> int:
        return x

    assert isinstance(corral.fan_out(ident, [1]), corral.Flow)
    assert isinstance(corral.pipeline([1], ident), corral.Flow)
    for relay in (
        corral.or_done([1], ctx=corral.background()),
        corral.tee([1], policy="buffer"),
        corral.fan_in([1]),
    ):
        assert isinstance(relay, corral.Relay)
        async with relay as out:
            for ch in out if isinstance(out, tuple) else (out,):
                assert isinstance(ch, corral.RelayChannel)
                assert [x async for x in ch] == [1]
    sem = corral.Semaphore(2)
    acq: corral.SemaphoreAcquire = sem.acquire(1)
    assert isinstance(acq, corral.SemaphoreAcquire)
    async with acq:
        assert sem.statistics().held == 1
    rl_acq: corral.RateLimitAcquire = corral.RateLimit(1000, burst=5).acquire(1)
    assert isinstance(rl_acq, corral.RateLimitAcquire)
    await rl_acq
    limits = corral.Limits(corral.RateLimit(1000, burst=5))
    lim_acq: corral.LimitsAcquire = limits.acquire()
    assert isinstance(lim_acq, corral.LimitsAcquire)
    grant = await lim_acq
    assert isinstance(grant, corral.Grant)
    grant.release()


def test_thread_calls_return_importable_types() -> None:
    T = corral.threads
    assert isinstance(T.fan_out(abs, [1]), T.Flow)
    assert isinstance(T.pipeline([1], abs), T.Flow)
    for relay in (
        T.or_done([1], ctx=corral.background()),
        T.tee([1], policy="buffer"),
        T.fan_in([1]),
    ):
        assert isinstance(relay, T.Relay)
        with relay as out:
            for ch in out if isinstance(out, tuple) else (out,):
                assert isinstance(ch, T.RelayChannel)
                assert list(ch) == [1]
    sem = T.Semaphore(2)
    held: T.SemaphoreAcquire = sem.acquire(1)
    assert isinstance(held, T.SemaphoreAcquire)
    with held:
        assert sem.statistics().held == 1
    taken: T.RateLimitAcquire = T.RateLimit(1000, burst=5).acquire(1)
    assert isinstance(taken, T.RateLimitAcquire)
    grant: T.LimitsAcquire = T.Limits(T.RateLimit(1000, burst=5)).acquire()
    assert isinstance(grant, T.LimitsAcquire)
    grant.release()


# -- the smaller surprises of issue 20 ------------------------------------------------------


def test_limits_as_threads_is_the_one_live_view_as_every_as_star() -> None:
    rl = corral.RateLimit(1000, burst=5)
    lim = corral.Limits(rl)
    view = lim.as_threads()
    assert isinstance(view, corral.threads.Limits)
    assert lim.as_threads() is view  # was a new object per call
    assert view.as_async() is lim
    tlim = corral.threads.Limits(corral.threads.RateLimit(10))
    assert tlim.as_async() is tlim.as_async()
    assert tlim.as_async().as_threads() is tlim


def test_channel_views_are_typed_as_the_other_flavours_channel() -> None:
    # Was `Any`: an editor could not help with `ch.as_threads().send(...)`.
    assert corral.Channel.as_threads.__annotations__["return"] == "ThreadChannel[T]"
    assert corral.threads.Channel.as_async.__annotations__["return"] == "AsyncChannel[T]"
    ch: corral.Channel[int] = corral.Channel(1)
    assert isinstance(ch.as_threads(), corral.threads.Channel)
    assert isinstance(ch.as_threads().as_async(), corral.Channel)


def test_dask_task_cancelled_is_a_corral_error_and_still_a_runtime_error() -> None:
    import corral.dask

    assert issubclass(corral.dask.DaskTaskCancelled, corral.CorralError)
    assert issubclass(corral.dask.DaskTaskCancelled, RuntimeError)


def test_a_context_cannot_be_built_by_hand() -> None:
    bg = corral.background()
    with pytest.raises(TypeError, match=r"Context: make a Context with corral.background\(\)"):
        corral.Context(None, None)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"CancelContext: make a Context with"):
        corral.CancelContext(bg, None)
    with corral.with_cancel(bg) as ctx:  # the ways that are meant
        assert type(ctx) is corral.CancelContext
        assert corral.with_value(ctx, "k", 1).value("k") == 1
