"""Leases as cancellations, fencing tokens and epochs (issue 18), in one test process.

Two objects on one name stand for two processes (each renews only its own leases); a
holder whose renewals cannot reach Redis is a partitioned or stalled process. The fleet
versions with real processes and signals are in test_faults.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from typing import Any

import pytest

import corral
import corral.redis
import corral.threads.redis
from corral.redis import LeaseLost

from .conftest import RedisServer, wait_for


def _partition(sem: Any) -> threading.Event:
    """From now on ``sem``'s renewals do not reach Redis (as if partitioned): each blocks
    until the returned event is set, then fails as a connection error would."""
    import redis

    gate = threading.Event()

    def touch(*, keys: Any, args: Any) -> Any:
        gate.wait(30)
        raise redis.ConnectionError("partitioned (test)")

    sem._s["SEM_TOUCH"] = touch
    return gate


# --- 1. lease loss is a cancellation ----------------------------------------------------------


def test_partitioned_holder_ctx_cancelled_before_successor_is_granted(client: Any) -> None:
    lease = 0.6
    a = corral.threads.redis.Semaphore(client, "p", 1, lease=lease)
    b = corral.threads.redis.Semaphore(client, "p", 1, lease=lease)
    lost: list[BaseException] = []
    a_on = corral.threads.redis.Semaphore(client, "p", 1, lease=lease, on_lost=lost.append)
    permit = a_on.acquire()
    gate = _partition(a_on)
    try:
        with b.acquire(timeout=10) as successor:
            # The successor is granted only after the server let the lease expire; the
            # holder's ctx was cancelled (on its local clock) before that.
            assert permit.ctx.cancelled
            assert isinstance(permit.ctx.cause, LeaseLost)
            assert successor.fence > permit.fence
    finally:
        gate.set()
    assert a_on.statistics().lost == 1
    assert [type(e) for e in lost] == [LeaseLost]
    with pytest.raises(LeaseLost):
        permit.release()
    del a


def test_renewal_answered_not_yours_cancels_at_once(client: Any) -> None:
    sem = corral.threads.redis.Semaphore(client, "ny", 2, lease=0.9)
    permit = sem.acquire()
    client.delete("{ny}:h")  # the server forgot this holder (as after a failover)
    assert permit.ctx.wait_blocking(5)  # cancelled by the next renewal, not by the clock
    assert isinstance(permit.ctx.cause, LeaseLost)
    assert sem.statistics().lost == 1
    with pytest.raises(LeaseLost):
        permit.release()


def test_released_permit_ctx_is_done_without_a_loss(client: Any) -> None:
    sem = corral.threads.redis.Semaphore(client, "rel", 2, lease=2)
    with sem.acquire() as permit:
        assert not permit.ctx.cancelled
        child = corral.with_cancel(permit.ctx)
    assert permit.ctx.cancelled
    assert child.cancelled
    assert not isinstance(permit.ctx.cause, LeaseLost)
    assert sem.statistics().lost == 0


def test_threads_leader_lease_loss_cancels_current_context(client: Any) -> None:
    sf = corral.threads.redis.SingleFlight(client, namespace="ll", lease=0.6)
    seen: list[Any] = []

    def work() -> str:
        ctx = corral.threads.redis.SingleFlight.current_context()
        seen.append(corral.threads.redis.SingleFlight.current_fence())
        client.delete("{ll}:sf:k:lease")  # lost: expired while stalled, or taken over
        assert ctx.wait_blocking(5)
        seen.append(ctx.cause)
        return "late"

    with pytest.raises(LeaseLost):
        sf.do("k", work)
    assert isinstance(seen[0], int)
    assert isinstance(seen[1], LeaseLost)
    assert sf.statistics().lost == 1


async def test_async_holder_lease_loss_cancels_work_under_permit_ctx(redis_url: str) -> None:
    import redis.asyncio as ar

    async with ar.Redis.from_url(redis_url) as c:
        sem = corral.redis.Semaphore(c, "ap", 1, lease=0.6)
        permit = await sem.acquire()
        await c.delete("{ap}:h")  # the server forgot this holder
        with pytest.raises(corral.Cancelled) as info:
            async with permit.ctx.cancel_scope():
                await asyncio.sleep(10)  # cancelled by the next renewal
        assert isinstance(info.value.cause, LeaseLost)
        with pytest.raises(LeaseLost):
            await permit.release()
        assert sem.statistics().lost == 1


async def test_async_leader_lease_loss_cancels_the_call(redis_url: str) -> None:
    import redis.asyncio as ar

    async with ar.Redis.from_url(redis_url) as c:
        sf = corral.redis.SingleFlight(c, namespace="al", lease=0.6)

        async def work() -> str:
            await c.delete("{al}:sf:k:lease")
            await asyncio.sleep(10)  # cancelled by the lost lease, not waited out
            return "late"

        t0 = time.monotonic()
        with pytest.raises(LeaseLost):
            await sf.do("k", work)
        assert time.monotonic() - t0 < 5
        assert sf.statistics().lost == 1


# --- 2. fencing tokens ------------------------------------------------------------------------


def test_fences_strictly_increase_across_restart_and_flush(own_server: RedisServer) -> None:
    import redis

    c = redis.Redis.from_url(own_server.url)
    try:
        sem = corral.threads.redis.Semaphore(c, "f", 3, lease=0.3)
        sf = corral.threads.redis.SingleFlight(c, namespace="f", lease=0.3)
        fences = []
        for _ in range(3):
            with sem.acquire(2) as p:
                fences.append(p.fence)
            fences.append(sf.do("k", corral.threads.redis.SingleFlight.current_fence))
        own_server.restart()  # every key lost, counters included
        with sem.acquire() as p:
            fences.append(p.fence)
        fences.append(sf.do("k", corral.threads.redis.SingleFlight.current_fence))
        c.flushall()
        with sem.acquire() as p:
            fences.append(p.fence)
        # Semaphore and SingleFlight fences are two sequences (two names).
        sem_f, sf_f = fences[0:6:2] + fences[6:7] + fences[8:9], fences[1:6:2] + fences[7:8]
        assert sem_f == sorted(set(sem_f)), fences
        assert sf_f == sorted(set(sf_f)), fences
    finally:
        c.close()


# --- 3. epochs: nothing granted until old leases expired -----------------------------------


def test_restart_empty_grants_nothing_until_old_leases_expired(own_server: RedisServer) -> None:
    import redis

    c1, c2 = redis.Redis.from_url(own_server.url), redis.Redis.from_url(own_server.url)
    try:
        lease = 0.6
        a = corral.threads.redis.Semaphore(c1, "e", 2, lease=lease)
        b = corral.threads.redis.Semaphore(c2, "e", 2, lease=lease)
        held = a.acquire(2)
        own_server.restart()  # every key lost: Redis forgot a's permits
        with b.acquire(2, timeout=10) as p:
            # a's lease may still have been running on a's side: b waited until a knew.
            assert a.statistics().lost == 1
            assert held.ctx.cancelled
            assert p.fence > held.fence
        with pytest.raises(LeaseLost):
            held.release()
    finally:
        c1.close()
        c2.close()


def test_script_flush_recovers(client: Any) -> None:
    sem = corral.threads.redis.Semaphore(client, "sf", 2, lease=0.5)
    sf = corral.threads.redis.SingleFlight(client, namespace="sf", lease=0.5)
    with sem.acquire():
        assert sf.do("k", lambda: 1) == 1
    client.script_flush()
    with sem.acquire() as p:
        client.script_flush()  # the renewals reload too
        time.sleep(0.4)
        assert not p.ctx.cancelled
    assert sf.do("k", lambda: 2) == 2
    assert sem.statistics().lost == 0


# --- 6. bad input -----------------------------------------------------------------------------


def test_wrong_client_flavour_is_a_type_error(redis_url: str, client: Any) -> None:
    import redis.asyncio as ar

    for make in (
        lambda c: corral.redis.SingleFlight(c),
        lambda c: corral.redis.Semaphore(c, "x", 1),
    ):
        with pytest.raises(TypeError, match=r"client.*blocking"):
            make(client)
    aclient = ar.Redis.from_url(redis_url)
    for make in (
        lambda c: corral.threads.redis.SingleFlight(c),
        lambda c: corral.threads.redis.Semaphore(c, "x", 1),
    ):
        with pytest.raises(TypeError, match=r"client.*asyncio"):
            make(aclient)


@pytest.mark.parametrize("lease", [math.inf, -1.0, 0.0, math.nan])
def test_non_finite_or_non_positive_lease(client: Any, lease: float) -> None:
    with pytest.raises(ValueError, match="lease"):
        corral.threads.redis.Semaphore(client, "x", 1, lease=lease)
    with pytest.raises(ValueError, match="lease"):
        corral.threads.redis.SingleFlight(client, lease=lease)


def test_serializer_round_trips_a_sample_at_construction(client: Any) -> None:
    with pytest.raises(TypeError, match="serializer"):
        corral.threads.redis.SingleFlight(client, serializer=json)  # type: ignore[arg-type]


def test_follower_that_cannot_decode_gets_remote_error_naming_the_serializer(
    client: Any,
) -> None:
    class Picky:
        @staticmethod
        def dumps(obj: Any) -> bytes:
            return json.dumps(obj).encode()

        @staticmethod
        def loads(data: bytes) -> Any:
            return json.loads(data)

    sf = corral.threads.redis.SingleFlight(client, namespace="pk", serializer=Picky())
    client.set("{pk}:sf:k:lease", "x", px=60000)
    out: list[BaseException] = []

    def call() -> None:
        try:
            sf.do("k", lambda: None)
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=call)
    t.start()
    wait_for(lambda: len(client.pubsub_channels("{pk}:sf:c:*")) == 1)
    client.publish("{pk}:sf:c:x", b"v\x80not json")
    t.join(10)
    assert [type(e) for e in out] == [corral.redis.RemoteError]
    assert "Picky" in str(out[0])


def test_cross_slot_and_too_old_server_replies_are_typed_errors() -> None:
    from redis.exceptions import ResponseError

    from corral._redis.common import server_error

    for reply in (
        "CROSSSLOT Keys in request don't hash to the same slot",
        "ERR Error running script: @user_script:1: Unknown Redis command called from script",
        "ERR unknown command 'EVALSHA_RO'",
    ):
        err = server_error("redis.Semaphore.acquire", ResponseError(reply))
        assert isinstance(err, corral.redis.RedisUnsupported)
        assert "redis.Semaphore.acquire" in str(err)
    other = ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
    assert server_error("x", other) is other


# --- 4. share_for: a finished call's outcome stays joinable -----------------------------------


class Boom(Exception):
    pass


def test_share_for_keeps_value_and_error_then_expires(client: Any) -> None:
    a = corral.threads.redis.SingleFlight(client, namespace="sh", share_for=30)
    b = corral.threads.redis.SingleFlight(client, namespace="sh", share_for=30)
    calls: list[str] = []

    def load(tag: str) -> str:
        calls.append(tag)
        return f"from {tag}"

    def fail(tag: str) -> str:
        calls.append(tag)
        raise Boom(tag)

    assert a.do("k", load, "a") == "from a"
    assert b.do("k", load, "b") == "from a"  # a late arrival: a's outcome, no second call
    with pytest.raises(Boom, match="a"):
        a.do("e", fail, "a")
    with pytest.raises(Boom, match="a"):
        b.do("e", fail, "b")  # errors are kept the same way
    assert calls == ["a", "a"]
    assert b.statistics().shared_late == 2
    client.pexpire("{sh}:sf:k:done", 1)  # as when share_for has passed
    wait_for(lambda: not client.exists("{sh}:sf:k:done"))
    assert b.do("k", load, "b") == "from b"


def test_share_for_outcome_over_the_cap_is_not_kept(client: Any) -> None:
    a = corral.threads.redis.SingleFlight(client, namespace="cap", share_for=30, share_max_bytes=64)
    calls: list[int] = []

    def big() -> bytes:
        calls.append(1)
        return b"x" * 1000

    assert a.do("k", big) == b"x" * 1000
    assert a.do("k", big) == b"x" * 1000
    assert calls == [1, 1]  # too big to keep: the documented fallback is to run again
    assert a.statistics().not_kept == 2


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"share_for": -1}, ValueError),
        ({"share_for": math.inf}, ValueError),
        ({"share_for": "1"}, TypeError),
        ({"share_max_bytes": -1}, ValueError),
        ({"on_lost": 3}, TypeError),
    ],
)
def test_share_for_and_on_lost_bad_input(client: Any, kwargs: dict[str, Any], exc: type) -> None:
    with pytest.raises(exc, match=next(iter(kwargs))):
        corral.threads.redis.SingleFlight(client, **kwargs)
