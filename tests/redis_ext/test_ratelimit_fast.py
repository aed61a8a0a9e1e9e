"""RL_FAST, the lean script of the uncontended single-limiter acquire, against the rules it
copies in line (``# inline of corral._redis.rate_scripts.RL_ACQUIRE``, registered in
tests/inlines/registry.py): RL_ACQUIRE's first call for one limiter (the epoch, the tat,
GCRA's due time and take, the horizon, "nobody queued"), and RL_LEAVE's refund, which
RL_FAST_LEAVE applies to RL_FAST's grants.

Two twin limiters, one driven by the original scripts and one by the copies, go through the
same generated sequences of operations: acquires of costs 0..burst with a horizon of 0 or of
days, another waiter queued and gone, Redis losing the limiter's state (the epoch rule), and
cancelled callers leaving after their grant (the last one, or an older one). After every
step both must agree: granted or not, as of which instant, the epoch reported and recorded,
and the limiter's ``tat``. One unit is 1,000 s of schedule, so a rule that differs shows as
whole units, and the milliseconds between the twins' calls do not.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from corral._redis import rate_scripts

T = 10**9  # us per unit of cost
BURST = 5
LEASE_US = 10_000_000
HORIZONS = (0, 10**12)  # now only; or any instant within ~11 days (as of the future)
SEQUENCES = 60
STEPS = 20


class _Side:
    """One twin: a limiter driven by the original scripts, or by the lean copies."""

    def __init__(self, client: Any, tag: str, lean: bool) -> None:
        self.c = client
        self.lean = lean
        self.pre = f"corral:{{{tag}}}:"
        base = f"{self.pre}rl:n:"
        self.epoch = f"{self.pre}epoch"
        self.tat = base + "t"
        self.keys = [self.epoch, base + "t", base + "q", base + "x", base + "m", base + "s"]
        self.s = {n: client.register_script(getattr(rate_scripts, n)) for n in rate_scripts.__all__}
        self.known = ""
        self.n = 0
        #: (token, cost, granted by RL_FAST) of the grants made, oldest first
        self.granted: list[tuple[str, int, bool]] = []

    def _token(self) -> str:
        self.n += 1
        return f"tok{self.n}"

    def acquire(self, cost: int, horizon: int) -> tuple[Any, ...]:
        """One acquire's first step, as the client makes it: RL_FAST and, if it cannot
        decide, RL_ACQUIRE (or RL_ACQUIRE alone) -> (granted, (instant - now) in units, a
        new epoch reported). A caller left queued leaves at once (RL_LEAVE)."""
        tok = self._token()
        fresh = False
        if self.lean:
            arg = f"{tok} {cost} {self.known} {T!r} {float(BURST)!r} {horizon}"
            r = self.s["RL_FAST"](keys=[self.epoch, self.tat, self.keys[2]], args=[arg])
            if isinstance(r, int):
                r = [1, r, 0, r]
            if r[2] != 0:
                fresh = True
                self.known = _text(r[2])
            if r[0] == 1:
                self.granted.append((tok, cost, True))
                return (True, round((int(r[1]) - int(r[3])) / T, 3), fresh)
            assert r[0] == 2
        args = [tok, self.known, tok, LEASE_US, horizon, self.pre, 0, T, BURST, cost]
        r = self.s["RL_ACQUIRE"](keys=self.keys, args=args)
        fresh = fresh or _text(r[2]) != self.known
        self.known = _text(r[2])
        if r[0] != 1:
            assert self.s["RL_LEAVE"](keys=self.keys, args=[tok, self.pre, T, cost]) in (1, 2)
            return (False, None, fresh)
        self.granted.append((tok, cost, False))
        return (True, round((int(r[1]) - int(r[3])) / T, 3), fresh)

    def leave(self, back: int) -> None:
        """The caller of the grant ``back`` places from the end was cancelled after it: it
        leaves as the client does (RL_FAST_LEAVE for a grant of RL_FAST)."""
        if len(self.granted) < back:
            return
        tok, cost, fast = self.granted.pop(-back)
        if fast:
            self.s["RL_FAST_LEAVE"](keys=[self.tat], args=[tok, T, cost])
        else:
            self.s["RL_LEAVE"](keys=self.keys, args=[tok, self.pre, T, cost])

    def queue_other(self) -> None:
        """Another waiter queued (its lease far ahead: it is not a dead one)."""
        _, _, q, x, m, _ = self.keys
        self.c.zadd(q, {"other": 0})
        self.c.zadd(x, {"other": 2**52})
        self.c.hset(m, "other", "1")

    def unqueue_other(self) -> None:
        _, _, q, x, m, _ = self.keys
        self.c.zrem(q, "other")
        self.c.zrem(x, "other")
        self.c.hdel(m, "other")

    def lose_state(self) -> None:
        """Redis lost everything (this process still knows the old epoch)."""
        self.c.delete(*self.keys)
        self.granted.clear()

    def state(self) -> tuple[Any, ...]:
        sec, usec = self.c.time()
        now = sec * 1_000_000 + usec
        tat = self.c.get(self.tat)
        # (the tat, then the records of RL_FAST's recent grants)
        rel = None if tat is None else round((float(tat.split()[0]) - now) / T, 3)
        # (a tat in the past means the whole burst is free, whatever its value)
        if rel is not None and rel < 0:
            rel = 0.0
        return (rel, self.c.hexists(self.epoch, "rec"))


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@pytest.mark.timeout(120)
def test_the_lean_script_agrees_with_rl_acquire(client: Any) -> None:
    for seed in range(SEQUENCES):
        rnd = random.Random(seed)
        orig = _Side(client, f"fo{seed}", lean=False)
        lean = _Side(client, f"fl{seed}", lean=True)
        trace: list[str] = []
        try:
            for _ in range(STEPS):
                op = rnd.choices(["acquire", "leave", "queue", "lose"], weights=[10, 3, 1, 1], k=1)[
                    0
                ]
                if op == "acquire":
                    cost, horizon = rnd.choice([0, 1, 1, 2, BURST]), rnd.choice(HORIZONS)
                    trace.append(f"acquire({cost}, horizon={horizon})")
                    assert orig.acquire(cost, horizon) == lean.acquire(cost, horizon)
                elif op == "leave":
                    back = rnd.choice([1, 1, 2])
                    trace.append(f"leave(grant -{back})")
                    for side in (orig, lean):
                        side.leave(back)
                elif op == "queue":
                    other = rnd.random() < 0.5
                    trace.append("another waiter queued" if other else "the other waiter left")
                    for side in (orig, lean):
                        side.queue_other() if other else side.unqueue_other()
                else:
                    trace.append("Redis lost the state")
                    for side in (orig, lean):
                        side.lose_state()
                assert orig.state() == lean.state()
                # the tat's expiry too (a second after it passes), up to the time between
                # the twins' calls
                ttl = (orig.c.pttl(orig.tat), lean.c.pttl(lean.tat))
                assert (min(ttl) >= 0 and abs(ttl[0] - ttl[1]) < 500) or ttl == (-2, -2), ttl
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, after {trace}: {exc}") from None


def test_fast_grant_records_survive_another_scripts_write_of_the_tat(client: Any) -> None:
    """RL_FAST's refund records ride in the tat key, after the tat: a write of the tat by
    another script (RL_ADJUST here: a charge, then its refund) keeps them, so the caller of
    the fast grant made before, cancelled, is still charged nothing (RL_LEAVE's rule: the
    tat is the one its grant left)."""
    side = _Side(client, "keep", lean=True)
    assert side.acquire(1, 0) == (True, 0.0, True)
    tok = side.granted[-1][0]
    for delta in (1, -1):
        side.s["RL_ADJUST"](keys=[side.epoch, side.tat], args=[side.known, "x", T, BURST, delta])
    assert side.state()[0] == 1.0
    assert side.s["RL_FAST_LEAVE"](keys=[side.tat], args=[tok, T, 1]) == 2
    assert side.state()[0] == 0.0


# --- the client's fast path ---------------------------------------------------------------------

SLOW = {"rate": 1, "per": 1000.0, "burst": 2}  # one unit per 1,000 s: available() does not drift


class _Interrupted(BaseException):
    """Stands for a cancellation that lands once the script has run (its reply unread)."""


def test_threads_fast_grant_whose_caller_is_interrupted_is_refunded(redis_url: str) -> None:
    import redis

    import corral.threads.redis

    with redis.Redis.from_url(redis_url, socket_timeout=30) as c:
        rl = corral.threads.redis.RateLimit(c, "fi", **SLOW)
        rl.acquire()  # (a grant of its own first: the refund must not undo that one)
        real = c.execute_command

        def interrupted(*args: Any, **kw: Any) -> Any:
            r = real(*args, **kw)
            if args[:2] == ("EVALSHA", rl._fast_sha):
                raise _Interrupted  # granted in Redis, the reply never read
            return r

        c.execute_command = interrupted  # type: ignore[method-assign]
        with pytest.raises(_Interrupted):
            rl.acquire()
        c.execute_command = real  # type: ignore[method-assign]
        assert rl.available() == pytest.approx(1, abs=0.01)
        assert rl.statistics().acquired == 1
        assert len(c.get(rl._k.tat).split()) == 2  # the tat, one record: its own left


def test_async_fast_grant_cancelled_after_the_script_ran_is_refunded(redis_url: str) -> None:
    import redis.asyncio

    import corral.redis

    async def main() -> None:
        async with redis.asyncio.Redis.from_url(redis_url, socket_timeout=30) as ac:
            rl = corral.redis.RateLimit(ac, "fa", **SLOW)
            await rl.acquire()
            real = ac.execute_command

            async def cancelled(*args: Any, **kw: Any) -> Any:
                r = await real(*args, **kw)
                if args[:2] == ("EVALSHA", rl._fast_sha):
                    task = asyncio.current_task()
                    assert task is not None
                    task.cancel()
                    await asyncio.sleep(0)  # the cancellation lands here, the reply unread
                return r

            ac.execute_command = cancelled  # type: ignore[method-assign]
            with pytest.raises(asyncio.CancelledError):
                await asyncio.create_task(_awaited(rl.acquire()))
            ac.execute_command = real  # type: ignore[method-assign]
            assert await rl.available() == pytest.approx(1, abs=0.01)
            assert rl.statistics().acquired == 1

    asyncio.run(main())


async def _awaited(acq: Any) -> Any:
    return await acq


def test_async_noscript_is_recovered_on_the_fast_path(redis_url: str) -> None:
    import redis.asyncio

    import corral.redis

    async def main() -> None:
        async with redis.asyncio.Redis.from_url(redis_url, socket_timeout=30) as ac:
            rl = corral.redis.RateLimit(ac, "fn", 1000, burst=10)
            await rl.acquire()
            await ac.script_flush()
            await rl.acquire()
            assert rl.statistics().acquired == 2

    asyncio.run(main())


def test_a_contended_limiter_skips_the_fast_script_until_granted_at_once_again(
    redis_url: str,
) -> None:
    """After an acquire of a limiter had to queue, its next acquires call RL_ACQUIRE first
    (no RL_FAST round trip that would only send them on), until one is granted at its
    first call: then RL_FAST again."""
    import redis

    import corral.threads.redis
    from corral import DeadlineExceeded

    with redis.Redis.from_url(redis_url, socket_timeout=30) as c:
        rl = corral.threads.redis.RateLimit(c, "fc", 1000, burst=1)
        fast_calls = []
        real = c.execute_command

        def counted(*args: Any, **kw: Any) -> Any:
            if args[:2] == ("EVALSHA", rl._fast_sha):
                fast_calls.append(1)
            return real(*args, **kw)

        c.execute_command = counted  # type: ignore[method-assign]
        rl.acquire()
        assert (rl._fast, len(fast_calls)) == (True, 1)
        _, q, x, m, _ = rl._k.keys()
        # A waiter of a joint acquire heads the queue (alive: its lease is far ahead), so
        # nothing behind it is granted.
        c.zadd(q, {"other": 0})
        c.zadd(x, {"other": 2**52})
        c.hset(m, "other", "1 j")
        with pytest.raises(DeadlineExceeded):
            rl.acquire(timeout=0.2)  # RL_FAST, then RL_ACQUIRE: queued, timed out
        assert (rl._fast, len(fast_calls)) == (False, 2)
        with pytest.raises(DeadlineExceeded):
            rl.acquire(timeout=0.2)  # RL_ACQUIRE at once
        assert (rl._fast, len(fast_calls)) == (False, 2)
        c.delete(q, x, m)
        rl.acquire()  # RL_ACQUIRE, granted at its first call: uncontended again
        assert (rl._fast, len(fast_calls)) == (True, 2)
        rl.acquire()
        assert len(fast_calls) == 3
        c.execute_command = real  # type: ignore[method-assign]
        assert rl.statistics().acquired == 3
