"""What users hold has a name they can import: every handle a call returns is an instance
of a name in ``corral.__all__`` / ``corral.threads.__all__`` (so it can be annotated)."""

from __future__ import annotations

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
