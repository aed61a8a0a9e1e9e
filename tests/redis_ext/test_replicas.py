"""``replicas=N``: a grant counts only once N replicas acknowledged it (issue 18, failover).

Redis replicates asynchronously: a grant the master acknowledged but had not yet sent to its
replica is lost when that replica is promoted, and the promoted replica grants the same
permits again. These tests make that happen deterministically with a real master and replica
(``replica_pair``): the replica is SIGSTOPped (it acknowledges nothing), the master is
SIGKILLed, the replica is resumed and promoted (``REPLICAOF NO ONE``), as a failover would.
Both flavours run each scenario from one coroutine (a thread-flavour call simply blocks).
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import corral
import corral.redis
import corral.threads.redis
from corral.redis import NotReplicated, RedisUnavailable

from .conftest import RedisServer, ReplicaPair, info, wait_for

FLAVOURS = ["asyncio", "threads"]


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args)`` of either flavour: awaited if it returns an awaitable."""
    r = fn(*args, **kwargs)
    return await r if inspect.isawaitable(r) else r


class Side:
    """One flavour's client and module on one server."""

    def __init__(self, flavour: str, server: RedisServer) -> None:
        import redis
        import redis.asyncio

        self.flavour = flavour
        self.mod: Any = corral.redis if flavour == "asyncio" else corral.threads.redis
        cls: Any = redis.asyncio.Redis if flavour == "asyncio" else redis.Redis
        self.client = cls(host="127.0.0.1", port=server.port, socket_timeout=10)

    async def close(self) -> None:
        await call(self.client.aclose if self.flavour == "asyncio" else self.client.close)


def _sync(server: RedisServer) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=10)


def _aged(pair: ReplicaPair, name: str) -> None:
    """Make ``name``'s epoch an hour old on the master and wait until the replica has it, so
    the first grant needs no grace (a name's first use waits one lease, see scripts.py)."""
    with _sync(pair.master) as m:
        t0 = (int(m.time()[0]) - 3600) * 1_000_000
        m.hset("{" + name + "}:e", mapping={"t0": t0, "f": t0})
    with _sync(pair.replica) as r:
        wait_for(lambda: r.exists("{" + name + "}:e") == 1)


def _wait_calls(server: RedisServer) -> int:
    """How many WAIT commands ``server`` has run."""
    return int(info(server.port, "commandstats").get("cmdstat_wait", {}).get("calls", 0))


def _cut_off(pair: ReplicaPair) -> None:
    """The replica stops hearing from the master: SIGSTOPped, and its link dropped by the
    master (as ``repl-timeout`` would after a minute). Stopping it alone is not enough: the
    master's writes would wait in the replica's socket buffer and be applied at SIGCONT."""
    assert pair.replica.proc is not None
    pair.replica.proc.send_signal(signal.SIGSTOP)
    with _sync(pair.master) as m:
        m.execute_command("CLIENT", "KILL", "TYPE", "replica")
        wait_for(lambda: info(pair.master.port, "replication").get("connected_slaves") == 0)


def _failover(pair: ReplicaPair) -> None:
    """The master dies; the replica is resumed and promoted."""
    assert pair.master.proc is not None
    assert pair.replica.proc is not None
    pair.master.proc.send_signal(signal.SIGKILL)
    pair.master.proc.wait(10)
    pair.replica.proc.send_signal(signal.SIGCONT)
    with _sync(pair.replica) as r:
        r.execute_command("REPLICAOF", "NO", "ONE")
        wait_for(lambda: info(pair.replica.port, "replication").get("role") == "master")


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


# --- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_replicas_arguments_checked(flavour: str, client: Any) -> None:
    import redis.asyncio

    mod: Any = corral.redis if flavour == "asyncio" else corral.threads.redis
    c: Any = redis.asyncio.Redis() if flavour == "asyncio" else client
    for make in (
        lambda **kw: mod.Semaphore(c, "a", 2, **kw),
        lambda **kw: mod.SingleFlight(c, **kw),
    ):
        with pytest.raises(TypeError, match="replicas must be an int"):
            make(replicas=1.0)
        with pytest.raises(TypeError, match="replicas must be an int"):
            make(replicas=True)
        with pytest.raises(ValueError, match="replicas must be >= 0"):
            make(replicas=-1)
        with pytest.raises(TypeError, match="replicas_timeout must be a number"):
            make(replicas=1, replicas_timeout="1")
        for bad in (0, -1.0, float("nan"), float("inf"), 6.0):  # over half the 10 s lease
            with pytest.raises(ValueError, match="replicas_timeout must be"):
                make(replicas=1, replicas_timeout=bad)
        make(replicas=0)
        make(replicas=2, replicas_timeout=0.05)


def test_replicas_refused_on_a_cluster_client() -> None:
    # WAIT must run on the connection to the slot's master that ran the grant; a cluster
    # client does not promise it. (The asyncio cluster client connects lazily, so no cluster
    # is needed to check the refusal; the rule is flavour-neutral, in _redis/replicas.py.)
    from redis.asyncio.cluster import RedisCluster

    c = RedisCluster(host="127.0.0.1", port=1)
    with pytest.raises(corral.redis.RedisUnsupported, match="replicas="):
        corral.redis.Semaphore(c, "a", 2, replicas=1)
    with pytest.raises(corral.redis.RedisUnsupported, match="replicas="):
        corral.redis.SingleFlight(c, replicas=1)
    corral.redis.Semaphore(c, "a", 2, replicas=0)


# --- 1. with the option, grants work and WAIT is paid ----------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_grant_counts_once_the_replica_has_it(flavour: str, replica_pair: ReplicaPair) -> None:
    pair = replica_pair
    _aged(pair, "r1")

    async def scenario() -> None:
        side = Side(flavour, pair.master)
        sem = side.mod.Semaphore(side.client, "r1", 2, lease=10, replicas=1)
        try:
            with _sync(pair.replica) as replica:
                # The first call meets NOSCRIPT (a fresh server), loads and runs again.
                await call((await call(sem.acquire, 1)).release)
                before = _wait_calls(pair.master)
                permit = await call(sem.acquire, 2)
                # WAIT answered: the replica has the holder the moment acquire returns.
                assert replica.zcard("{r1}:h") == 1
                assert _wait_calls(pair.master) == before + 1
                await call(permit.release)
                tried = await call(sem.try_acquire, 1)
                assert tried is not None
                assert replica.zcard("{r1}:h") == 1
                await call(tried.release)
                assert _wait_calls(pair.master) == before + 2
        finally:
            await side.close()

    _run(scenario)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_queued_grant_counts_once_the_replica_has_it(
    flavour: str, replica_pair: ReplicaPair
) -> None:
    # A waiter's grant is made by another process's script; its own confirming check (a
    # write: the lease renewal) is what its WAIT covers, later in the replication stream.
    pair = replica_pair
    _aged(pair, "rq")

    async def scenario() -> None:
        holder_side, waiter_side = Side(flavour, pair.master), Side(flavour, pair.master)
        holder = holder_side.mod.Semaphore(holder_side.client, "rq", 1, lease=10, replicas=1)
        waiter = waiter_side.mod.Semaphore(waiter_side.client, "rq", 1, lease=10, replicas=1)
        try:
            permit = await call(holder.acquire)
            got: list[Any] = []
            if flavour == "asyncio":
                task = asyncio.ensure_future(waiter.acquire(timeout=20))
                await _until(lambda: _queued(pair.master, "rq"))
                await call(permit.release)
                got.append(await task)
            else:
                t = threading.Thread(target=lambda: got.append(waiter.acquire(timeout=20)))
                t.start()
                await _until(lambda: _queued(pair.master, "rq"))
                await call(permit.release)
                t.join(30)
            with _sync(pair.replica) as replica:
                assert replica.zcard("{rq}:h") == 1  # the waiter's grant, replicated
            await call(got[0].release)
        finally:
            await holder_side.close()
            await waiter_side.close()

    _run(scenario)


async def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for state Redis changes while this loop keeps running (no event to wait on)."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.005)


def _queued(server: RedisServer, name: str) -> bool:
    with _sync(server) as r:
        return bool(r.zcard("{" + name + "}:q") == 1)


# --- 2. a stalled replica: a typed error in time, nothing held ---------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_stalled_replica_acquire_raises_not_replicated_and_holds_nothing(
    flavour: str, replica_pair: ReplicaPair
) -> None:
    pair = replica_pair
    _aged(pair, "r2")
    assert pair.replica.proc is not None
    pair.replica.proc.send_signal(signal.SIGSTOP)

    async def scenario() -> None:
        side = Side(flavour, pair.master)
        sem = side.mod.Semaphore(side.client, "r2", 2, lease=10, replicas=1, replicas_timeout=0.2)
        try:
            start = time.monotonic()
            with pytest.raises(NotReplicated) as caught:
                await call(sem.acquire, 2, timeout=30)
            assert time.monotonic() - start < 0.2 + 5  # the WAIT's timeout, not acquire's
            assert isinstance(caught.value, RedisUnavailable)
            assert (caught.value.acked, caught.value.wanted) == (0, 1)
            assert "replicas=1" in str(caught.value)
            with pytest.raises(NotReplicated, match="try_acquire"):
                await call(sem.try_acquire, 1)
            stats = await call(sem.server_statistics)
            assert (stats.held, stats.waiting) == (0, 0)  # given back on the master
            assert sem.statistics().held == 0
        finally:
            await side.close()

    try:
        _run(scenario)
    finally:
        pair.replica.proc.send_signal(signal.SIGCONT)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_limits_joint_grant_waits_for_its_semaphores_replicas(
    flavour: str, replica_pair: ReplicaPair
) -> None:
    """A Limits grant with a ``replicas=1`` semaphore is minted by the joint script, not the
    semaphore's: it waits for the replica the same way. Replica up: the replica has the
    permit when acquire returns. Replica stopped: ``NotReplicated``, and neither the permit
    nor the rate limit's cost is kept on the master."""
    pair = replica_pair
    with _sync(pair.master) as m:  # (the semaphore's epoch an hour old: no first-use grace)
        t0 = (int(m.time()[0]) - 3600) * 1_000_000
        m.hset("{acct}:conc:e", mapping={"t0": t0, "f": t0})
    with _sync(pair.replica) as r:
        wait_for(lambda: r.exists("{acct}:conc:e") == 1)

    async def scenario() -> None:
        side = Side(flavour, pair.master)
        rpm = side.mod.RateLimit(side.client, "rpm", 1000, burst=10, tag="acct")
        sem = side.mod.Semaphore(
            side.client, "conc", 2, lease=10, tag="acct", replicas=1, replicas_timeout=0.2
        )
        limits = side.mod.Limits(rpm, sem)
        try:
            with _sync(pair.replica) as replica:
                waits = _wait_calls(pair.master)
                grant = await call(limits.acquire, timeout=30)
                # WAIT answered: the replica has the holder the moment acquire returns.
                assert replica.zcard(sem._k.keys[1]) == 1
                assert _wait_calls(pair.master) > waits
            await call(grant.release)
            free = await call(rpm.available)
            assert pair.replica.proc is not None
            pair.replica.proc.send_signal(signal.SIGSTOP)
            try:
                with pytest.raises(NotReplicated) as caught:
                    await call(limits.acquire, timeout=30)
                assert (caught.value.acked, caught.value.wanted) == (0, 1)
                stats = await call(sem.server_statistics)
                assert (stats.held, stats.waiting) == (0, 0)  # the permit given back
                assert await call(rpm.available) >= free - 0.01  # and the cost refunded
            finally:
                pair.replica.proc.send_signal(signal.SIGCONT)
        finally:
            await side.close()

    _run(scenario)


# --- 3. the failover that over-commits without the option --------------------------------------


@pytest.mark.parametrize("replicas", [0, 1])
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_failover_to_a_replica_that_missed_the_grant(
    flavour: str, replicas: int, replica_pair: ReplicaPair
) -> None:
    pair = replica_pair
    _aged(pair, "r3")
    _cut_off(pair)

    async def scenario() -> None:
        old, new = Side(flavour, pair.master), Side(flavour, pair.replica)
        # (without the option, no replicas= argument: this case runs on the old code too)
        opt = {"replicas": replicas, "replicas_timeout": 0.2} if replicas else {}
        sem = old.mod.Semaphore(old.client, "r3", 2, lease=10, **opt)
        permit = None
        try:
            if replicas == 0:
                permit = await call(sem.acquire, 2)  # acknowledged by the master alone
            else:
                with pytest.raises(NotReplicated):
                    await call(sem.acquire, 2)
            _failover(pair)
            successor = new.mod.Semaphore(new.client, "r3", 2, lease=10)
            second = await call(successor.try_acquire, 2)
            assert second is not None  # the promoted replica never saw a grant
            if replicas == 0:
                # The old behaviour, documented: both believe they hold 2 of the 2 permits.
                assert not permit.ctx.cancelled  # type: ignore[union-attr]
                assert sem.statistics().held + successor.statistics().held == 4
            else:
                assert sem.statistics().held + successor.statistics().held == 2
            await call(second.release)
            if permit is not None:
                with pytest.raises(RedisUnavailable):  # its master is gone
                    await call(permit.release)
        finally:
            await old.close()
            await new.close()

    _run(scenario)


# --- 4. a failover to a replica that did acknowledge -----------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_failover_to_a_replica_that_acked_keeps_the_permit(
    flavour: str, replica_pair: ReplicaPair
) -> None:
    pair = replica_pair
    _aged(pair, "r4")

    async def scenario() -> None:
        old, new = Side(flavour, pair.master), Side(flavour, pair.replica)
        sem = old.mod.Semaphore(old.client, "r4", 2, lease=10, replicas=1)
        try:
            permit = await call(sem.acquire, 2)
            _failover(pair)
            successor = new.mod.Semaphore(new.client, "r4", 2, lease=10)
            assert await call(successor.try_acquire, 2) is None
            with pytest.raises(corral.DeadlineExceeded):
                await call(successor.acquire, 2, timeout=0.3)  # it waits for the holder
            stats = await call(successor.server_statistics)
            assert (stats.held, stats.waiting) == (2, 0)
            assert not permit.ctx.cancelled
            with pytest.raises(RedisUnavailable):  # its master is gone
                await call(permit.release)
        finally:
            await old.close()
            await new.close()

    _run(scenario)


# --- renewals: one not acknowledged extends nothing ---------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_unacknowledged_renewals_let_the_holder_lose_its_lease(
    flavour: str, replica_pair: ReplicaPair
) -> None:
    # The master keeps renewing the holder, but a renewal the replica lacks would not
    # survive a failover: the promoted replica would expire the holder on the last renewal
    # it has. So the holder counts only acknowledged renewals, and stops in time.
    pair = replica_pair
    _aged(pair, "rr")

    async def scenario() -> None:
        side = Side(flavour, pair.master)
        sem = side.mod.Semaphore(side.client, "rr", 1, lease=0.6, replicas=1)
        try:
            permit = await call(sem.acquire)
            _cut_off(pair)
            await _until(lambda: permit.ctx.cancelled)
            assert isinstance(permit.ctx.cause, corral.redis.LeaseLost)
            stats = await call(sem.server_statistics)
            assert stats.held == 1  # the master still has it: its renewals went on
            with pytest.raises(corral.redis.LeaseLost):
                await call(permit.release)
            # A renewal may still be in flight (each one now waits up to replicas_timeout
            # for the silent replica): let the renewer end before the client is closed, or
            # that renewal reconnects a closed pool and leaves a socket behind.
            await _until(
                lambda: not any(t.name == "corral-redis-semaphore" for t in threading.enumerate())
            )
        finally:
            await side.close()

    try:
        _run(scenario)
    finally:
        assert pair.replica.proc is not None
        pair.replica.proc.send_signal(signal.SIGCONT)


# --- SingleFlight: a leadership counts once the replica has it -----------------------------------


def _start(flavour: str, fn: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    """Run ``await call(fn)`` concurrently (a task, or a thread for the blocking flavour);
    -> a coroutine function that returns its result (or raises its exception)."""
    if flavour == "asyncio":
        task = asyncio.ensure_future(call(fn))

        async def result() -> Any:
            return await task

        return result
    out: list[Any] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as e:
            err.append(e)

    t = threading.Thread(target=run)
    t.start()

    async def joined() -> Any:
        t.join(30)
        if err:
            raise err[0]
        return out[0]

    return joined


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_singleflight_leadership_counts_once_the_replica_has_it(
    flavour: str, replica_pair: ReplicaPair
) -> None:
    pair = replica_pair

    async def scenario() -> None:
        side = Side(flavour, pair.master)
        sf = side.mod.SingleFlight(side.client, namespace="s1", replicas=1)
        seen: list[int] = []
        try:
            with _sync(pair.replica) as replica:

                def fn() -> str:
                    seen.append(replica.exists("{s1}:sf:k:lease"))  # the replica has it
                    return "v"

                assert await call(sf.do, "k", fn) == "v"
                before = _wait_calls(pair.master)
                assert await call(sf.do, "k", fn) == "v"
                assert _wait_calls(pair.master) == before + 1
                assert seen == [1, 1]
        finally:
            await side.close()

    _run(scenario)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_singleflight_stalled_replica_raises_not_replicated_and_runs_nothing(
    flavour: str, replica_pair: ReplicaPair
) -> None:
    pair = replica_pair
    assert pair.replica.proc is not None
    pair.replica.proc.send_signal(signal.SIGSTOP)

    async def scenario() -> None:
        side = Side(flavour, pair.master)
        sf = side.mod.SingleFlight(side.client, namespace="s2", replicas=1, replicas_timeout=0.2)
        calls: list[int] = []
        try:
            with pytest.raises(NotReplicated):
                await call(sf.do, "k", lambda: calls.append(1))
            assert calls == []
            with _sync(pair.master) as m:
                assert m.exists("{s2}:sf:k:lease") == 0  # given back at once
        finally:
            await side.close()

    try:
        _run(scenario)
    finally:
        pair.replica.proc.send_signal(signal.SIGCONT)


@pytest.mark.parametrize("replicas", [0, 1])
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_singleflight_failover_to_a_replica_that_missed_the_leadership(
    flavour: str, replicas: int, replica_pair: ReplicaPair
) -> None:
    pair = replica_pair
    _cut_off(pair)

    async def scenario() -> None:
        old, new = Side(flavour, pair.master), Side(flavour, pair.replica)
        opt = {"replicas": replicas, "replicas_timeout": 0.2} if replicas else {}
        sf = old.mod.SingleFlight(old.client, namespace="s3", lease=10, **opt)
        running, finish = threading.Event(), threading.Event()
        calls: list[str] = []

        def first() -> str:
            calls.append("first")
            running.set()
            finish.wait(30)
            return "first"

        try:
            leader = _start(flavour, lambda: sf.do("k", first))
            if replicas == 0:
                await _until(running.is_set)
            else:
                with pytest.raises(NotReplicated):
                    await leader()
            _failover(pair)
            successor = new.mod.SingleFlight(new.client, namespace="s3", lease=10)
            second = await call(successor.do, "k", lambda: calls.append("second") or "second")
            assert second == "second"
            if replicas == 0:
                # The old behaviour, documented: two leaders of one key at once.
                assert calls == ["first", "second"]
                assert running.is_set()
                assert not finish.is_set()
                finish.set()
                with pytest.raises(RedisUnavailable):  # its master is gone
                    await leader()
            else:
                assert calls == ["second"]
        finally:
            finish.set()
            await old.close()
            await new.close()

    _run(scenario)
