"""``corral.threads.redis``: the blocking flavour of ``corral.redis`` (over ``redis``).

Same scripts and rules as the asyncio flavour (``scripts``, ``common``); only waiting
differs. A thread cannot be interrupted inside a socket read, so a wait that has a ``ctx``
to watch reads in slices of at most ``_CTX_SLICE`` seconds (local socket waits, not Redis
round trips); without one it sleeps until a message arrives or its periodic check is due.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any

from redis import exceptions as rexc

from .._core.context import Context, _check_timeout
from .._core.semaphore import SemaphoreStatistics, check_weight
from .._core.singleflight import SingleFlightBase
from .._errors import DeadlineExceeded
from .._shells import check_ctx
from .._threads.singleflight import SingleFlight as LocalSingleFlight
from . import scripts
from .common import (
    ABANDONED,
    PICKLE,
    RedisSemaphoreStatistics,
    RedisSingleFlightStatistics,
    RedisUnavailable,
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
)

__all__ = ["Permit", "Semaphore", "SingleFlight"]

_IO_ERRORS = (rexc.ConnectionError, rexc.TimeoutError)
_CTX_SLICE = 0.1
#: How long a Semaphore's renewer thread waits for a new holder before it ends.
_LINGER = 0.25
_now = time.monotonic


@contextlib.contextmanager
def _translated(what: str) -> Generator[None, None, None]:
    try:
        yield
    except _IO_ERRORS as exc:
        raise _unavailable(what, exc) from exc


def _unavailable(what: str, exc: BaseException) -> RedisUnavailable:
    return RedisUnavailable(f"{what}: Redis is unreachable or failed mid-call: {exc}")


class _Bound:
    """A wait's limits: a deadline (``timeout=``) and a Context to watch."""

    __slots__ = ("ctx", "end", "timeout", "what")

    def __init__(self, timeout: float | None, ctx: Context | None, what: str) -> None:
        self.timeout = timeout
        self.end = None if timeout is None else _now() + timeout
        self.ctx = ctx
        self.what = what

    def slice(self, want: float) -> float:
        """How long the next read may block, at most ``want``; raises once a limit is hit."""
        if self.ctx is not None:
            self.ctx.raise_if_cancelled()
            want = min(want, _CTX_SLICE)
        if self.end is not None:
            left = self.end - _now()
            if left <= 0:
                raise DeadlineExceeded(f"{self.what}: timed out after {self.timeout} s")
            want = min(want, left)
        return want


def _next_message(pubsub: Any, wait: float, bound: _Bound) -> Any:
    end = _now() + wait
    while (left := end - _now()) > 0:
        msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=bound.slice(left))
        if msg is not None:
            return msg
    return None


class _Renewer:
    """A thread calling ``tick()`` every ``every`` seconds until ``stop()`` or a False tick."""

    __slots__ = ("_stop", "_thread")

    def __init__(self, every: float, tick: Callable[[], bool], name: str) -> None:
        self._stop = threading.Event()

        def run() -> None:
            while not self._stop.wait(every):
                try:
                    if not tick():
                        return
                except _IO_ERRORS:
                    continue  # a blip: the lease may still run; the release/finish will tell

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


class SingleFlight:
    """SingleFlight(client, *, namespace="corral", lease=10.0, serializer=pickle, ctx=None):
    ``corral.redis.SingleFlight`` for threads, over a blocking ``redis.Redis``.

    ``sf.do(key, fn, *args)`` blocks until ``fn(*args)``, run once for every concurrent
    caller of ``key`` in every process on the Redis, returns (see ``corral.redis``).

    >>> import corral.threads.redis, redis
    >>> sf = corral.threads.redis.SingleFlight(redis.Redis(), namespace="users")  # doctest: +SKIP
    >>> sf.do(7, load_user, 7)  # doctest: +SKIP
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
        self._local: LocalSingleFlight[str, Any] = LocalSingleFlight(ctx)
        self._s = {
            name: client.register_script(getattr(scripts, name))
            for name in ("SF_JOIN", "SF_RENEW", "SF_FINISH", "SF_ABANDON", "SF_CHECK")
        }
        self._led = self._followed = self._takeovers = 0
        self._count_lock = threading.Lock()  # flights of different keys run in parallel

    def do(
        self,
        key: str | int,
        fn: Callable[..., Any],
        /,
        *args: Any,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> Any:
        """Return ``fn(*args)``, computed once for every concurrent caller of ``key`` in
        every process; ``timeout=`` / ``ctx=`` make this caller leave (not the call)."""
        k = redis_key(key, "redis.SingleFlight.do")
        if not callable(fn):
            raise TypeError(f"redis.SingleFlight.do: fn must be callable, got {type(fn).__name__}")
        return self._local.do(k, self._flight, k, fn, args, timeout=timeout, ctx=ctx)

    def statistics(self) -> RedisSingleFlightStatistics:
        """This process's :class:`RedisSingleFlightStatistics`."""
        s = self._local.statistics()
        return RedisSingleFlightStatistics(
            s.in_flight, s.waiters, s.started, s.joined, self._led, self._followed, self._takeovers
        )

    current_context = staticmethod(SingleFlightBase.current_context)

    def _flight(self, k: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        # Runs in the local flight's own thread; its Context is cancelled when every caller
        # in this process left.
        flight_ctx = SingleFlightBase.current_context()
        keys = SFKeys(self._ns, k)
        dead: list[str] = []  # flights followed here whose leaders died
        while True:
            token = new_token()
            with _translated("redis.SingleFlight.do"):
                r = self._s["SF_JOIN"](
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
                return self._lead(k, keys, token, fn, args, dead)
            leader = decode(r[1])
            data = self._follow(k, keys, leader, epoch, flight_ctx)
            if data is not None:
                with self._count_lock:
                    self._followed += 1
                return load_outcome(self._serializer, data)
            dead.append(leader)

    def _lead(
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
        renewer = _Renewer(
            every,
            lambda: bool(renew(keys=[keys.lease], args=[token, lease_ms])),
            f"corral-redis-lease-{k}",
        )
        try:
            try:
                value = fn(*args)
            finally:
                renewer.stop()
        except Exception as exc:
            error: Exception | None = exc
            value = None
        except BaseException:
            with contextlib.suppress(*_IO_ERRORS):
                ch = keys.channel(token)
                self._s["SF_ABANDON"](keys=[keys.lease], args=[token, ch, ABANDONED])
            raise
        else:
            error = None
        try:
            outcome = dump_outcome(self._serializer, value, error)
        except Exception as exc:
            outcome = dump_outcome(self._serializer, None, RemoteError(repr(exc)))
        with _translated("redis.SingleFlight.do"):
            ok = self._s["SF_FINISH"](
                keys=[keys.lease, keys.result(token), *map(keys.result, dead)],
                args=[token, outcome, 2 * lease_ms, keys.channel(token)],
            )
        if not ok:
            raise lost_leader(k) from error
        if error is not None:
            raise error
        return value

    def _follow(
        self, k: str, keys: SFKeys, token: str, epoch: str, flight_ctx: Context
    ) -> bytes | None:
        _, check_every = intervals(self._lease_ms)
        bound = _Bound(None, flight_ctx, "redis.SingleFlight.do")
        pubsub = self._client.pubsub()
        try:
            with _translated("redis.SingleFlight.do"):
                pubsub.subscribe(keys.channel(token))
                while True:
                    r = self._s["SF_CHECK"](
                        keys=[keys.lease, keys.result(token), keys.epoch], args=[token, epoch]
                    )
                    if r[0] == 2:
                        return bytes(r[1])
                    if r[0] == -1:
                        raise state_lost(k)
                    if r[0] == 0:
                        return None
                    msg = _next_message(pubsub, check_every, bound)
                    if msg is not None and msg.get("type") == "message":
                        data = bytes(msg["data"])
                        return None if data == ABANDONED else data
        finally:
            with contextlib.suppress(*_IO_ERRORS):
                pubsub.close()

    def __repr__(self) -> str:
        return f"<corral.threads.redis.SingleFlight namespace={self._ns!r}>"


class Permit:
    """Permits held from a ``corral.threads.redis.Semaphore``; ``with`` releases them."""

    __slots__ = ("_n", "_sem", "_token")

    def __init__(self, sem: Semaphore, token: str, n: int) -> None:
        self._sem = sem
        self._token = token
        self._n = n

    @property
    def n(self) -> int:
        """How many permits."""
        return self._n

    def release(self) -> None:
        """Give the permits back; ``LeaseLost`` if their lease ran out first."""
        self._sem._release(self._token, self._n)

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class Semaphore:
    """Semaphore(client, name, size, *, lease=10.0): ``corral.redis.Semaphore`` for threads.

    >>> import corral.threads.redis, redis
    >>> sem = corral.threads.redis.Semaphore(redis.Redis(), "db", 8)  # doctest: +SKIP
    >>> with sem.acquire(2):  # doctest: +SKIP
    ...     ...  # at most 8 permits held across every process
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
        "_renewer",
        "_s",
        "_size",
        "_waiting",
        "_wake",
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
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._held: dict[str, int] = {}
        self._lost: set[str] = set()
        self._renewer: threading.Thread | None = None
        self._waiting = self._acquired = self._lost_count = 0

    @property
    def size(self) -> int:
        """The number of permits every process using this name shares."""
        return self._size

    def acquire(
        self, n: int = 1, *, timeout: float | None = None, ctx: Context | None = None
    ) -> Permit:
        """Block until ``n`` permits are granted (FIFO across processes); returns a
        :class:`Permit`, a context manager that releases them. Errors as
        ``corral.redis.Semaphore.acquire``."""
        what = "redis.Semaphore.acquire"
        n = check_weight(n, self._size, what)
        if timeout is not None:
            _check_timeout(timeout)
        if ctx is not None:
            check_ctx(ctx, what)
        token = new_token()
        k = self._k
        try:  # (not _translated: a generator-based context manager costs on the fast path)
            r = self._s["SEM_ACQUIRE"](keys=k.keys, args=[token, n, self._size, self._lease_ms])
        except _IO_ERRORS as exc:
            raise _unavailable(what, exc) from exc
        if r[0] == -1:
            raise size_conflict(what, self._size, r[1])
        if r[0] == 0:
            with self._lock:
                self._waiting += 1
            try:
                self._wait(token, n, _Bound(timeout, ctx, what))
            except BaseException:
                with contextlib.suppress(*_IO_ERRORS):
                    self._s["SEM_RELEASE"](keys=k.keys, args=[token])
                raise
            finally:
                with self._lock:
                    self._waiting -= 1
        with self._lock:
            self._acquired += 1
            self._held[token] = n
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew, name="corral-redis-semaphore", daemon=True
                )
                self._renewer.start()
        return Permit(self, token, n)

    def release(self, n: int = 1) -> None:
        """Release one held :class:`Permit` of ``n`` permits taken through this object."""
        with self._lock:
            token = next((t for t, w in self._held.items() if w == n), None)
        if token is None:
            raise ValueError(f"redis.Semaphore.release: no permit of n={n} is held here")
        self._release(token, n)

    def statistics(self) -> RedisSemaphoreStatistics:
        """This process's :class:`RedisSemaphoreStatistics` (no I/O)."""
        with self._lock:
            return RedisSemaphoreStatistics(
                self._size,
                sum(self._held.values()),
                self._waiting,
                self._acquired,
                self._lost_count,
            )

    def server_statistics(self) -> SemaphoreStatistics:
        """Every process's view, from Redis: size, held, waiting, waiting_weight."""
        with _translated("redis.Semaphore.server_statistics"):
            r = self._s["SEM_STATE"](keys=self._k.keys, args=[])
        return SemaphoreStatistics(int(r[0]) or self._size, int(r[1]), int(r[2]), int(r[3]))

    def _wait(self, token: str, n: int, bound: _Bound) -> None:
        _, check_every = intervals(self._lease_ms)
        k = self._k
        pubsub = self._client.pubsub()
        try:
            with _translated("redis.Semaphore.acquire"):
                pubsub.subscribe(k.channel)
                while True:
                    r = self._s["SEM_TOUCH"](keys=k.keys, args=[token])
                    if r[0] == 1:
                        return
                    if r[0] == 0:
                        # This waiter's queue lease ran out (the process stalled longer than
                        # the lease) or Redis lost its state: it held nothing, so it simply
                        # queues again, at the back.
                        r = self._s["SEM_ACQUIRE"](
                            keys=k.keys,
                            args=[token, n, self._size, self._lease_ms],
                        )
                        if r[0] == -1:
                            raise size_conflict("redis.Semaphore.acquire", self._size, r[1])
                        if r[0] == 1:
                            return
                        continue
                    if granted_in(_next_message(pubsub, check_every, bound), token):
                        return
        finally:
            with contextlib.suppress(*_IO_ERRORS):
                pubsub.close()

    def _renew(self) -> None:
        """The renewer thread: renews every lease held here three times per lease; it ends
        once nothing is held (a new holder starts another), at most ``_LINGER`` seconds
        later, so back-to-back acquires do not start a thread each."""
        every, _ = intervals(self._lease_ms)
        k = self._k
        with self._lock:
            due = _now() + every
            while True:
                # Nobody notifies this thread (a notify per acquire would cost a context
                # switch each): it wakes at least every _LINGER seconds, and ends at the
                # first wake-up that finds nothing held.
                self._wake.wait(min(_LINGER, max(due - _now(), 0.0)))
                if not self._held:
                    self._renewer = None
                    return
                if _now() < due:
                    continue
                due = _now() + every
                tokens = list(self._held)
                if not tokens:
                    continue
                self._lock.release()
                try:
                    r = self._s["SEM_TOUCH"](keys=k.keys, args=tokens)
                except _IO_ERRORS:
                    r = None  # a blip: the leases may still run; the release will tell
                finally:
                    self._lock.acquire()
                if r is not None:
                    held = self._held
                    self._lost.update(
                        t for t, st in zip(tokens, r, strict=True) if st != 1 and t in held
                    )

    def _release(self, token: str, n: int) -> None:
        with self._lock:
            if self._held.pop(token, None) is None:
                raise ValueError("redis.Semaphore.release: these permits were already released")
        k = self._k
        try:
            r = self._s["SEM_RELEASE"](keys=k.keys, args=[token])
        except _IO_ERRORS as exc:
            raise _unavailable("redis.Semaphore.release", exc) from exc
        with self._lock:
            was_lost = token in self._lost
            self._lost.discard(token)
            if r != 1 or was_lost:
                self._lost_count += 1
        if r != 1 or was_lost:
            raise lost_holder(n)

    def __repr__(self) -> str:
        return f"<corral.threads.redis.Semaphore size={self._size}>"
