"""corral.redis.RateLimit / Limits and their thread twins against a real redis-server.

Two limiter objects on one name stand for two processes (each keeps its own counts);
tests/redis_ext/test_ratelimit_fleet.py uses real processes. "Charged nothing" is read from
Redis: a limiter slow enough (one unit per 1,000 s) that the clock does not move its
``available()`` during a test, or, for a fast limiter, its stored schedule (``_Schedule``:
``tat``, the late-return shift total and the grant records, which the clock does not move).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import corral
import corral.redis
import corral.threads
import corral.threads.redis
from corral import Cancelled, DeadlineExceeded
from corral._redis.rate_common import late_shift_us

from .conftest import ClusterServer, RedisServer, connect, connect_async, wait_for

SLOW = {"rate": 1, "per": 1000.0}  # one unit per 1,000 s: available() does not drift


def _queued(client: Any, name: str, tag: str | None = None) -> int:
    return int(client.zcard(f"corral:{{{tag or name}}}:rl:{name}:q"))


async def _aclient(url: str) -> Any:
    return connect_async(url, socket_timeout=30)


async def _awaited(acq: Any) -> Any:
    return await acq


# --- arguments -------------------------------------------------------------------------------


def test_bad_arguments_are_typed_errors_naming_them(client: Any) -> None:
    R = corral.threads.redis.RateLimit
    with pytest.raises(ValueError, match="cost=6 is larger than the burst 5"):
        R(client, "a", 10, burst=5).acquire(6)
    with pytest.raises(TypeError, match="cost must be a number"):
        R(client, "a", 10).acquire("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"redis\.RateLimit: rate must be finite and > 0"):
        R(client, "a", 0)
    with pytest.raises(ValueError, match="headroom"):
        R(client, "a", 10, headroom=2.0)
    with pytest.raises(ValueError, match="name must not contain braces"):
        R(client, "a{b}", 10)
    with pytest.raises(TypeError, match="client must be a redis-py client"):
        R(object(), "a", 10)
    with pytest.raises(TypeError, match=r"redis\.Limits: limiters must be corral\.threads\.redis"):
        corral.threads.redis.Limits(corral.threads.RateLimit(10))  # type: ignore[arg-type]
    # costs=: the local Limits' rule (_core.joint.named_costs), so the same errors
    lim = corral.threads.redis.Limits(R(client, "a", 10, tag="t"), R(client, "b", 10, tag="t"))
    with pytest.raises(TypeError, match="costs must be a mapping of limiter to cost, got list"):
        lim.acquire([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"costs names .*, which is not in these Limits"):
        lim.try_acquire({R(client, "a", 10, tag="t"): 1})  # an equal limiter, not one of these
    assert client.keys("*") == []  # nothing was written


def test_limits_across_tags_is_a_cross_slot_error(client: Any) -> None:
    a = corral.threads.redis.RateLimit(client, "a", 10)
    b = corral.threads.redis.RateLimit(client, "b", 10)
    with pytest.raises(corral.threads.redis.CrossSlot, match="tag="):
        corral.threads.redis.Limits(a, b)
    assert issubclass(corral.redis.CrossSlot, ValueError)
    c = corral.threads.redis.RateLimit(client, "c", 10, tag="t")
    d = corral.threads.redis.RateLimit(client, "d", 10, tag="t")
    corral.threads.redis.Limits(c, d)  # one tag: one slot
    assert client.keys("*b*") == []  # nothing was written


# --- GCRA on the server ----------------------------------------------------------------------


def test_threads_weighted_burst_then_paced(client: Any) -> None:
    rl = corral.threads.redis.RateLimit(client, "w", 100, burst=5)
    with rl.acquire(4) as grant:
        assert grant.cost(rl) == 4
    assert rl.try_acquire(1)
    assert not rl.try_acquire(1)  # the burst is spent
    t = time.monotonic()
    rl.acquire(5)  # 5 units at 100/s: 50 ms
    # Not early (the rate); the upper bound only says it did not hang (a loaded CI host).
    assert 0.04 <= time.monotonic() - t < 10
    s = rl.statistics()
    assert (s.acquired, s.granted, s.waiting, s.burst) == (3, 10, 0, 5)


def test_async_weighted_burst_then_paced(redis_url: str) -> None:
    asyncio.run(_weighted(redis_url))


async def _weighted(redis_url: str) -> None:
    async with await _aclient(redis_url) as ac:
        rl = corral.redis.RateLimit(ac, "w", 100, burst=5)
        grant = await rl.acquire(5)
        assert grant.costs == {rl: 5}
        assert not await rl.try_acquire(1)
        t = time.monotonic()
        async with rl.acquire(5):
            pass
        assert 0.04 <= time.monotonic() - t < 10  # not early; not hung
        assert rl.statistics().granted == 10


def test_fifo_head_of_line_across_processes(client: Any) -> None:
    # b (cost 10) queues first; c (cost 1) queues behind it. 1 unit is available long before
    # 10 are, but c is never granted before b: a large cost at the head is not starved.
    a, b, c = (corral.threads.redis.RateLimit(client, "f", 50, burst=10) for _ in range(3))
    a.acquire(10)
    order: list[str] = []
    tb = threading.Thread(target=lambda: (b.acquire(10), order.append("big")))
    tb.start()
    wait_for(lambda: _queued(client, "f") == 1)
    tc = threading.Thread(target=lambda: (c.acquire(1), order.append("small")))
    tc.start()
    tb.join(10)
    tc.join(10)
    assert order == ["big", "small"]
    assert _queued(client, "f") == 0


def test_try_acquire_does_not_jump_the_queue(client: Any) -> None:
    # 1,000 per minute, burst 50 (60 ms per unit): after a takes all 50, b's 50 units are due
    # in 3 s, far beyond the horizon, so b queues; one unit conforms again after 60 ms. A
    # try_acquire(1) then must still fail: it would pass the queued b. (Wide margins: a stall
    # of up to about 3 s on a loaded machine cannot turn the case into another.)
    a, b = (corral.threads.redis.RateLimit(client, "j", 1000, per=60.0, burst=50) for _ in range(2))
    a.acquire(50)
    t = threading.Thread(target=lambda: b.acquire(50))
    t.start()
    try:
        wait_for(lambda: _queued(client, "j") == 1)
        wait_for(lambda: a.available() >= 1)  # one unit conforms again: the point
        assert _queued(client, "j") == 1, "b was granted before the try: the case is lost"
        assert not a.try_acquire(1)
    finally:
        t.join(10)
    assert not t.is_alive()


def test_adjust_charges_into_debt_and_refunds(client: Any) -> None:
    rl = corral.threads.redis.RateLimit(client, "adj", burst=10, **SLOW)
    grant = rl.acquire(4)
    assert rl.available() == pytest.approx(6, abs=0.01)
    grant.adjust(rl, 1)  # refund 3
    assert rl.available() == pytest.approx(9, abs=0.01)
    grant.adjust(rl, 15)  # charge 14: beyond the burst, into debt
    assert rl.available() == pytest.approx(-5, abs=0.01)
    assert grant.cost(rl) == 15
    assert not rl.try_acquire(1)
    with pytest.raises(ValueError, match="actual must be finite and >= 0"):
        grant.adjust(rl, -1)
    other = corral.threads.redis.RateLimit(client, "other", 10)
    with pytest.raises(ValueError, match="not one of this grant's limiters"):
        grant.adjust(other, 1)


# --- leaving the queue charges nothing ---------------------------------------------------------


def _charged_nothing(client: Any, rl: Any, before: float, name: str) -> None:
    assert rl.available() == pytest.approx(before, abs=0.01)
    assert _queued(client, name) == 0
    # Only the grants that returned keep a record (until it expires): none of a leaver's.
    assert len(client.keys(f"corral:{{{name}}}:g:*")) <= rl.statistics().acquired


def test_threads_timeout_and_ctx_cancel_charge_nothing(client: Any) -> None:
    rl = corral.threads.redis.RateLimit(client, "c", burst=3, **SLOW)
    rl.acquire(2)
    with pytest.raises(DeadlineExceeded):
        rl.acquire(3, timeout=0.2)
    _charged_nothing(client, rl, 1, "c")
    ctx = corral.with_cancel(corral.background())
    cancel = ctx.cancel
    threading.Timer(0.2, cancel).start()
    with pytest.raises(Cancelled):
        rl.acquire(3, ctx=ctx)
    _charged_nothing(client, rl, 1, "c")
    assert rl.statistics().waiting == 0


class _Schedule:
    """One limiter's state as Redis keeps it, read in one transaction: the server's clock,
    the limiter's ``tat``, the total of the late-return shifts made to it, and the grant
    records of its tag. Unlike ``available()``, nothing here moves with the clock, and a
    late-return report (which moves ``tat`` back by design) is told apart from a charge."""

    def __init__(self, now: float, tat: float, shifts: float, records: set[Any]) -> None:
        self.now, self.tat, self.shifts, self.records = now, tat, shifts, records

    # One script, so one atomic read on a single server and on a cluster alike (a cluster
    # refuses TIME in a pipeline; the keys share the tag, so KEYS here sees them all).
    _READ = """
    local t = redis.call('TIME')
    return {t[1], t[2], redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]),
            redis.call('KEYS', ARGV[1])}
    """

    @classmethod
    async def read(cls, ac: Any, name: str) -> _Schedule:
        base = f"corral:{{{name}}}:rl:{name}:"
        # (RL_FAST's grants keep their records in the tat key, after the tat)
        sec, usec, tat, shifts, records = await ac.eval(
            cls._READ, 2, base + "t", base + "s", f"corral:{{{name}}}:g:*"
        )
        assert tat, "the limiter has no tat: nothing to compare against"
        tat, *recent = tat.split()
        records = set(records) | set(recent)
        return cls(int(sec) * 1e6 + int(usec), float(tat), float(shifts or 0), records)

    def charged_since(self, before: _Schedule) -> float:
        """Microseconds of schedule taken between ``before`` and this read, beyond the
        late-return shifts: 0 if nothing was charged. A ``tat`` at or before now means the
        whole burst is free, whatever its value, so both sides are seen as of this read's
        clock (a grant made as of a past ``tat`` and then refunded leaves ``tat`` at its
        instant: the same state)."""
        moved = before.tat + (self.shifts - before.shifts)
        return max(self.tat, self.now) - max(moved, self.now)


def test_async_cancel_at_every_step_charges_nothing(redis_url: str) -> None:
    """Cancel a fleet acquire after 0, 1, 2, ... loop iterations: inside the script call,
    in the queue, as the head, and while it sleeps until its reserved instant. Each time
    Redis must end as it was (or, if the cancel came after the acquire returned, with that
    one grant); and the task must see the cancellation or the grant, never neither.

    "As it was" is read from Redis's own state (``_Schedule``), not from ``available()``:
    the loop's own acquire may resume late on a loaded machine, and its late-return report
    (which rides on the next acquire, the cancelled one) moves the schedule back by design.
    The shift total the scripts keep says how much; the rest would be a charge."""

    async def sweep() -> None:
        async with await _aclient(redis_url) as ac:
            # A reserved sleep: 1 unit per 90 ms, spent: the next acquire is granted as of
            # an instant just ahead (it sleeps until then) or queues.
            probe = corral.redis.RateLimit(ac, "s", 1, per=0.05, burst=1, headroom=0.04)
            outcomes = set()
            for k in range(60):
                await probe.acquire()  # spent: the next acquire waits (sleeps or queues)
                before = await _Schedule.read(ac, "s")
                task = asyncio.create_task(_awaited(probe.acquire()))
                for _ in range(k):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                    outcomes.add("granted")
                    continue  # it completed first: its grant stands
                except asyncio.CancelledError:
                    outcomes.add("cancelled")
                after = await _Schedule.read(ac, "s")
                assert after.charged_since(before) <= 1, k  # (1 us: the doubles' rounding)
                assert after.records <= before.records, k  # no grant of the leaver's stands
                assert await ac.zcard("corral:{s}:rl:s:q") == 0
            assert "cancelled" in outcomes

    asyncio.run(sweep())


def test_cancel_sweep_sees_a_planted_charge(redis_url: str) -> None:
    """The sweep's measure catches a real charge: one unit granted and kept between the two
    reads, made by the same script call that carries a late-return report (as the cancelled
    acquire of a loaded step does). The shift is told apart; the unit is not hidden by it."""

    async def main() -> None:
        async with await _aclient(redis_url) as ac:
            rl = corral.redis.RateLimit(ac, "pl", burst=2, **SLOW)
            await rl.acquire()
            before = await _Schedule.read(ac, "pl")
            keys = [rl._k.epoch, *rl._k.keys()]
            # (the report moves the second unit 5 ms ahead: granted as of then, within the
            # horizon, as a real acquire's would be)
            args = ["planted", "", "e", rl._lease_us, 100_000, rl._k.prefix, 0]
            r = await rl._s["RL_ACQUIRE"](
                keys=keys, args=[*args, rl._k.interval_us, 2, 1, "earlier", 5000]
            )
            assert r[0] == 1  # granted, and never left: a charge
            after = await _Schedule.read(ac, "pl")
            assert after.shifts - before.shifts == 5000  # the report moved tat by 5 ms ...
            unit = pytest.approx(rl._k.interval_us, abs=1)
            assert after.tat - before.tat - 5000 == unit  # ... and the grant took a unit
            assert after.charged_since(before) == unit  # which alone counts as a charge
            assert after.records - before.records == {b"corral:{pl}:g:planted"}
            # The same report without a grant: no charge.
            again = await _Schedule.read(ac, "pl")
            try_args = [*args[:6], 1, rl._k.interval_us, 2, 1, "x", 7]
            assert (await rl._s["RL_ACQUIRE"](keys=keys, args=try_args))[0] == 0
            last = await _Schedule.read(ac, "pl")
            assert last.shifts - again.shifts == 7
            assert last.charged_since(again) == pytest.approx(0, abs=1)

    asyncio.run(main())


def test_async_cancelled_call_keeps_the_late_report_it_carried(redis_url: str) -> None:
    """A late-return report rides on the next acquire's script call. That acquire cancelled
    before its call reached Redis must not lose it (the schedule would then never move back
    for the late return); the next call carries it, and the same report sent twice moves the
    schedule once."""

    async def main() -> None:
        async with await _aclient(redis_url) as ac:
            rl = corral.redis.RateLimit(ac, "lr", 1000, burst=10)
            rl._k.headroom = -0.01  # every return is 10 ms past it: each one leaves a report
            await rl.acquire()
            ((_, (tok, need)),) = rl._reports.items()
            real, reached, gate = rl._s["RL_ACQUIRE"], asyncio.Event(), asyncio.Event()

            async def held(**kw: Any) -> Any:
                reached.set()
                await gate.wait()  # the call has not reached Redis (a connect, a pool wait)
                return await real(**kw)

            rl._s["RL_ACQUIRE"] = held
            task = asyncio.create_task(_awaited(rl.acquire()))
            await reached.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            rl._s["RL_ACQUIRE"] = real
            await rl.acquire()  # carries the report
            assert float(await ac.get("corral:{lr}:rl:lr:s")) == need
            # Sent again (as by a call cancelled after Redis ran it): nothing moves.
            args = ["again", "", "e", rl._lease_us, 0, rl._k.prefix, 1]
            keys = [rl._k.epoch, *rl._k.keys()]
            await real(keys=keys, args=[*args, rl._k.interval_us, 10, 1, tok, need])
            assert float(await ac.get("corral:{lr}:rl:lr:s")) == need

    asyncio.run(main())


def test_threads_failed_call_keeps_the_late_report_it_carried(client: Any) -> None:
    import redis

    rl = corral.threads.redis.RateLimit(client, "lt", 1000, burst=10)
    rl._k.headroom = -0.01  # every return is 10 ms past it: each one leaves a report
    rl.acquire()
    ((_, (_, need)),) = rl._reports.items()
    real = rl._s["RL_ACQUIRE"]

    def broken(**kw: Any) -> Any:
        raise redis.ConnectionError("the call did not reach Redis")

    rl._s["RL_ACQUIRE"] = broken
    with pytest.raises(corral.threads.redis.RedisUnavailable):
        rl.acquire()
    rl._s["RL_ACQUIRE"] = real
    rl.acquire()  # carries the report
    assert float(client.get("corral:{lt}:rl:lt:s")) == need


def test_async_cancel_while_queued_and_as_head(redis_url: str) -> None:
    asyncio.run(_queued_and_head(redis_url))


async def _queued_and_head(redis_url: str) -> None:
    async with await _aclient(redis_url) as ac:
        a = corral.redis.RateLimit(ac, "q", burst=2, **SLOW)
        b = corral.redis.RateLimit(ac, "q", burst=2, **SLOW)
        await a.acquire(2)
        head = asyncio.create_task(_awaited(a.acquire(1)))  # head: due in 1,000 s, sleeping
        behind = asyncio.create_task(_awaited(b.acquire(1)))  # behind it: waiting for a wake-up
        while await ac.zcard("corral:{q}:rl:q:q") < 2:
            await asyncio.sleep(0.01)
        behind.cancel()
        head.cancel()
        for t in (head, behind):
            with pytest.raises(asyncio.CancelledError):
                await t
        assert await ac.zcard("corral:{q}:rl:q:q") == 0
        assert await a.available() == pytest.approx(0, abs=0.01)
        assert a.statistics().waiting == 0


def test_dead_waiter_leaves_the_queue_at_its_lease(client: Any) -> None:
    """A waiter whose process died (it stopped renewing) leaves the queue when its lease
    runs out, and the next waiter is woken then: the queue is not blocked for ever. The dead
    one is a joint waiter (d and a spent d2) at the head of d's queue: never granted."""
    R = corral.threads.redis.RateLimit
    rl = R(client, "d", 1000, burst=1, lease=0.3)
    d2 = R(client, "d2", burst=1, tag="d", **SLOW)
    d2.acquire()
    keys = [rl._k.epoch, *rl._k.keys(), *d2._k.keys()]
    args = ["dead", "", "e", 300_000, 0, rl._k.prefix, 0]
    r = rl._s["RL_ACQUIRE"](
        keys=keys, args=[*args, rl._k.interval_us, 1, 1, d2._k.interval_us, 1, 1]
    )
    assert r[0] == 0  # queued, then never called again
    assert _queued(client, "d") == 1
    t = time.monotonic()
    rl.acquire()  # behind the dead one: granted once its lease ran out
    assert 0.2 < time.monotonic() - t < 3
    assert _queued(client, "d") == 0


# --- Limits ------------------------------------------------------------------------------------


def test_limits_all_or_nothing_and_adjust(client: Any) -> None:
    R = corral.threads.redis.RateLimit
    rpm = R(client, "rpm", burst=1, tag="acct", **SLOW)
    tpm = R(client, "tpm", burst=100, tag="acct", **SLOW)
    lim = corral.threads.redis.Limits(rpm, tpm)
    with lim.acquire({tpm: 30}) as grant:
        assert grant.costs == {rpm: 1, tpm: 30}
        grant.adjust(tpm, 20)
    assert tpm.available() == pytest.approx(80, abs=0.01)
    # rpm is spent: the joint acquire times out holding nothing, tpm untouched.
    with pytest.raises(DeadlineExceeded):
        lim.acquire({tpm: 10}, timeout=0.2)
    assert tpm.available() == pytest.approx(80, abs=0.01)
    assert _queued(client, "tpm", "acct") == 0
    with pytest.raises(ValueError, match="costs names"):
        lim.acquire({R(client, "x", 1, tag="acct"): 1})


def test_limits_never_holds_one_while_waiting_for_another(client: Any) -> None:
    R = corral.threads.redis.RateLimit
    a = R(client, "a", 20, burst=1, tag="t")
    b = R(client, "b", burst=1, tag="t", **SLOW)
    b.acquire()  # spent for 1,000 s
    done = threading.Event()
    ctx = corral.with_cancel(corral.background())
    cancel = ctx.cancel

    def joint() -> None:
        with pytest.raises(Cancelled):
            corral.threads.redis.Limits(a, b).acquire(ctx=ctx)
        done.set()

    t = threading.Thread(target=joint)
    t.start()
    wait_for(lambda: _queued(client, "b", "t") == 1)
    time.sleep(0.1)  # a is long free again; the joint waiter still takes nothing of it
    assert a.available() == pytest.approx(1, abs=0.01)
    cancel()
    t.join(10)
    assert done.is_set()


# --- late returns ----------------------------------------------------------------------------


def test_late_report_moves_the_schedule_by_the_excess_over_the_headroom_only() -> None:
    """A caller that returned 8 ms after its grant's instant (by an estimate of the server's
    clock whose error is at most half the best round trip, 0.2 ms here) was at most 8.1 ms
    late: the grants not yet made move back by what the 5 ms headroom does not cover, 3.1 ms,
    not a millisecond more (each extra millisecond costs the fleet a fifth of a grant at
    200/s)."""
    assert late_shift_us(0.008, 0.0002, 0.005) == 3100
    # Surely within the headroom (at most 4.9 ms late): no report, nothing moved.
    assert late_shift_us(0.0048, 0.0002, 0.005) == 0


def test_late_report_counts_a_slow_round_trip_as_possible_lateness() -> None:
    """A fleet across hosts (2 ms round trip): a caller seen 4.5 ms late may have been 5.5 ms
    late, beyond the 5 ms headroom: it must report, or a window starting at its return may
    hold one return too many."""
    assert late_shift_us(0.0045, 0.002, 0.005) == 500


# --- faults ------------------------------------------------------------------------------------


def test_noscript_is_recovered(client: Any) -> None:
    rl = corral.threads.redis.RateLimit(client, "n", 1000, burst=10)
    rl.acquire()
    client.script_flush()
    rl.acquire()
    assert rl.statistics().acquired == 2


def test_redis_restart_no_burst_after_recovery(own_server: RedisServer | ClusterServer) -> None:
    """Redis restarted empty: the limiter's state (its tat) is gone, and a fresh limiter
    would grant its whole burst again at once. A process that knew the old epoch tells the
    new one, and every limiter starts spent as of the restart. (On a cluster every node
    restarts empty, as a whole cluster without persistence does.)"""
    c = connect(own_server.url, socket_timeout=5)
    try:
        rl = corral.threads.redis.RateLimit(c, "r", 10, per=100.0, burst=10)
        rl.acquire(10)
        own_server.restart()
        # (redis-py reconnects on its own: the broken connection is not an error here)
        assert not rl.try_acquire(1)  # spent as of the restart, not a fresh burst
        assert rl.available() == pytest.approx(0, abs=0.01)
        own_server.stop()
        t = time.monotonic()
        with pytest.raises(corral.threads.redis.RedisUnavailable):
            rl.acquire(1)
        assert time.monotonic() - t < 5
    finally:
        c.close()


def test_stalled_redis_is_a_typed_error_not_a_hang(
    own_server: RedisServer | ClusterServer,
) -> None:
    """Redis stops answering (SIGSTOP: a stalled server, not a closed port): with a socket
    timeout on the client, an acquire (queued or not) raises RedisUnavailable in time. (On a
    cluster every node is stopped: the client cannot route around a stalled whole.)"""
    import os
    import signal

    c = connect(own_server.url, socket_timeout=0.5)
    nodes = own_server.nodes if isinstance(own_server, ClusterServer) else [own_server]
    pids = []
    for node in nodes:
        assert node.proc is not None
        pids.append(node.proc.pid)
    try:
        rl = corral.threads.redis.RateLimit(c, "st", 5, burst=1)
        rl.acquire()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            t = time.monotonic()
            with pytest.raises(corral.threads.redis.RedisUnavailable):
                rl.acquire()
            assert time.monotonic() - t < 10
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
    finally:
        c.close()


# --- rate= on fan_out ----------------------------------------------------------------------------


def test_rate_on_fan_out_both_flavours(client: Any, redis_url: str) -> None:
    rl = corral.threads.redis.RateLimit(client, "fo", 1000, burst=50)
    out = corral.threads.fan_out(lambda x: x * 2, range(20), workers=4, rate=rl).collect()
    assert sorted(out) == [x * 2 for x in range(20)]
    assert rl.statistics().acquired == 20

    async def main() -> list[int]:
        async with await _aclient(redis_url) as ac:
            arl = corral.redis.RateLimit(ac, "fo", 1000, burst=50)

            async def f(x: int) -> int:
                return x + 1

            got = await corral.fan_out(f, range(10), workers=3, rate=arl).collect()
            assert arl.statistics().acquired == 10
            with pytest.raises(TypeError, match="for asyncio tasks, but these workers"):
                corral.threads.fan_out(lambda x: x, range(2), rate=arl).collect()
            return got

    assert sorted(asyncio.run(main())) == list(range(1, 11))
