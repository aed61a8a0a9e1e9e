"""A corral.redis.Semaphore as a member of a corral.redis.Limits (issue 21), both flavours,
against a real redis-server: all or nothing in one script, FIFO with head-of-line across
the members, timeout, try_acquire, the grant's lease (ctx, fence, release, lost state).

Two limiter objects on one name stand for two processes; the SIGKILL and fleet tests use
real processes (test_ratelimit_sem_fleet.py). "Charged nothing" is read from Redis: rate
limits slow enough (one unit per 1,000 s) that ``available()`` does not drift, and the
semaphore's own ``server_statistics()``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import corral
import corral.redis
import corral.threads.redis
from corral import Cancelled, DeadlineExceeded

from .conftest import connect_async, wait_for

T = corral.threads.redis
SLOW = {"rate": 1, "per": 1000.0}  # one unit per 1,000 s: available() does not drift
TAG = "acct"


def _no_grace(client: Any, sem: Any) -> None:
    """Start the name's epoch and end its grace (a fresh name waits one lease)."""
    sem.server_statistics()
    client.hset(sem._k.keys[4], "t0", "0")


def _sem(client: Any, size: int = 2, lease: float = 2.0, name: str = "conc") -> Any:
    sem = T.Semaphore(client, name, size, lease=lease, tag=TAG)
    _no_grace(client, sem)
    return sem


def _rl(client: Any, name: str = "rpm", burst: float = 5, **kw: Any) -> Any:
    return T.RateLimit(client, name, burst=burst, tag=TAG, **(kw or SLOW))


def _rate_queued(client: Any, name: str = "rpm") -> int:
    return int(client.zcard(f"corral:{{{TAG}}}:rl:{name}:q"))


def _server(sem: Any) -> tuple[int, int]:
    st = sem.server_statistics()
    return st.held, st.waiting


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=run)
    t.start()
    return t, out


# --- construction: one slot ------------------------------------------------------------------


def test_semaphore_joins_a_limits_by_its_hash_tag(client: Any) -> None:
    rpm = _rl(client)
    alone = T.Semaphore(client, "conc", 2)  # its own tag: {conc}
    with pytest.raises(T.CrossSlot, match=r"semaphore 'conc' has the hash tag 'conc'.*tag='acct'"):
        T.Limits(rpm, alone)
    assert T.Semaphore(client, "conc", 2, tag=TAG)._k.keys[0] == "{acct}:conc:m"
    assert alone._k.keys[0] == "{conc}:m"  # a semaphore without tag= keeps its keys
    T.Limits(rpm, T.Semaphore(client, TAG, 2))  # named like the tag: the same slot
    with pytest.raises(ValueError, match="two semaphores"):
        T.Limits(rpm, T.Semaphore(client, "a", 1, tag=TAG), T.Semaphore(client, "b", 1, tag=TAG))
    with pytest.raises(ValueError, match=r"at least one corral\.threads\.redis\.RateLimit"):
        T.Limits(T.Semaphore(client, "a", 1, tag=TAG))
    with pytest.raises(ValueError, match="tag must not contain braces"):
        T.Semaphore(client, "a", 1, tag="x{y}")
    small = T.Semaphore(client, "a", 1, tag=TAG)
    with pytest.raises(ValueError, match=r"Limits\.acquire.*size"):
        T.Limits(rpm, small).acquire({small: 2})


# --- a grant holds a leased permit --------------------------------------------------------


def test_threads_joint_grant_holds_a_leased_permit(client: Any) -> None:
    rpm, sem = _rl(client), _sem(client)
    other = T.Semaphore(client, "conc", 2, lease=2.0, tag=TAG)  # another process
    lim = T.Limits(rpm, sem)
    with other.acquire() as before:
        pass
    with lim.acquire({sem: 2}) as grant:
        assert grant.costs == {rpm: 1, sem: 2}
        assert grant.cost(sem) == 2
        assert grant.fence is not None
        assert grant.fence > before.fence
        assert not grant.ctx.cancelled
        assert grant.permit is not None
        assert grant.permit.n == 2
        assert sem.statistics().held == 2
        assert sem.statistics().acquired == 1
        assert _server(sem) == (2, 0)
        with pytest.raises(TypeError, match="semaphore: its permits are held"):
            grant.adjust(sem, 1)
        grant.adjust(rpm, 2)
    assert grant.ctx.cancelled
    assert not isinstance(grant.ctx.cause, T.LeaseLost)
    assert _server(sem) == (0, 0)
    assert sem.statistics().held == 0
    assert rpm.available() == pytest.approx(3, abs=0.01)
    grant.release()  # idempotent
    with other.acquire() as after:
        assert after.fence > grant.fence  # one sequence for the semaphore's grants


def test_async_joint_grant_holds_a_leased_permit(client: Any, redis_url: str) -> None:
    _no_grace(client, T.Semaphore(client, "conc", 2, tag=TAG))

    async def main() -> None:
        async with connect_async(redis_url, socket_timeout=30) as ac:
            rpm = corral.redis.RateLimit(ac, "rpm", burst=5, tag=TAG, **SLOW)
            sem = corral.redis.Semaphore(ac, "conc", 2, lease=2.0, tag=TAG)
            lim = corral.redis.Limits(rpm, sem)
            async with lim.acquire({sem: 1}) as grant:
                assert grant.costs == {rpm: 1, sem: 1}
                assert isinstance(grant.fence, int)
                assert sem.statistics().held == 1
                assert (await sem.server_statistics()).held == 1
                with pytest.raises(TypeError):
                    await grant.adjust(sem, 0)
                p = await sem.acquire()  # room for one more
                assert p.fence > grant.fence
                await p.release()
                other = await lim.try_acquire({sem: 1})
                assert other is not None
                assert other.fence > grant.fence
                await other.release()
            assert (await sem.server_statistics()).held == 0
            assert await rpm.available() == pytest.approx(3, abs=0.01)

    asyncio.run(main())


def test_statistics_count_permits_of_joint_grants(client: Any) -> None:
    rpm, sem = _rl(client), _sem(client)
    with T.Limits(rpm, sem).acquire() as grant, sem.acquire():
        st = sem.statistics()
        assert (st.held, st.acquired) == (2, 2)
        assert rpm.statistics().acquired == 1
        assert grant.permit is not None
    assert sem.statistics().held == 0


# --- all or nothing ----------------------------------------------------------------------------


def test_waiting_on_the_semaphore_holds_no_rate(client: Any) -> None:
    rpm, sem = _rl(client), _sem(client, size=1)
    other = T.Semaphore(client, "conc", 1, lease=2.0, tag=TAG)
    blocker = other.acquire()
    t, out = _in_thread(lambda: T.Limits(rpm, sem).acquire(timeout=20))
    wait_for(lambda: _server(sem) == (1, 1))
    time.sleep(0.1)  # (not synchronization: time for a wrong grant to show)
    assert rpm.available() == pytest.approx(5, abs=0.01)  # nothing of the rate taken
    blocker.release()
    t.join(20)
    (grant,) = out
    assert _server(sem) == (1, 0)
    assert rpm.available() == pytest.approx(4, abs=0.01)
    grant.release()


def test_waiting_on_a_rate_holds_no_permit(client: Any) -> None:
    rpm, sem = _rl(client, burst=1), _sem(client, size=1)
    rpm.acquire()  # spent for 1,000 s
    ctx = corral.with_cancel(corral.background())
    t, out = _in_thread(lambda: T.Limits(rpm, sem).acquire(ctx=ctx))
    # Queued in Redis by the script, then counted by this process when the script returned
    # (the local count follows the reply): wait for both.
    wait_for(lambda: _rate_queued(client) == 1 and sem.statistics().waiting == 1)
    assert _server(sem) == (0, 1)  # queued there too, holding nothing
    assert sem.try_acquire() is None  # FIFO: it does not pass the joint waiter
    ctx.cancel()
    t.join(20)
    assert [type(e) for e in out] == [Cancelled]
    assert _server(sem) == (0, 0)
    assert _rate_queued(client) == 0
    assert sem.statistics().held == 0
    with sem.acquire(timeout=5):  # the permit is free
        pass


def test_timeout_charges_nothing_and_holds_nothing(client: Any) -> None:
    rpm, sem = _rl(client), _sem(client, size=1)
    blocker = T.Semaphore(client, "conc", 1, lease=2.0, tag=TAG).acquire()
    with pytest.raises(DeadlineExceeded):
        T.Limits(rpm, sem).acquire(timeout=0.3)
    assert _server(sem) == (1, 0)
    assert _rate_queued(client) == 0
    assert rpm.available() == pytest.approx(5, abs=0.01)
    blocker.release()


def test_try_acquire_now_or_nothing(client: Any) -> None:
    rpm, sem = _rl(client), _sem(client, size=2)
    lim = T.Limits(rpm, sem)
    other = T.Semaphore(client, "conc", 2, lease=2.0, tag=TAG)
    blocker = other.acquire()
    # One permit free, but a waiter for two is queued first: a try never passes it.
    t, out = _in_thread(lambda: other.acquire(2, timeout=20))
    wait_for(lambda: _server(sem) == (1, 1))
    assert lim.try_acquire({sem: 1}) is None
    assert _server(sem) == (1, 1)
    assert _rate_queued(client) == 0
    assert rpm.available() == pytest.approx(5, abs=0.01)
    blocker.release()
    t.join(20)
    assert lim.try_acquire() is None  # all held
    out[0].release()
    grant = lim.try_acquire({sem: 2})
    assert grant is not None
    assert grant.permit is not None
    assert _server(sem) == (2, 0)
    assert rpm.available() == pytest.approx(4, abs=0.01)
    grant.release()
    assert _server(sem) == (0, 0)


# --- FIFO and head-of-line across the members -------------------------------------------------


def test_joint_waiter_first_in_line_keeps_its_place(client: Any) -> None:
    """A joint waiter for 2 queued before a semaphore waiter for 1: one permit coming back
    does not go to the later, smaller request (head-of-line); both coming back go to the
    joint waiter; the semaphore waiter follows when it releases."""
    rpm, sem = _rl(client), _sem(client, size=2)
    a = T.Semaphore(client, "conc", 2, lease=2.0, tag=TAG)
    b = T.Semaphore(client, "conc", 2, lease=2.0, tag=TAG)
    one, two = a.acquire(), a.acquire()
    tj, joint = _in_thread(lambda: T.Limits(rpm, sem).acquire({sem: 2}, timeout=20))
    wait_for(lambda: _server(sem) == (2, 1))
    ts, alone = _in_thread(lambda: b.acquire(1, timeout=20))
    wait_for(lambda: _server(sem) == (2, 2))
    one.release()
    time.sleep(0.2)  # (not synchronization: time for a wrong grant to show)
    assert not alone
    assert not joint
    assert _server(sem) == (1, 2)
    two.release()
    tj.join(20)
    assert joint
    assert joint[0].permit.n == 2
    assert not alone
    joint[0].release()
    ts.join(20)
    assert alone
    assert alone[0].n == 1
    assert alone[0].fence > joint[0].fence
    alone[0].release()


def test_semaphore_waiter_first_in_line_keeps_its_place(client: Any) -> None:
    """The other way round: a semaphore waiter for 2 first, a joint waiter for 1 behind
    it; the free permit is not the joint waiter's (nor any rate)."""
    rpm, sem = _rl(client), _sem(client, size=2)
    a = T.Semaphore(client, "conc", 2, lease=2.0, tag=TAG)
    blocker = a.acquire()
    ts, alone = _in_thread(lambda: a.acquire(2, timeout=20))
    wait_for(lambda: _server(sem) == (1, 1))
    tj, joint = _in_thread(lambda: T.Limits(rpm, sem).acquire({sem: 1}, timeout=20))
    wait_for(lambda: _server(sem) == (1, 2))
    time.sleep(0.2)  # (not synchronization: time for a wrong grant to show)
    assert not joint
    assert rpm.available() == pytest.approx(5, abs=0.01)
    blocker.release()
    ts.join(20)
    assert alone
    assert not joint
    alone[0].release()
    tj.join(20)
    assert joint
    assert rpm.available() == pytest.approx(4, abs=0.01)
    joint[0].release()


def test_joint_waiters_are_served_in_order(client: Any) -> None:
    rpm = _rl(client, burst=10)
    sem = _sem(client, size=1)
    lim = T.Limits(rpm, sem)
    blocker = T.Semaphore(client, "conc", 1, lease=2.0, tag=TAG).acquire()
    order: list[int] = []
    threads = []
    for i in range(3):

        def take(i: int = i) -> None:
            with lim.acquire(timeout=20):
                order.append(i)

        th = threading.Thread(target=take)
        th.start()
        threads.append(th)
        wait_for(lambda i=i: _server(sem) == (1, i + 1))
    blocker.release()
    for th in threads:
        th.join(20)
    assert order == [0, 1, 2]


# --- the lease ---------------------------------------------------------------------------------


def test_lease_loss_cancels_grant_ctx(client: Any) -> None:
    rpm, sem = _rl(client), _sem(client, size=1, lease=0.6)
    grant = T.Limits(rpm, sem).acquire()
    assert grant.permit is not None
    client.zrem(sem._k.keys[1], grant.permit._token)  # the lease vanishes from Redis
    assert grant.ctx.wait_blocking(5)
    assert isinstance(grant.ctx.cause, T.LeaseLost)
    with pytest.raises(T.LeaseLost):
        grant.release()
    assert sem.statistics().lost == 1


def test_lost_state_grants_nothing_for_a_lease_and_rates_start_spent(client: Any) -> None:
    """Redis lost its state (FLUSHALL stands for a restart without persistence): a joint
    acquire is granted nothing for one lease (the semaphore's grace), and its rate limit
    starts spent as of the loss, not with a fresh burst."""
    lease = 1.0
    rpm = _rl(client, burst=5, rate=5, per=100.0)  # 20 s per unit once spent
    fast = _rl(client, name="fast", burst=5, rate=1000, per=1.0)
    sem = _sem(client, size=1, lease=lease)
    lim = T.Limits(fast, sem)
    T.Limits(rpm, sem).acquire().release()
    lim.acquire().release()
    client.flushall()
    assert T.Limits(rpm, sem).try_acquire() is None
    assert rpm.available() < 1  # spent as of the loss
    t = time.monotonic()
    with lim.acquire(timeout=10):
        waited = time.monotonic() - t
    assert waited >= 0.8 * lease, waited  # the grace: nothing granted for one lease


# --- rate= ------------------------------------------------------------------------------------


def test_rate_on_fan_out_holds_the_permit_through_the_call(client: Any) -> None:
    rpm = _rl(client, burst=100, rate=1000, per=1.0)
    sem = _sem(client, size=2)
    lim = T.Limits(rpm, sem)
    peak, cur, lock = [0], [0], threading.Lock()

    def work(x: int) -> int:
        with lock:
            cur[0] += 1
            peak[0] = max(peak[0], cur[0])
        time.sleep(0.01)
        with lock:
            cur[0] -= 1
        return x

    out = sorted(corral.threads.fan_out(work, range(12), workers=6, rate=lim).collect())
    assert out == list(range(12))
    assert peak[0] <= 2
    assert _server(sem) == (0, 0)


def test_rate_on_fan_out_takes_a_limits_with_no_cost(client: Any) -> None:
    # (rate=Limits passed a cost of 1 as its costs mapping: a TypeError for every item)
    a = T.RateLimit(client, "a", 1000, burst=50, tag=TAG)
    b = T.RateLimit(client, "b", 1000, burst=50, tag=TAG)
    out = corral.threads.fan_out(lambda x: x, range(6), workers=2, rate=T.Limits(a, b)).collect()
    assert sorted(out) == list(range(6))
    assert a.statistics().acquired == b.statistics().acquired == 6


def test_a_waits_blpop_ends_before_the_clients_default_socket_timeout(redis_url: str) -> None:
    # (found by the docs' example, whose joint waiter waited out a semaphore's grace: redis-py
    # keeps from_url's default socket timeout, 5 s, apart from "socket_timeout", and a BLPOP of
    # 5 s was cut as a RedisUnavailable)
    import redis

    with redis.Redis.from_url(redis_url) as c:
        kw = c.get_connection_kwargs()
        sock = kw.get("socket_timeout") or kw.get("orig_socket_timeout")
        rl = T.RateLimit(c, "rpm", 10)
        if sock:
            assert rl._blpop_cap <= sock / 2


def test_one_grant_rule_for_the_semaphore_and_the_joint_script() -> None:
    # The semaphore's grant rule is one Lua fragment: its own scripts and the Limits' joint
    # script run the same text (no copy to drift: see docs/redis.md, "A semaphore in a Limits").
    from corral._redis import rate_scripts, scripts

    frag = scripts.SEM_STATE_LUA
    assert "local function grant(me)" in frag
    for name in ("SEM_ACQUIRE", "SEM_TOUCH", "SEM_RELEASE", "SEM_STATE"):
        assert frag in getattr(scripts, name)
        assert getattr(scripts, name).count("local function grant(") == 1
    assert frag in rate_scripts.LIMITS_ACQUIRE
    assert rate_scripts.LIMITS_ACQUIRE.count("local function grant(") == 1
    assert rate_scripts.LIMITS_ACQUIRE.count("local function hold(") == 1


def test_joint_grant_passes_the_room_left_on_to_the_waiters_behind(client: Any) -> None:
    """Three permits come back: the joint waiter at the head takes one, and the semaphore
    waiter behind it gets another in the same script, by the joint script's own grant loop,
    not at its next check (half a lease later: 30 s, past every wait here)."""
    lease = 60.0
    rpm, sem = _rl(client), _sem(client, size=3, lease=lease)
    a = T.Semaphore(client, "conc", 3, lease=lease, tag=TAG)
    blocker = a.acquire(3)
    tj, joint = _in_thread(lambda: T.Limits(rpm, sem).acquire(timeout=20))
    wait_for(lambda: _server(sem) == (3, 1))
    ts, alone = _in_thread(lambda: a.acquire(1, timeout=20))
    wait_for(lambda: _server(sem) == (3, 2))
    blocker.release()
    tj.join(20)
    assert joint
    # The joint grant's script granted the waiter behind it too: both hold, none waits.
    assert _server(sem) == (2, 0)
    ts.join(20)
    assert alone
    assert sem.statistics().waiting == 0
    joint[0].release()
    alone[0].release()


def test_a_semaphore_of_another_size_is_a_size_conflict(client: Any) -> None:
    rpm, sem = _rl(client), _sem(client, size=2)
    with sem.acquire():  # the name exists with size 2
        other = T.Semaphore(client, "conc", 3, lease=2.0, tag=TAG)
        with pytest.raises(T.SizeConflict, match="size=3"):
            T.Limits(rpm, other).acquire(timeout=5)
        assert _server(sem) == (1, 0)
        assert _rate_queued(client) == 0
        assert rpm.available() == pytest.approx(5, abs=0.01)
