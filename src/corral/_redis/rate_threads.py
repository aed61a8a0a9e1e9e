# GENERATED from src/corral/_redis/rate_aio.py by scripts/unasync_patterns.py.
# Do not edit: change rate_aio.py (or _rt_threads.py) and run the script again.
"""Rate limits shared by every process using one Redis: ``corral.threads.redis.RateLimit`` and
``Limits``, for threads (over ``redis``). The rules are the Lua of ``rate_scripts``;
this shell only waits. Written once, here: ``rate_threads.py`` is generated from this file
by ``scripts/unasync_patterns.py``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import NoScriptError

from .._core.context import Context, _check_timeout
from .._shells import check_ctx
from . import _rt_threads as rt
from . import rate_scripts
from .common import (
    IO_ERRORS,
    check_client,
    check_lease,
    decode,
    intervals,
    new_token,
    size_conflict,
    unavailable,
)
from .grant_threads import Grant
from .rate_common import (
    HORIZON,
    RateKeys,
    RedisRateLimitStatistics,
    ServerClock,
    late_shift_us,
)
from .threads import first_item_granted, replicated_grant
from .threads_semaphore import Semaphore

__all__ = ["Grant", "RateLimit"]

_HORIZON_US = round(HORIZON * 1e6)
#: Which workers ``rate=`` may run this flavour's acquire in: threads.
_TASKS = False


def _sleep(seconds: float, guard: rt.Guard) -> None:
    """Sleep ``seconds`` locally, within the guard's limits (timeout, ctx)."""
    end = guard.now() + seconds
    while (left := end - guard.now()) > 0:
        time.sleep(guard.slice(left))


def _acquire(
    members: list[RateLimit],
    costs: list[float],
    timeout: float | None,
    ctx: Context | None,
    what: str,
    sem: Semaphore | None = None,
    weight: int = 0,
    once: bool = False,
) -> Grant:
    """Queue in Redis until every cost conforms at one instant, then take them all (one
    script call per step; the uncontended case is one call). With ``sem`` (a Limits'
    semaphore), its ``weight`` permits too, in the same script (``LIMITS_ACQUIRE``). ``once``
    (``try_acquire``): granted now, or ``TryFailed`` with no trace left."""
    if ctx is not None:
        check_ctx(ctx, what)
        ctx.raise_if_cancelled()
    first = members[0]
    token = new_token()
    clock = first._clock
    if not clock.samples:
        _calibrate(first, what)
    # One limiter, not queued at its last acquire here, and no late report to carry: the
    # lean script (rate_scripts.RL_FAST) first. It grants, or says to call RL_ACQUIRE (then
    # this limiter's next acquires call RL_ACQUIRE at once, until one is granted at its
    # first call again: a contended limiter pays no second round trip per acquire).
    fast = (
        first._fast
        and len(members) == 1
        and sem is None
        and not once
        and (not first._reports or first._k.solo not in first._reports)
    )
    keys: list[str] = []
    rate_keys: list[str] = []
    tail: list[Any] = []
    key: tuple[str, ...] = ()
    script = first._s["RL_ACQUIRE"]
    every = first._check_every  # (come back at least this often: queue leases)
    fence = 0
    rep = None if sem is None else sem._replicas
    if sem is not None:
        script = first._s["LIMITS_ACQUIRE"]
        every = min(every, intervals(sem._lease_ms)[1])
    guard: rt.Guard | None = None
    queued = False
    mode = 0  # a first call: not queued, not granted yet (the script skips those checks)
    if sem is not None:
        mode = 2  # (the fast path knows no semaphore: a joint acquire always queues)
    horizon = _HORIZON_US
    if once:
        horizon = 0  # granted as of now or not at all
        mode = 1 if sem is None else mode
    # Late reports taken for a call that has not answered yet: given back if it fails (it may
    # not have reached Redis; a report sent twice moves nothing the second time).
    carried: list[Any] = []
    try:
        while True:
            if not fast and not keys:
                keys, tail = [first._k.epoch], []
                for m, c in zip(members, costs, strict=True):
                    keys += m._k.keys()
                    tail += [m._k.interval_us, m._k.burst, c]
                rate_keys = keys  # (RL_LEAVE's)
                if sem is not None:
                    keys = [*keys, *sem._k.keys]
                    tail += [sem._lease_ms, weight, sem._size]
                key = tuple(keys)
            sent = time.time()
            held_from = time.monotonic()  # (a semaphore's lease runs from the request)
            try:
                if fast:
                    r = first._run_fast(token, costs[0])
                else:
                    with first._lock:
                        carried = first._reports.pop(key, [])
                    args = [
                        token,
                        first._epoch,
                        token,  # (a fresh epoch id, if Redis has none)
                        first._lease_us,
                        horizon,
                        first._k.prefix,
                        mode,
                        *tail,
                        *carried,
                    ]
                    if rep is None:
                        r = script(keys=keys, args=args)
                    else:  # a semaphore's replicas=N: the joint grant counts once acknowledged
                        r = replicated_grant(  # (a NotReplicated grant: given back below)
                            first._client, script, keys, args, rep, first_item_granted, what
                        )
            except IO_ERRORS as exc:
                raise unavailable(what, exc) from exc
            carried = []
            if r[0] == -3:
                assert sem is not None
                raise size_conflict(what, sem._size, r[1])
            clock.sample(sent, time.time(), r[3])
            if r[2] != 0:  # (RL_FAST sends the epoch only when it is not the known one)
                epoch = decode(r[2])
                for m in members:
                    m._epoch = epoch
            if r[0] == 1:
                instant = int(r[1])
                now = int(r[3])
                if sem is not None:
                    fence = int(r[4])
                elif mode == 0 and not fast:
                    first._fast = True  # granted at its first call: uncontended again
                break
            if fast:  # RL_FAST could not grant it: RL_ACQUIRE decides (a first call still)
                fast = first._fast = False
                continue
            if once:
                raise TryFailed  # (and leaves the queues: below)
            mode = 2
            guard = guard or rt.Guard(timeout, ctx, what)
            if not queued:
                queued = True
                with first._lock:
                    first._waiting += 1
                if sem is not None:
                    with sem._lock:
                        sem._waiting += 1
            if r[1] >= 0:
                # The head of every queue, due at r[1]: come back within the horizon (then
                # it is granted), or sooner to renew the queue lease.
                # (At least 1 ms: a clock estimate off by more than the horizon must not spin.)
                wait = min(clock.until(r[1]) - HORIZON / 2, every)
                _sleep(max(wait, 0.001), guard)
            elif (got := first._woken(token, guard, every)) is not None:
                instant = got  # granted by another caller's script: no call needed
                now = 0
                break
        # Granted as of the server's "now" (the fast path): return at once. (The estimate
        # of the server's clock is off by up to half a round trip: trusting it here would
        # sleep for that error, a wake-up on a loaded machine, on every uncontended acquire.)
        if instant > now and (wait := clock.until(instant)) > 0:
            # Granted as of an instant just ahead: return then, not before.
            guard = guard or rt.Guard(timeout, ctx, what)
            _sleep(wait, guard)
        # (held from here: the lease and its renewal; before the lateness is measured, which
        # must count what the holding costs, a renewal thread started for one)
        permit = None if sem is None else sem._hold(token, weight, ctx, held_from, fence)
        # Maybe late (by the estimate's error, half its round trip) beyond the headroom?
        # Then the grants not yet made must move back by the excess (see rate_scripts'
        # ``late``); the report rides on this process's next acquire of these limiters, so a
        # late caller pays no round trip for it. (It must reach Redis within about ``per``:
        # a process that stops acquiring right after a late return leaves it unsent.)
        need = late_shift_us(-clock.until(instant), clock.rtt, first._k.headroom)
        if need:
            with first._lock:
                first._reports.setdefault(key or first._k.solo, []).extend((token, need))
                first._late_count += 1
    except BaseException:
        if carried:
            with first._lock:
                first._reports.setdefault(key, []).extend(carried)
        # Leave no trace: out of the queue; a grant made meanwhile is refunded. (Settled: a
        # second cancellation must not cut it short and leave an entry at a queue's head.)
        if fast:  # (RL_FAST never queues: only its grant, if it made one, to undo)
            rt.settle(_leave_fast(first, token, costs[0]))
        elif keys:
            rt.settle(_leave(first, rate_keys, token, members, costs, sem))
        raise
    finally:
        if queued:
            with first._lock:
                first._waiting -= 1
            if sem is not None:
                with sem._lock:
                    sem._waiting -= 1
    for m, c in zip(members, costs, strict=True):
        with m._lock:
            m._acquired += 1
            m._granted += c
    return Grant(members, costs, permit)


class TryFailed(Exception):
    """A ``try_acquire`` that could not be granted at once (internal)."""


def _calibrate(limiter: RateLimit, what: str) -> None:
    """``TIME`` calls before the first acquire, until one round trip is under a millisecond
    (at most eight): the estimate of the server's clock is as good as the best of them.
    (The first script call, which also loads the script, is a poor sample; a caller that
    trusts a poor estimate returns early or late by its error.)"""
    for i in range(8):
        if i >= 2 and limiter._clock.rtt < 0.001:
            return
        sent = time.time()
        try:
            sec, usec = limiter._client.time()
        except IO_ERRORS as exc:
            raise unavailable(what, exc) from exc
        limiter._clock.sample(sent, time.time(), sec * 1_000_000 + usec)


def _leave(
    first: RateLimit,
    keys: list[str],
    token: str,
    members: list[RateLimit],
    costs: list[float],
    sem: Semaphore | None,
) -> Any:
    """An acquire gives up: out of every queue (waking the next heads), a grant made
    meanwhile refunded; and out of the semaphore's queue, or its permits given back.
    -> RL_LEAVE's answer, or None when Redis could not be reached (the queue leases end the
    entries)."""
    out = None
    with contextlib.suppress(*IO_ERRORS):
        out = first._s["RL_LEAVE"](
            keys=keys, args=[token, first._k.prefix, *_leave_args(members, costs)]
        )
    if sem is not None:
        sem._withdraw(token)
    return out


def _leave_fast(first: RateLimit, token: str, cost: float) -> Any:
    """An acquire whose only call was RL_FAST gives up: RL_FAST never queues, so only its
    grant, if it made one, is undone (RL_FAST_LEAVE; RL_LEAVE's refund rule). -> its answer,
    or None when Redis could not be reached."""
    k = first._k
    out = None
    with contextlib.suppress(*IO_ERRORS):
        out = first._s["RL_FAST_LEAVE"](keys=[k.tat], args=[token, k.interval_us, cost])
    return out


def _leave_args(members: list[RateLimit], costs: list[float]) -> list[Any]:
    out: list[Any] = []
    for m, c in zip(members, costs, strict=True):
        out += [m._k.interval_us, c]
    return out


class RateLimit:
    """RateLimit(client, name, rate, per=1.0, burst=None, *, tag=None, namespace="corral",
    lease=10.0, headroom=0.005): ``rate`` units of cost per ``per`` seconds, shared by
    every process using ``name`` on one Redis (or Redis Cluster).

    GCRA, decided in one Lua script per state change on the server's clock: one timestamp
    of state, weighted costs, ``burst`` (default 1) the most cost granted at one instant
    and the largest single cost (a larger one is a ``ValueError`` at once). Waiters queue
    in Redis, strictly FIFO across processes, and a large cost at the head is never
    overtaken by small ones. A waiter is told how long to wait, and woken by a message
    when it reaches the head (never a polling loop); a cancelled or timed-out acquire
    leaves the queue and is charged nothing. A waiter whose process died leaves the queue
    when its ``lease`` (renewed three times per lease while it waits) runs out.

    The promise holds where your code runs: with unit costs, no window of ``per``
    seconds sees more than ``rate`` returns from ``acquire`` across the fleet, as long as
    the jitter of the callers' wake-ups stays under ``headroom`` (the limiter grants
    ``rate`` per ``per + headroom`` seconds: 0.5 % below ``rate`` at the defaults).

    ``acquire`` returns a :class:`Grant` (``grant.adjust(rl, actual)`` corrects the cost).
    Every process must pass the same ``rate``, ``per``, ``burst`` and ``headroom`` for a
    name. The keys share the hash tag ``tag`` (default: the name); limiters combined in
    one :class:`Limits` need one tag.

    >>> import corral.threads.redis, redis
    >>> def main(url):  # doctest: +SKIP
    ...     with redis.Redis.from_url(url) as client:
    ...         rl = corral.threads.redis.RateLimit(client, "api", 200, per=1.0)
    ...         with rl.acquire():
    ...             ...  # at most 200 of these per second, fleet-wide
    """

    __slots__ = (
        "__weakref__",
        "_acquired",
        "_blpop_cap",
        "_check_every",
        "_client",
        "_clock",
        "_epoch",
        "_fast",
        "_fast_arg",
        "_fast_consts",
        "_fast_keys",
        "_fast_sha",
        "_granted",
        "_k",
        "_late_count",
        "_lease_us",
        "_lock",
        "_reports",
        "_s",
        "_waiting",
    )

    def __init__(
        self,
        client: Any,
        name: str,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
        *,
        tag: str | None = None,
        namespace: str = "corral",
        lease: float = 10.0,
        headroom: float = 0.005,
    ) -> None:
        what = "redis.RateLimit"
        check_client(client, what, binary=False, asyncio=rt.ASYNC)
        self._k = RateKeys(name, rate, per, burst, namespace, tag, headroom, what)
        lease_ms = check_lease(lease, what)
        self._lease_us = lease_ms * 1000
        _, self._check_every = intervals(lease_ms)
        # A BLPOP must end before the client's socket timeout would cut it.
        # (redis-py 7 moves a from_url default of 5 s to "orig_socket_timeout")
        kw = client.get_connection_kwargs()
        sock = kw.get("socket_timeout") or kw.get("orig_socket_timeout")
        self._blpop_cap = self._check_every if not sock else min(self._check_every, sock / 2)
        self._client = client
        self._s = {
            n: client.register_script(getattr(rate_scripts, n))
            for n in (
                "RL_ACQUIRE",
                "RL_LEAVE",
                "RL_ADJUST",
                "RL_STATE",
                "RL_FAST",
                "RL_FAST_LEAVE",
                "LIMITS_ACQUIRE",
            )
        }
        # RL_FAST's constant arguments, encoded once as redis-py would encode them (its own
        # encoder: the keys' bytes must be the other scripts'); see ``_run_fast``.
        k, enc = self._k, client.get_encoder()
        self._fast_sha = enc.encode(self._s["RL_FAST"].sha)
        self._fast_keys = tuple(enc.encode(x) for x in (k.epoch, k.tat, k.keys()[1]))
        consts = (k.interval_us, k.burst, _HORIZON_US)
        self._fast_consts = " ".join(repr(x) for x in consts)
        #: (the known epoch, the end of RL_FAST's argument made with it): one attribute,
        #: read and replaced whole, so a thread never pairs one epoch with another's end.
        self._fast_arg: tuple[str, str] = ("", f"  {self._fast_consts}")  # (known: '')
        #: RL_FAST first (see ``_acquire``): false while this limiter is contended here.
        self._fast = True
        self._epoch = ""
        self._clock = ServerClock()
        self._late_count = 0
        #: Late reports waiting for the next acquire: key set -> [token, need_us, ...].
        self._reports: dict[tuple[str, ...], list[Any]] = {}
        self._lock = rt.Lock()
        self._waiting = self._acquired = 0
        self._granted: float = 0

    @property
    def rate(self) -> float:
        """Units of cost granted per ``per`` seconds, sustained."""
        return self._k.rate

    @property
    def per(self) -> float:
        """The period ``rate`` is counted over, in seconds."""
        return self._k.per

    @property
    def burst(self) -> float:
        """The most cost granted at one instant, and the largest cost one acquire may ask."""
        return self._k.burst

    def acquire(
        self, cost: float = 1, *, timeout: float | None = None, ctx: Context | None = None
    ) -> Grant:
        """Wait (FIFO, across processes) until ``cost`` conforms, then take it.

        ``await`` it for a :class:`Grant`, or use it with ``with``.
        ``ValueError`` at once if ``cost`` exceeds the burst; ``DeadlineExceeded`` after
        ``timeout``; ``Cancelled`` when ``ctx`` is done; ``RedisUnavailable`` if Redis
        fails. A cancelled or timed-out acquire costs nothing.
        """
        what = "redis.RateLimit.acquire"
        c = self._k.cost(cost, what)
        if timeout is not None:
            _check_timeout(timeout)
        return rt.acquiring(_acquire, [self], [c], timeout, ctx, what)

    def try_acquire(self, cost: float = 1) -> bool:
        """Take ``cost`` now if it conforms *and nobody is queued*; never waits."""
        what = "redis.RateLimit.try_acquire"
        c = self._k.cost(cost, what)
        args = [new_token(), self._epoch, new_token(), self._lease_us, 0, self._k.prefix, 1]
        try:
            r = self._s["RL_ACQUIRE"](
                keys=[self._k.epoch, *self._k.keys()],
                args=[*args, self._k.interval_us, self._k.burst, c],
            )
        except IO_ERRORS as exc:
            raise unavailable(what, exc) from exc
        self._epoch = decode(r[2])
        if r[0] != 1:
            return False
        with self._lock:
            self._acquired += 1
            self._granted += c
        return True

    def statistics(self) -> RedisRateLimitStatistics:
        """This process's :class:`RedisRateLimitStatistics` (no I/O)."""
        with self._lock:
            k = self._k
            return RedisRateLimitStatistics(
                k.rate,
                k.per,
                k.burst,
                self._waiting,
                self._acquired,
                self._granted,
                self._late_count,
            )

    def available(self) -> float:
        """The cost that could be granted now, from Redis (negative: in debt)."""
        k = self._k
        try:
            r = self._s["RL_STATE"](keys=[k.epoch, *k.keys()[:2]], args=[k.interval_us, k.burst])
        except IO_ERRORS as exc:
            raise unavailable("redis.RateLimit.available", exc) from exc
        return round(k.burst - int(r[0]) / k.interval_us, 6)

    # -- the work ------------------------------------------------------------------------

    def _run_fast(self, token: str, cost: float) -> Any:
        """RL_FAST for one acquire of ``cost``, through redis-py's cheapest path that keeps
        its pool (checkout, health check, retries, release): ``execute_command`` itself,
        the constant parts encoded once, one argument (``token cost known T_us burst
        horizon_us``: each argument costs redis-py's packing more than a concatenation
        here or a split in the script). ``NOSCRIPT`` (Redis restarted, or its scripts
        flushed) loads it and runs it again."""

        known, end = self._fast_arg
        if known != self._epoch:
            known = self._epoch
            end = f" {known} {self._fast_consts}"
            self._fast_arg = (known, end)
        args = (f"{token} {cost!r}{end}",)
        try:
            # (the command name stays a str: a cluster client routes by it; the number of
            # keys may be bytes: it reads it with int())
            r = self._client.execute_command(
                "EVALSHA", self._fast_sha, b"3", *self._fast_keys, *args
            )
        except NoScriptError:
            r = self._s["RL_FAST"](keys=self._fast_keys, args=args)
        if r.__class__ is int:
            return (1, r, 0, r)  # granted as of now, the epoch known: its short reply
        return r

    def _woken(self, token: str, guard: rt.Guard, every: float) -> int | None:
        """Wait for this waiter's wake-up message, at most ``every`` (until its lease needs
        renewing): the instant it was granted as of, or None (call the script again)."""
        t = min(guard.slice(every), self._blpop_cap)
        try:
            got = self._client.blpop([f"{self._k.prefix}w:{token}"], timeout=max(t, 0.01))
        except IO_ERRORS as exc:
            raise unavailable("redis.RateLimit.acquire", exc) from exc
        if got is None or got[1] in (b"h", "h"):
            return None
        return int(float(got[1]))

    def _adjust(self, delta: float) -> None:
        k = self._k
        try:
            r = self._s["RL_ADJUST"](
                keys=[k.epoch, k.tat],
                args=[self._epoch, new_token(), k.interval_us, k.burst, delta],
            )
        except IO_ERRORS as exc:
            raise unavailable("redis.Grant.adjust", exc) from exc
        self._epoch = decode(r[1])
        with self._lock:
            self._granted += delta

    def _corral_rate_wrap(
        self, call: Callable[[Any], Any], cost: Callable[[Any], Any] | None, task: bool, ctx: Any
    ) -> Callable[[Any], Any]:
        """``rate=`` on ``fan_out``/``stage`` (see ``_patterns/_rate.py``)."""
        return _wrap(self, call, cost, task, ctx)

    def __repr__(self) -> str:
        k = self._k
        return f"<corral.threads.redis.RateLimit {k.tat[:-2]!r} {k.rate}/{k.per}s burst={k.burst}>"


def _wrap(
    limiter: Any,  # a RateLimit or a Limits
    call: Callable[[Any], Any],
    cost: Callable[[Any], Any] | None,
    task: bool,
    ctx: Any,
) -> Callable[[Any], Any]:
    if task != _TASKS:
        raise TypeError(
            f"rate={limiter!r} is for {'asyncio tasks' if _TASKS else 'threads'}, but these "
            f"workers are {'tasks' if task else 'threads'}: pass the limiter of the other "
            "flavour (the asyncio one for tasks, the thread one for threads)"
        )

    def limited(item: Any) -> Any:
        # (held through the call: a Limits' semaphore permits are given back after it)
        # (no cost given: the limiter's default, a cost of 1 from every member)
        acq = limiter.acquire(ctx=ctx) if cost is None else limiter.acquire(cost(item), ctx=ctx)
        with acq:
            return call(item)

    return limited
