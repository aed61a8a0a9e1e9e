"""``corral.redis``: SingleFlight and the weighted Semaphore shared through Redis,
for asyncio (over ``redis.asyncio``). The scripts are ``scripts``'s and the I/O-free rules
``common``'s; this shell only waits for them. What truly differs between the flavours
(running ``fn``, renewing leases, a wait's limits) is in ``_rt_aio`` / ``_rt_threads``:
``threads.py`` is generated from ``aio.py`` by ``scripts/unasync_patterns.py``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any

from .._aio.singleflight import SingleFlight as LocalSingleFlight
from .._core.context import Context, _check_timeout
from .._core.semaphore import SemaphoreStatistics, check_weight
from .._core.singleflight import SingleFlightBase
from .._shells import check_ctx
from . import _rt_aio as rt
from . import scripts
from .common import (
    ABANDONED,
    IO_ERRORS,
    PICKLE,
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
    decode,
    dump_outcome,
    granted_in,
    intervals,
    load_outcome,
    lost_holder,
    lost_leader,
    new_token,
    redis_key,
    size_conflict,
    state_lost,
    unavailable,
)

__all__ = ["Permit", "Semaphore", "SingleFlight"]


@contextlib.contextmanager
def _translated(what: str) -> Generator[None, None, None]:
    """redis-py's connection failures as corral's typed error."""
    try:
        yield
    except IO_ERRORS as exc:
        raise unavailable(what, exc) from exc


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
    """SingleFlight(client, *, namespace="corral", lease=10.0, serializer=pickle, ctx=None):
    one execution per key across every process sharing a Redis.

    ``await sf.do(key, fn, *args)`` returns ``fn(*args)``. Callers in this process are first
    deduplicated in memory (a ``corral.SingleFlight``), so each process makes one flight per
    key; the flights of all processes then meet in Redis: the first takes the key's lease
    (``SET NX PX``) and runs ``fn``, renewing the lease three times per ``lease`` seconds;
    the others subscribe and get its value (serialized with ``serializer``, pickle by
    default) or its exception. If the leader dies, its lease runs out and a follower takes
    the call over, within 1.5 leases. A leader whose lease was lost (it stalled, Redis
    restarted) reports ``LeaseLost`` rather than a value another process may also compute;
    a Redis that cannot be reached, or that lost its state mid-call, is ``RedisUnavailable``.

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
        "_ns",
        "_s",
        "_serializer",
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
    ) -> None:
        what = "redis.SingleFlight"
        check_client(client, what, binary=True)
        if not callable(getattr(serializer, "dumps", None)) or not callable(
            getattr(serializer, "loads", None)
        ):
            raise TypeError(f"{what}: serializer must have dumps() and loads()")
        self._ns = check_namespace(namespace, what)
        self._lease_ms = check_lease(lease, what)
        self._serializer = serializer
        self._client = client
        self._local: LocalSingleFlight[str, Any] = LocalSingleFlight(ctx=ctx)
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
            s.in_flight, s.waiters, s.started, s.joined, self._led, self._followed, self._takeovers
        )

    current_context = staticmethod(SingleFlightBase.current_context)

    # -- one flight of this process ------------------------------------------------------

    async def _flight(self, k: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        keys = SFKeys(self._ns, k)
        dead: list[str] = []  # flights followed here whose leaders died
        while True:
            token = new_token()
            with _translated("redis.SingleFlight.do"):
                r = await self._s["SF_JOIN"](
                    keys=[keys.lease, keys.epoch, *map(keys.result, dead)],
                    args=[token, self._lease_ms, new_token()],
                )
            epoch = decode(r[2])
            if r[0] == 2:
                with self._count_lock:
                    self._followed += 1
                return load_outcome(self._serializer, bytes(r[1]))
            if r[0] == 1:
                with self._count_lock:
                    self._led += 1
                    self._takeovers += bool(dead)
                return await self._lead(k, keys, token, fn, args, dead)
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
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        dead: list[str],
    ) -> Any:
        lease_ms = self._lease_ms
        renew = self._s["SF_RENEW"]
        every, _ = intervals(lease_ms)
        renewer = rt.Renewer(
            every,
            lambda: renew(keys=[keys.lease], args=[token, lease_ms]),
            f"corral-redis-lease-{k}",
        )
        try:
            try:
                value = await rt.call(fn, args)
            finally:
                await renewer.stop()
        except Exception as exc:
            error: Exception | None = exc
            value = None
        except BaseException:
            # Cancelled (every local caller left) or interrupted: nobody here wants the
            # value; free the key now so a follower elsewhere takes over without waiting.
            with contextlib.suppress(*IO_ERRORS):
                ch = keys.channel(token)
                await self._s["SF_ABANDON"](keys=[keys.lease], args=[token, ch, ABANDONED])
            raise
        else:
            error = None
        try:
            outcome = dump_outcome(self._serializer, value, error)
        except Exception as exc:  # the value cannot be serialized: followers get told so
            outcome = dump_outcome(self._serializer, None, RemoteError(repr(exc)))
        with _translated("redis.SingleFlight.do"):
            ok = await self._s["SF_FINISH"](
                keys=[keys.lease, keys.result(token), *map(keys.result, dead)],
                args=[token, outcome, 2 * lease_ms, keys.channel(token)],
            )
        if not ok:
            raise lost_leader(k) from error
        if error is not None:
            raise error
        return value

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
    """Permits held from a ``corral.redis.Semaphore``; ``async with`` releases them."""

    __slots__ = ("_n", "_sem", "_token")

    def __init__(self, sem: Semaphore, token: str, n: int) -> None:
        self._sem = sem
        self._token = token
        self._n = n

    @property
    def n(self) -> int:
        """How many permits."""
        return self._n

    async def release(self) -> None:
        """Give the permits back; ``LeaseLost`` if their lease ran out first."""
        await self._sem._release(self._token, self._n)

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()


class Semaphore:
    """Semaphore(client, name, size, *, lease=10.0): Go's weighted semaphore shared by every
    process using ``name`` on one Redis; strictly FIFO across processes.

    ``async with sem.acquire(n):`` holds ``n`` of the ``size`` permits. Requests are served in
    arrival order, and a large one at the head holds back smaller ones behind it, so it is
    never starved. Held permits are under a lease renewed three times per ``lease`` seconds
    by this process: if the process dies, its permits come back when the lease runs out. An
    acquire that times out (``timeout=``), is cancelled or whose ``ctx`` is done leaves the
    queue at once (or, if granted meanwhile, gives the permits straight back). The fast
    path (permits free, nobody queued) is one script call, one round trip.

    Every process must pass the same ``size`` for a name (``SizeConflict`` otherwise); the
    keys disappear when nothing is held or queued.

    >>> import corral.redis, redis.asyncio
    >>> async def main(url):  # doctest: +SKIP
    ...     async with redis.asyncio.Redis.from_url(url) as client:
    ...         sem = corral.redis.Semaphore(client, "db-connections", 8)
    ...         async with sem.acquire(2):
    ...             ...  # at most 8 permits held across every process
    """

    __slots__ = (
        "_acquired",
        "_client",
        "_held",
        "_k",
        "_lease_ms",
        "_lock",
        "_lost",
        "_lost_count",
        "_renewal",
        "_s",
        "_size",
        "_waiting",
    )

    def __init__(self, client: Any, name: str, size: int, *, lease: float = 10.0) -> None:
        what = "redis.Semaphore"
        check_client(client, what, binary=False)
        self._size = check_semaphore(size, what)
        self._k = SemKeys(check_namespace(name, what, "name"))
        self._lease_ms = check_lease(lease, what)
        self._client = client
        self._s = {
            name: client.register_script(getattr(scripts, name))
            for name in ("SEM_ACQUIRE", "SEM_TOUCH", "SEM_RELEASE", "SEM_STATE")
        }
        self._lock = rt.Lock()
        self._held: dict[str, int] = {}
        self._lost: set[str] = set()
        # Renewals run only while this object holds permits; nothing is left running after.
        every, _ = intervals(self._lease_ms)
        self._renewal = rt.Ticker(
            every, self._renew, lambda: bool(self._held), "corral-redis-semaphore"
        )
        self._waiting = self._acquired = self._lost_count = 0

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
        ``Cancelled`` when ``ctx`` is done."""
        n = check_weight(n, self._size, "redis.Semaphore.acquire")
        if timeout is not None:
            _check_timeout(timeout)
        return rt.acquiring(self._acquire, n, timeout, ctx)

    async def release(self, n: int = 1) -> None:
        """Release one held :class:`Permit` of ``n`` permits taken through this object."""
        with self._lock:
            token = next((t for t, w in self._held.items() if w == n), None)
        if token is None:
            raise ValueError(f"redis.Semaphore.release: no permit of n={n} is held here")
        await self._release(token, n)

    def statistics(self) -> RedisSemaphoreStatistics:
        """This process's :class:`RedisSemaphoreStatistics` (no I/O)."""
        with self._lock:
            held = sum(self._held.values())
            return RedisSemaphoreStatistics(
                self._size, held, self._waiting, self._acquired, self._lost_count
            )

    async def server_statistics(self) -> SemaphoreStatistics:
        """Every process's view, from Redis: size, held, waiting, waiting_weight."""
        with _translated("redis.Semaphore.server_statistics"):
            r = await self._s["SEM_STATE"](keys=self._k.keys, args=[])
        return SemaphoreStatistics(int(r[0]) or self._size, int(r[1]), int(r[2]), int(r[3]))

    # -- the work ------------------------------------------------------------------------

    async def _acquire(self, n: int, timeout: float | None, ctx: Context | None) -> Permit:
        what = "redis.Semaphore.acquire"
        if ctx is not None:
            check_ctx(ctx, what)
        token = new_token()
        k = self._k
        try:  # (not _translated: a generator-based context manager costs on the fast path)
            r = await self._s["SEM_ACQUIRE"](
                keys=k.keys, args=[token, n, self._size, self._lease_ms]
            )
        except IO_ERRORS as exc:
            raise unavailable(what, exc) from exc
        if r[0] == -1:
            raise size_conflict(what, self._size, r[1])
        if r[0] == 0:
            with self._lock:
                self._waiting += 1
            try:
                await self._wait(token, n, rt.Guard(timeout, ctx, what))
            except BaseException:
                # Leave no trace: out of the queue, or, granted meanwhile, permits given back.
                with contextlib.suppress(*IO_ERRORS):
                    await self._s["SEM_RELEASE"](keys=k.keys, args=[token])
                raise
            finally:
                with self._lock:
                    self._waiting -= 1
        with self._lock:
            self._acquired += 1
            self._held[token] = n
        self._renewal.poke()
        return Permit(self, token, n)

    async def _wait(self, token: str, n: int, guard: rt.Guard) -> None:
        _, check_every = intervals(self._lease_ms)
        k = self._k
        pubsub = self._client.pubsub()
        try:
            with _translated("redis.Semaphore.acquire"):
                await pubsub.subscribe(k.channel)
                while True:
                    # Subscribed, then checked: a grant published in between shows here; the
                    # check also renews this waiter's lease and expires dead holders.
                    r = await self._s["SEM_TOUCH"](keys=k.keys, args=[token])
                    if r[0] == 1:
                        return
                    if r[0] == 0:
                        # This waiter's queue lease ran out (the process stalled longer than
                        # the lease) or Redis lost its state: it held nothing, so it simply
                        # queues again, at the back.
                        r = await self._s["SEM_ACQUIRE"](
                            keys=k.keys,
                            args=[token, n, self._size, self._lease_ms],
                        )
                        if r[0] == -1:
                            raise size_conflict("redis.Semaphore.acquire", self._size, r[1])
                        if r[0] == 1:
                            return
                        continue
                    msg = await _next_message(pubsub, check_every, guard)
                    if granted_in(msg, token):
                        return
        finally:
            with contextlib.suppress(*IO_ERRORS):
                await pubsub.aclose()

    async def _renew(self) -> None:
        """Renew the lease of every permit held here (the Ticker's tick)."""
        with self._lock:
            tokens = list(self._held)
        if not tokens:
            return
        try:
            r = await self._s["SEM_TOUCH"](keys=self._k.keys, args=tokens)
        except IO_ERRORS:
            return  # a blip: the leases may still be running; the release will tell
        with self._lock:
            held = self._held
            self._lost.update(t for t, st in zip(tokens, r, strict=True) if st != 1 and t in held)

    async def _release(self, token: str, n: int) -> None:
        with self._lock:
            if self._held.pop(token, None) is None:
                raise ValueError("redis.Semaphore.release: these permits were already released")
        self._renewal.idle()
        try:
            r = await self._s["SEM_RELEASE"](keys=self._k.keys, args=[token])
        except IO_ERRORS as exc:
            raise unavailable("redis.Semaphore.release", exc) from exc
        with self._lock:
            lost = r != 1 or token in self._lost
            self._lost.discard(token)
            if lost:
                self._lost_count += 1
        if lost:
            raise lost_holder(n)

    def __repr__(self) -> str:
        with self._lock:
            held = sum(self._held.values())
        return f"<corral.redis.Semaphore size={self._size} held_here={held}>"
