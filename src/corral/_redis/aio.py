"""``corral.redis``: SingleFlight and the weighted Semaphore shared through Redis,
for asyncio (over ``redis.asyncio``). The scripts are ``scripts``'s and the I/O-free rules
``common``'s; this shell only waits for them. What truly differs between the flavours
(running ``fn``, renewing leases, a wait's limits) is in ``_rt_aio`` / ``_rt_threads``:
``threads.py`` is generated from ``aio.py`` by ``scripts/unasync_patterns.py``."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from redis.exceptions import ResponseError

from .._aio.singleflight import SingleFlight as LocalSingleFlight
from .._core.context import Context, _check_timeout
from .._core.semaphore import SemaphoreStatistics, check_weight
from .._core.singleflight import CURRENT_FLIGHT, SingleFlightBase
from .._shells import check_ctx
from . import _rt_aio as rt
from . import scripts
from .common import (
    ABANDONED,
    CURRENT_FENCE,
    IO_ERRORS,
    PICKLE,
    Counter,
    LeaseContext,
    LeaseLost,
    RedisSemaphoreStatistics,
    RedisSingleFlightStatistics,
    RemoteError,
    SemKeys,
    Serializer,
    SFKeys,
    check_client,
    check_lease,
    check_namespace,
    check_semaphore,
    check_serializer,
    decode,
    dump_outcome,
    granted_in,
    intervals,
    load_outcome,
    lost_holder,
    lost_leader,
    new_lease,
    new_token,
    redis_key,
    server_error,
    size_conflict,
    state_lost,
    unavailable,
)
from .common import translated as _translated

__all__ = ["Permit", "Semaphore", "SingleFlight"]

#: The largest outcome ``share_for=`` keeps by default (bytes, serialized).
SHARE_MAX_BYTES = 1 << 20


def _check_on_lost(on_lost: object, what: str) -> None:
    if on_lost is not None and not callable(on_lost):
        raise TypeError(f"{what}: on_lost must be callable or None, got {type(on_lost).__name__}")


def _check_share(share_for: object, share_max_bytes: object, what: str) -> int:
    """``share_for`` seconds -> ms (0: off)."""
    if isinstance(share_for, bool) or not isinstance(share_for, int | float):
        raise TypeError(f"{what}: share_for must be a number of seconds, got {share_for!r}")
    if not (math.isfinite(share_for) and 0 <= share_for <= 86400):
        raise ValueError(f"{what}: share_for must be in [0, 86400] seconds, got {share_for!r}")
    if isinstance(share_max_bytes, bool) or not isinstance(share_max_bytes, int):
        raise TypeError(f"{what}: share_max_bytes must be an int, got {share_max_bytes!r}")
    if share_max_bytes < 0:
        raise ValueError(f"{what}: share_max_bytes must be >= 0, got {share_max_bytes!r}")
    return round(share_for * 1000)


async def _next_message(pubsub: Any, wait: float, guard: rt.Guard) -> Any:
    """The next published message within ``wait`` seconds, else None (subscribe
    confirmations are skipped without ending the wait)."""
    end = guard.now() + wait
    while (left := end - guard.now()) > 0:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=guard.slice(left))
        if msg is not None:
            return msg
    return None


class SingleFlight:
    """SingleFlight(client, *, namespace="corral", lease=10.0, serializer=pickle, ctx=None,
    share_for=0.0, share_max_bytes=1 MiB, on_lost=None): one execution per key across every
    process sharing a Redis.

    ``await sf.do(key, fn, *args)`` returns ``fn(*args)``. Callers in this process are first
    deduplicated in memory (a ``corral.SingleFlight``), so each process makes one flight per
    key; the flights of all processes then meet in Redis: the first takes the key's lease
    (``SET NX PX``) and runs ``fn``, renewing the lease three times per ``lease`` seconds;
    the others subscribe and get its value (serialized with ``serializer``, pickle by
    default) or its exception. If the leader dies, its lease runs out and a follower takes
    the call over, within 1.5 leases. A leader whose lease was lost (it stalled, Redis
    restarted) reports ``LeaseLost`` rather than a value another process may also compute;
    a Redis that cannot be reached, or that lost its state mid-call, is ``RedisUnavailable``.

    **Leases.** The leader's ``current_context()`` is cancelled with a ``LeaseLost`` cause
    the moment its lease is known or must be assumed lost (see docs/redis.md), and
    ``current_fence()`` is its fencing token, strictly increasing per namespace: pass it to
    the resource ``fn`` writes (``UPDATE ... WHERE fence < ?``) so a stale leader's write is
    refused. ``on_lost(error)`` is called (from any thread) for each lost leadership.

    **share_for=** seconds keeps a finished call's outcome (value or exception) joinable
    that long, so callers of the same burst that reach Redis after the call ended get it
    instead of running it again. Outcomes over ``share_max_bytes`` (serialized) are not
    kept: those late callers run the call again (counted in ``statistics().not_kept``).

    Keys are ``str`` (an ``int`` is its digits). ``timeout=`` and ``ctx=`` make one caller
    leave, as with ``corral.SingleFlight``; when every caller in this process left, the
    process's flight stops (its ``current_context()`` is cancelled):
    a leader gives the lease up at once, so a follower elsewhere takes over.

    >>> import asyncio, corral.redis, redis.asyncio
    >>> async def main(url):  # doctest: +SKIP
    ...     async with redis.asyncio.Redis.from_url(url) as client:
    ...         sf = corral.redis.SingleFlight(client, namespace="users")
    ...         return await sf.do(7, load_user, 7)
    """

    __slots__ = (
        "_client",
        "_count_lock",
        "_followed",
        "_lease_ms",
        "_led",
        "_local",
        "_lost",
        "_not_kept",
        "_ns",
        "_on_lost",
        "_s",
        "_serializer",
        "_share_max",
        "_share_ms",
        "_shared_late",
        "_takeovers",
    )

    def __init__(
        self,
        client: Any,
        *,
        namespace: str = "corral",
        lease: float = 10.0,
        serializer: Serializer = PICKLE,
        ctx: Context | None = None,
        share_for: float = 0.0,
        share_max_bytes: int = SHARE_MAX_BYTES,
        on_lost: Callable[[LeaseLost], object] | None = None,
    ) -> None:
        what = "redis.SingleFlight"
        check_client(client, what, binary=True, asyncio=rt.ASYNC)
        check_serializer(serializer, what)
        _check_on_lost(on_lost, what)
        self._ns = check_namespace(namespace, what)
        self._lease_ms = check_lease(lease, what)
        self._share_ms = _check_share(share_for, share_max_bytes, what)
        self._share_max = share_max_bytes
        self._on_lost = on_lost
        self._lost = Counter()
        self._shared_late = self._not_kept = 0
        self._serializer = serializer
        self._client = client
        self._local: LocalSingleFlight[str, Any] = LocalSingleFlight(ctx)
        self._s = {
            name: client.register_script(getattr(scripts, name))
            for name in ("SF_JOIN", "SF_RENEW", "SF_FINISH", "SF_ABANDON", "SF_CHECK")
        }
        self._led = self._followed = self._takeovers = 0
        self._count_lock = rt.Lock()  # (threads: flights of different keys run in parallel)

    async def do(
        self,
        key: str | int,
        fn: Callable[..., Any],
        /,
        *args: Any,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> Any:
        """Return ``fn(*args)``, computed once for every concurrent caller of ``key`` in
        every process; ``timeout=`` / ``ctx=`` make this caller leave (not the call).
        An ``async def`` fn is awaited; a plain function runs in a worker thread."""
        k = redis_key(key, "redis.SingleFlight.do")
        if not callable(fn):
            raise TypeError(f"redis.SingleFlight.do: fn must be callable, got {type(fn).__name__}")
        return await self._local.do(k, self._flight, k, fn, args, timeout=timeout, ctx=ctx)

    def statistics(self) -> RedisSingleFlightStatistics:
        """This process's :class:`RedisSingleFlightStatistics`."""
        s = self._local.statistics()
        return RedisSingleFlightStatistics(
            s.in_flight,
            s.waiters,
            s.started,
            s.joined,
            self._led,
            self._followed,
            self._takeovers,
            self._lost.value,
            self._shared_late,
            self._not_kept,
        )

    current_context = staticmethod(SingleFlightBase.current_context)

    @staticmethod
    def current_fence() -> int | None:
        """The fencing token of the leadership running this code (in ``fn``), else None.

        Strictly increasing per namespace, across leaders, processes and Redis restarts:
        a write guarded by it (``UPDATE ... SET ..., fence = ? WHERE fence < ?``) refuses
        a leader that lost its lease and was overtaken."""
        return CURRENT_FENCE.get()

    # -- one flight of this process ------------------------------------------------------

    async def _flight(self, k: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        keys = SFKeys(self._ns, k)
        dead: list[str] = []  # flights followed here whose leaders died
        while True:
            token = new_token()
            sent = time.monotonic()
            with _translated("redis.SingleFlight.do"):
                r = await self._s["SF_JOIN"](
                    keys=[keys.lease, keys.epoch, keys.done, *map(keys.result, dead)],
                    args=[token, self._lease_ms],
                )
            epoch = decode(r[2])
            if r[0] == 2:
                with self._count_lock:
                    self._followed += 1
                    self._shared_late += not dead
                return load_outcome(self._serializer, bytes(r[1]))
            if r[0] == 1:
                with self._count_lock:
                    self._led += 1
                    self._takeovers += bool(dead)
                return await self._lead(k, keys, token, int(r[3]), sent, fn, args, dead)
            leader = decode(r[1])
            data = await self._follow(k, keys, leader, epoch)
            if data is not None:
                with self._count_lock:
                    self._followed += 1
                return load_outcome(self._serializer, data)
            dead.append(leader)

    async def _lead(
        self,
        k: str,
        keys: SFKeys,
        token: str,
        fence: int,
        sent: float,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        dead: list[str],
    ) -> Any:
        lease_ms = self._lease_ms
        renew = self._s["SF_RENEW"]
        every, _ = intervals(lease_ms)
        # The leadership's Context: a child of the local flight's (cancelled when every
        # caller here left), cancelled with LeaseLost when the lease is gone.
        lease = new_lease(
            SingleFlightBase.current_context(), lease_ms, sent, fence, self._lease_lost
        )

        async def tick() -> bool:
            lease.arm()
            sent = time.monotonic()
            ok = bool(await renew(keys=[keys.lease], args=[token, lease_ms]))
            if ok:
                lease.renewed(sent)
            else:
                lease.lose(f"SingleFlight key {k!r}: the renewal found the lease not ours")
            return ok

        renewer = rt.Renewer(every, tick, f"corral-redis-lease-{k}")
        flight, fenced = CURRENT_FLIGHT.set(lease), CURRENT_FENCE.set(fence)
        try:
            try:
                value = await rt.call(fn, args, lease)
            finally:
                CURRENT_FLIGHT.reset(flight)
                CURRENT_FENCE.reset(fenced)
                await renewer.stop()
        except Exception as exc:
            error: Exception | None = exc
            value = None
        except BaseException:
            # Cancelled (every local caller left) or interrupted: nobody here wants the
            # value; free the key now so a follower elsewhere takes over without waiting.
            lease.end()
            await self._abandon(keys, token)
            raise
        else:
            error = None
        if lease.lost():
            # Whatever fn made after its lease was gone is not reported as the shared
            # result: the followers take over (the key is freed if it is still ours).
            await self._abandon(keys, token)
            raise lost_leader(k) from error
        try:
            outcome = dump_outcome(self._serializer, value, error)
        except Exception as exc:  # the value cannot be serialized: followers get told so
            outcome = dump_outcome(self._serializer, None, RemoteError(repr(exc)))
        share_ms = self._share_ms
        if share_ms and len(outcome) > self._share_max:
            share_ms = 0  # too big to keep: late arrivals run the call again
            with self._count_lock:
                self._not_kept += 1
        try:
            with _translated("redis.SingleFlight.do"):
                ok = await self._s["SF_FINISH"](
                    keys=[keys.lease, keys.result(token), keys.done, *map(keys.result, dead)],
                    args=[token, outcome, 2 * lease_ms, keys.channel(token), share_ms],
                )
        except BaseException:
            lease.end()
            await self._abandon(keys, token)  # cancelled before the finish ran, perhaps
            raise
        if not ok:
            lease.lose(f"SingleFlight key {k!r}: the finish found the lease not ours")
            raise lost_leader(k) from error
        lease.end()
        if error is not None:
            raise error
        return value

    async def _abandon(self, keys: SFKeys, token: str) -> None:
        with contextlib.suppress(*IO_ERRORS):
            ch = keys.channel(token)
            await rt.settle(self._s["SF_ABANDON"](keys=[keys.lease], args=[token, ch, ABANDONED]))

    def _lease_lost(self, error: LeaseLost) -> None:
        self._lost.add()
        if self._on_lost is not None:
            self._on_lost(error)

    async def _follow(self, k: str, keys: SFKeys, token: str, epoch: str) -> bytes | None:
        """Wait for the flight ``token``: its outcome, or None if its leader is gone."""
        _, check_every = intervals(self._lease_ms)
        guard = rt.Guard(None, rt.flight_context(), "redis.SingleFlight.do")
        pubsub = self._client.pubsub()
        try:
            with _translated("redis.SingleFlight.do"):
                await pubsub.subscribe(keys.channel(token))
                while True:
                    # Subscribed first, then checked: an outcome published in between is
                    # in the result key; a dead leader shows as a missing lease.
                    r = await self._s["SF_CHECK"](
                        keys=[keys.lease, keys.result(token), keys.epoch], args=[token, epoch]
                    )
                    if r[0] == 2:
                        return bytes(r[1])
                    if r[0] == -1:
                        raise state_lost(k)
                    if r[0] == 0:
                        return None
                    msg = await _next_message(pubsub, check_every, guard)
                    if msg is not None and msg.get("type") == "message":
                        data = bytes(msg["data"])
                        return None if data == ABANDONED else data
        finally:
            with contextlib.suppress(*IO_ERRORS):
                await pubsub.aclose()

    def __repr__(self) -> str:
        return f"<corral.redis.SingleFlight namespace={self._ns!r}>"


class Permit:
    """Permits held from a ``corral.redis.Semaphore``; ``async with`` releases them.

    ``ctx`` is cancelled with a ``LeaseLost`` cause as soon as the lease is known or must be
    assumed lost (pass ``ctx=permit.ctx`` to the calls made under the permit), and with no
    cause at release. ``fence`` is the grant's fencing token, strictly increasing per
    semaphore name: hand it to the protected resource, which refuses a smaller one."""

    __slots__ = ("_ctx", "_n", "_sem", "_token")

    def __init__(self, sem: Semaphore, token: str, n: int, ctx: LeaseContext) -> None:
        self._sem = sem
        self._token = token
        self._n = n
        self._ctx = ctx

    @property
    def n(self) -> int:
        """How many permits."""
        return self._n

    @property
    def ctx(self) -> Context:
        """Cancelled (cause ``LeaseLost``) when the lease is lost; done at release."""
        return self._ctx

    @property
    def fence(self) -> int:
        """This grant's fencing token."""
        return self._ctx.fence

    async def release(self) -> None:
        """Give the permits back; ``LeaseLost`` if their lease was lost first."""
        await self._sem._release(self._token, self._n)

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()

    def __repr__(self) -> str:
        return f"<corral.redis.Permit n={self._n} fence={self.fence}>"


class Semaphore:
    """Semaphore(client, name, size, *, lease=10.0, on_lost=None): Go's weighted semaphore
    shared by every process using ``name`` on one Redis; strictly FIFO across processes.

    ``async with sem.acquire(n) as permit:`` holds ``n`` of the ``size`` permits. Requests
    are served in arrival order, and a large one at the head holds back smaller ones behind
    it, so it is never starved. Held permits are under a lease renewed three times per
    ``lease`` seconds by this process: if the process dies, its permits come back when the
    lease runs out. A holder that loses its lease (a renewal refused, or none succeeded
    for 80 % of the lease) has ``permit.ctx`` cancelled with a ``LeaseLost`` cause before
    anyone else can be granted its permits; ``on_lost(error)`` is called (from any thread).
    Each grant carries a fencing token, ``permit.fence``. After Redis lost its state (a
    restart, a flush, a failover: a new epoch), nothing is granted for one lease. An
    acquire that times out (``timeout=``), is cancelled or whose ``ctx`` is done leaves the
    queue at once (or, if granted meanwhile, gives the permits straight back). The fast
    path (permits free, nobody queued) is one script call, one round trip.

    Every process must pass the same ``size`` for a name (``SizeConflict`` otherwise); the
    keys disappear when nothing is held or queued (but one small epoch hash per name).

    >>> import corral.redis, redis.asyncio
    >>> async def main(url):  # doctest: +SKIP
    ...     async with redis.asyncio.Redis.from_url(url) as client:
    ...         sem = corral.redis.Semaphore(client, "db-connections", 8)
    ...         async with sem.acquire(2) as permit:
    ...             ...  # at most 8 permits held across every process; ctx=permit.ctx
    """

    __slots__ = (
        "_acquired",
        "_client",
        "_held",
        "_k",
        "_lease_ms",
        "_lock",
        "_lost_count",
        "_on_lost",
        "_renewal",
        "_s",
        "_size",
        "_waiting",
    )

    def __init__(
        self,
        client: Any,
        name: str,
        size: int,
        *,
        lease: float = 10.0,
        on_lost: Callable[[LeaseLost], object] | None = None,
    ) -> None:
        what = "redis.Semaphore"
        check_client(client, what, binary=False, asyncio=rt.ASYNC)
        _check_on_lost(on_lost, what)
        self._size = check_semaphore(size, what)
        self._k = SemKeys(check_namespace(name, what, "name"))
        self._lease_ms = check_lease(lease, what)
        self._client = client
        self._on_lost = on_lost
        self._s = {
            name: client.register_script(getattr(scripts, name))
            for name in ("SEM_ACQUIRE", "SEM_TOUCH", "SEM_RELEASE", "SEM_STATE")
        }
        self._lock = rt.Lock()
        self._held: dict[str, Permit] = {}
        # Renewals run only while this object holds permits; nothing is left running after.
        every, _ = intervals(self._lease_ms)
        self._renewal = rt.Ticker(
            every, self._renew, lambda: bool(self._held), "corral-redis-semaphore"
        )
        self._waiting = self._acquired = 0
        self._lost_count = Counter()

    @property
    def size(self) -> int:
        """The number of permits every process using this name shares."""
        return self._size

    def acquire(
        self, n: int = 1, *, timeout: float | None = None, ctx: Context | None = None
    ) -> rt.Acquire[Permit]:
        """Acquire ``n`` permits in FIFO order (across processes).

        ``await`` it for a :class:`Permit`, or use it with ``async with``.
        ``ValueError`` if ``n`` exceeds the size; ``DeadlineExceeded`` after ``timeout``;
        ``Cancelled`` when ``ctx`` is done. The permit's ``ctx`` is a child of ``ctx``."""
        n = check_weight(n, self._size, "redis.Semaphore.acquire")
        if timeout is not None:
            _check_timeout(timeout)
        return rt.acquiring(self._acquire, n, timeout, ctx)

    async def release(self, n: int = 1) -> None:
        """Release one held :class:`Permit` of ``n`` permits taken through this object."""
        with self._lock:
            token = next((t for t, p in self._held.items() if p.n == n), None)
        if token is None:
            raise ValueError(f"redis.Semaphore.release: no permit of n={n} is held here")
        await self._release(token, n)

    def statistics(self) -> RedisSemaphoreStatistics:
        """This process's :class:`RedisSemaphoreStatistics` (no I/O)."""
        with self._lock:
            held = sum(p.n for p in self._held.values())
            return RedisSemaphoreStatistics(
                self._size, held, self._waiting, self._acquired, self._lost_count.value
            )

    async def server_statistics(self) -> SemaphoreStatistics:
        """Every process's view, from Redis: size, held, waiting, waiting_weight."""
        with _translated("redis.Semaphore.server_statistics"):
            r = await self._s["SEM_STATE"](keys=self._k.keys, args=[self._lease_ms])
        return SemaphoreStatistics(int(r[0]) or self._size, int(r[1]), int(r[2]), int(r[3]))

    # -- the work ------------------------------------------------------------------------

    async def _acquire(self, n: int, timeout: float | None, ctx: Context | None) -> Permit:
        what = "redis.Semaphore.acquire"
        if ctx is not None:
            check_ctx(ctx, what)
        token = new_token()
        k = self._k
        sent = time.monotonic()
        try:  # (not _translated: a generator-based context manager costs on the fast path)
            try:
                r = await self._s["SEM_ACQUIRE"](
                    keys=k.keys, args=[self._lease_ms, token, n, self._size]
                )
            except BaseException:
                # Cancelled (or failed) with the script's effect unknown: leave no trace.
                await self._withdraw(token)
                raise
            if r[0] == -1:
                raise size_conflict(what, self._size, r[1])
            if r[0] == 0:
                with self._lock:
                    self._waiting += 1
                try:
                    sent, fence = await self._wait(
                        token, n, int(r[1]), rt.Guard(timeout, ctx, what)
                    )
                except BaseException:
                    # Leave no trace: out of the queue, or, granted meanwhile, given back.
                    await self._withdraw(token)
                    raise
                finally:
                    with self._lock:
                        self._waiting -= 1
            else:
                fence = int(r[1])
        except IO_ERRORS as exc:
            raise unavailable(what, exc) from exc
        except ResponseError as exc:
            raise server_error(what, exc) from exc
        lease = new_lease(ctx, self._lease_ms, sent, fence, self._lease_lost)
        permit = Permit(self, token, n, lease)
        with self._lock:
            self._acquired += 1
            self._held[token] = permit
        self._renewal.poke()
        return permit

    async def _withdraw(self, token: str) -> None:
        with contextlib.suppress(*IO_ERRORS):
            await rt.settle(self._s["SEM_RELEASE"](keys=self._k.keys, args=[self._lease_ms, token]))

    async def _wait(self, token: str, n: int, grace_ms: int, guard: rt.Guard) -> tuple[float, int]:
        """Wait until ``token`` is granted; -> (when the request that confirmed the grant
        was sent, the grant's fence)."""
        _, check_every = intervals(self._lease_ms)
        k = self._k
        lease_ms = self._lease_ms
        pubsub = self._client.pubsub()
        try:
            with _translated("redis.Semaphore.acquire"):
                await pubsub.subscribe(k.channel)
                while True:
                    # Subscribed, then checked: a grant published in between shows here; the
                    # check also renews this waiter's lease and expires dead holders. A
                    # grant message is confirmed by the next check, which also starts the
                    # holder's lease clock (sent before the check) and reads its fence.
                    sent = time.monotonic()
                    r = await self._s["SEM_TOUCH"](keys=k.keys, args=[lease_ms, token])
                    grace_ms = int(r[0])
                    if r[2] == 1:
                        return sent, int(r[3])
                    if r[2] == 0:
                        # This waiter's queue lease ran out (the process stalled longer than
                        # the lease) or Redis lost its state: it held nothing, so it simply
                        # queues again, at the back.
                        sent = time.monotonic()
                        r = await self._s["SEM_ACQUIRE"](
                            keys=k.keys, args=[lease_ms, token, n, self._size]
                        )
                        if r[0] == -1:
                            raise size_conflict("redis.Semaphore.acquire", self._size, r[1])
                        if r[0] == 1:
                            return sent, int(r[1])
                        grace_ms = int(r[1])
                        continue
                    # During an epoch's grace, check again as soon as it ends.
                    wait = min(check_every, grace_ms / 1000) if grace_ms > 0 else check_every
                    msg = await _next_message(pubsub, max(wait, 0.005), guard)
                    if granted_in(msg, token):
                        continue  # confirmed (and its fence read) by the check
        finally:
            with contextlib.suppress(*IO_ERRORS):
                await pubsub.aclose()

    async def _renew(self) -> None:
        """Renew the lease of every permit held here (the Ticker's tick)."""
        with self._lock:
            held = list(self._held.items())
        if not held:
            return
        for _, permit in held:
            permit._ctx.arm()
        sent = time.monotonic()
        try:
            r = await self._s["SEM_TOUCH"](
                keys=self._k.keys, args=[self._lease_ms, *(t for t, _ in held)]
            )
        except (*IO_ERRORS, ResponseError):
            return  # a blip: the leases may still run; each ctx's own deadline decides
        for i, (_, permit) in enumerate(held):
            if r[2 + 2 * i] == 1:
                permit._ctx.renewed(sent)
            else:
                permit._ctx.lose(
                    "the renewal found these permits no longer held (the lease expired,"
                    " or Redis lost its state: a new epoch)"
                )

    def _lease_lost(self, error: LeaseLost) -> None:
        self._lost_count.add()
        if self._on_lost is not None:
            self._on_lost(error)

    async def _release(self, token: str, n: int) -> None:
        with self._lock:
            permit = self._held.pop(token, None)
        if permit is None:
            raise ValueError("redis.Semaphore.release: these permits were already released")
        self._renewal.idle()
        lease = permit._ctx
        try:
            r = await self._s["SEM_RELEASE"](keys=self._k.keys, args=[self._lease_ms, token])
        except IO_ERRORS as exc:
            lease.end()
            raise unavailable("redis.Semaphore.release", exc) from exc
        if r != 1:
            lease.lose("the release found these permits no longer held")
        if lease.lost():
            raise lost_holder(n)
        lease.end()

    def __repr__(self) -> str:
        with self._lock:
            held = sum(p.n for p in self._held.values())
        return f"<corral.redis.Semaphore size={self._size} held_here={held}>"
