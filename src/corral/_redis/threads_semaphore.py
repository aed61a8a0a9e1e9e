# GENERATED from src/corral/_redis/aio_semaphore.py by scripts/unasync_patterns.py.
# Do not edit: change aio_semaphore.py (or _rt_threads.py) and run the script again.
"""``Semaphore`` and its ``Permit``: Go's weighted semaphore shared through Redis, for threads.
The scripts are ``scripts``'s and the I/O-free rules ``common``'s; the thread twin
(``threads_semaphore.py``) is generated from ``aio_semaphore.py`` by
``scripts/unasync_patterns.py``, the flavours' differences being in ``_rt_aio`` / ``_rt_threads``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from .._core.context import Context, _check_timeout
from .._core.semaphore import SemaphoreStatistics, check_weight
from .._shells import check_ctx
from . import _rt_threads as rt
from . import scripts
from .common import (
    IO_ERRORS,
    Counter,
    LeaseContext,
    LeaseLost,
    RedisSemaphoreStatistics,
    SemKeys,
    check_client,
    check_lease,
    check_namespace,
    check_on_lost,
    check_semaphore,
    granted_in,
    intervals,
    lost_holder,
    new_lease,
    new_token,
    server_error,
    size_conflict,
    unavailable,
)
from .common import translated as _translated
from .replicas import check_replicas
from .threads import next_message, replicated, replicated_grant

__all__ = ["Permit", "Semaphore"]


class Permit:
    """Permits held from a ``corral.threads.redis.Semaphore``; ``with`` releases them.

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

    def release(self) -> None:
        """Give the permits back; ``LeaseLost`` if their lease was lost first."""
        self._sem._release(self._token, self._n)

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<corral.threads.redis.Permit n={self._n} fence={self.fence}>"


class Semaphore:
    """Semaphore(client, name, size, *, lease=10.0, on_lost=None, tag=None, replicas=0,
    replicas_timeout=None): Go's weighted semaphore shared by every process using ``name``
    on one Redis; strictly FIFO across processes.

    ``with sem.acquire(n) as permit:`` holds ``n`` of the ``size`` permits. Requests
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

    **replicas=N** makes a grant count only once N replicas acknowledged it (``WAIT`` on the
    connection that took it, for ``replicas_timeout`` seconds: by default a tenth of the
    lease, at most 1 s); otherwise the permits are given back and the acquire raises
    ``NotReplicated``, so a failover to a replica that missed the grant cannot grant the
    same permits again. Renewals count only when acknowledged too (see docs/redis.md).

    Every process must pass the same ``size`` for a name (``SizeConflict`` otherwise); the
    keys disappear when nothing is held or queued (but one small epoch hash per name).

    Its keys share the hash tag ``tag`` (default: the name; one Cluster slot). To be a
    member of a :class:`Limits`, it needs the Limits' tag: ``tag="acct"`` beside
    ``RateLimit(..., tag="acct")`` (a semaphore named like the tag needs none). Every process
    must pass the same ``tag`` for a name: the tag is part of the keys, so another tag is
    another semaphore.

    >>> import corral.threads.redis, redis
    >>> def main(url):  # doctest: +SKIP
    ...     with redis.Redis.from_url(url) as client:
    ...         sem = corral.threads.redis.Semaphore(client, "db-connections", 8)
    ...         with sem.acquire(2) as permit:
    ...             ...  # at most 8 permits held across every process; ctx=permit.ctx
    """

    __slots__ = (
        "_acquired",
        "_client",
        "_fast",
        "_held",
        "_k",
        "_lease_ms",
        "_lock",
        "_lost_count",
        "_on_lost",
        "_renewal",
        "_replicas",
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
        tag: str | None = None,
        replicas: int = 0,
        replicas_timeout: float | None = None,
    ) -> None:
        what = "redis.Semaphore"
        check_client(client, what, binary=False, asyncio=rt.ASYNC)
        check_on_lost(on_lost, what)
        self._size = check_semaphore(size, what)
        if tag is not None and ("{" in check_namespace(tag, what, "tag") or "}" in tag):
            raise ValueError(f"{what}: tag must not contain braces, got {tag!r}")
        self._k = SemKeys(check_namespace(name, what, "name"), tag)
        self._lease_ms = check_lease(lease, what)
        self._replicas = check_replicas(replicas, replicas_timeout, self._lease_ms, client, what)
        self._client = client
        self._on_lost = on_lost
        self._s = {
            name: client.register_script(getattr(scripts, name))
            for name in (
                "SEM_ACQUIRE",
                "SEM_TOUCH",
                "SEM_RELEASE",
                "SEM_STATE",
                "SEM_FAST",
                "SEM_FAST_RELEASE",
            )
        }
        # The lean pair's call, made ready once: its keys (all but ``qx``) and constants
        # encoded with the client's encoder, so redis-py packs them without converting.
        enc = client.get_encoder()
        fast_keys = [enc.encode(k) for i, k in enumerate(self._k.keys) if i != 3]
        self._fast = (
            self._s["SEM_FAST"].sha,
            self._s["SEM_FAST_RELEASE"].sha,
            fast_keys,
            enc.encode(self._lease_ms),
            enc.encode(self._size),
        )
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
    ) -> Permit:
        """Acquire ``n`` permits in FIFO order (across processes).

        It blocks until they are granted and returns a :class:`Permit`; ``with`` releases it.
        ``ValueError`` if ``n`` exceeds the size; ``DeadlineExceeded`` after ``timeout``;
        ``Cancelled`` when ``ctx`` is done. The permit's ``ctx`` is a child of ``ctx``."""
        n = check_weight(n, self._size, "redis.Semaphore.acquire")
        if timeout is not None:
            _check_timeout(timeout)
        return rt.acquiring(self._acquire, n, timeout, ctx)

    def statistics(self) -> RedisSemaphoreStatistics:
        """This process's :class:`RedisSemaphoreStatistics` (no I/O)."""
        with self._lock:
            held = sum(p.n for p in self._held.values())
            return RedisSemaphoreStatistics(
                self._size, held, self._waiting, self._acquired, self._lost_count.value
            )

    def server_statistics(self) -> SemaphoreStatistics:
        """Every process's view, from Redis: size, held, waiting, waiting_weight."""
        with _translated("redis.Semaphore.server_statistics"):
            r = self._s["SEM_STATE"](keys=self._k.keys, args=[self._lease_ms])
        return SemaphoreStatistics(int(r[0]) or self._size, int(r[1]), int(r[2]), int(r[3]))

    # -- the work ------------------------------------------------------------------------

    def _acquire(self, n: int, timeout: float | None, ctx: Context | None) -> Permit:
        what = "redis.Semaphore.acquire"
        if ctx is not None:
            check_ctx(ctx, what)
        token = new_token()
        sent = time.monotonic()
        r: Any = None
        try:  # (not _translated: a generator-based context manager costs on the fast path)
            try:
                # The lean script first, unless another acquire of this process waits (it
                # would then most likely answer "call SEM_ACQUIRE": a round trip lost).
                fence = self._fast_acquire(token, n, what) if not self._waiting else 0
                if not fence:
                    r = self._grant("SEM_ACQUIRE", [self._lease_ms, token, n, self._size], 0)
            except BaseException:
                # Cancelled, failed with the script's effect unknown, or not replicated
                # (NotReplicated): leave no trace.
                self._withdraw(token)
                raise
            if fence:
                pass
            elif r[0] == -1:
                raise size_conflict(what, self._size, r[1])
            elif r[0] == 0:
                with self._lock:
                    self._waiting += 1
                try:
                    sent, fence = self._wait(token, n, int(r[1]), rt.Guard(timeout, ctx, what))
                except BaseException:
                    # Leave no trace: out of the queue, or, granted meanwhile, given back.
                    self._withdraw(token)
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
        return self._hold(token, n, ctx, sent, fence)

    def try_acquire(self, n: int = 1) -> Permit | None:
        """A :class:`Permit` of ``n`` if Redis grants it at once, else ``None``; never waits.

        It never passes a waiter, in any process (FIFO, as ``acquire``): with anyone queued
        it fails even when enough permits are free. One round trip when it succeeds; when it
        fails, a second one withdraws the queue entry the first made (or gives back a grant
        made meanwhile), so a failed try leaves no trace."""
        what = "redis.Semaphore.try_acquire"
        n = check_weight(n, self._size, what)
        token = new_token()
        sent = time.monotonic()
        try:
            try:
                fence = self._fast_acquire(token, n, what)
                if fence:
                    return self._hold(token, n, None, sent, fence)
                r = self._grant("SEM_ACQUIRE", [self._lease_ms, token, n, self._size], 0, what)
            except BaseException:
                self._withdraw(token)
                raise
            if r[0] == -1:
                raise size_conflict(what, self._size, r[1])
            if r[0] == 0:
                self._withdraw(token)
                return None
        except IO_ERRORS as exc:
            raise unavailable(what, exc) from exc
        except ResponseError as exc:
            raise server_error(what, exc) from exc
        return self._hold(token, n, None, sent, int(r[1]))

    def _hold(self, token: str, n: int, ctx: Context | None, sent: float, fence: int) -> Permit:
        """Granted: the permit, its lease (timed from ``sent``) and its renewal."""
        lease = new_lease(ctx, self._lease_ms, sent, fence, self._lease_lost)
        permit = Permit(self, token, n, lease)
        with self._lock:
            self._acquired += 1
            self._held[token] = permit
        self._renewal.poke()
        return permit

    def _fast_acquire(self, token: str, n: int, what: str) -> int:
        """SEM_FAST, the lean uncontended grant (``scripts``): -> the fence when granted,
        0 when it cannot decide (then SEM_ACQUIRE must). Called through ``EVALSHA`` itself,
        not redis-py's ``Script`` wrapper (which costs more than packing the call).
        With ``replicas=N`` a grant counts only once acknowledged (as ``_grant``)."""
        sha, _, keys, lease, size = self._fast
        rep = self._replicas
        if rep is not None:
            r = replicated_grant(
                self._client, self._s["SEM_FAST"], keys, [lease, token, n, size], rep, bool, what
            )
            return int(r)
        call = ("EVALSHA", sha, 4, *keys, lease, token, n, size)
        try:
            r = self._client.execute_command(*call)
        except NoScriptError:  # (a restart, SCRIPT FLUSH: loaded again, then called again)
            self._client.script_load(scripts.SEM_FAST)
            r = self._client.execute_command(*call)
        return int(r)

    def _grant(
        self, name: str, args: list[Any], at: int, what: str = "redis.Semaphore.acquire"
    ) -> Any:
        """Run the script ``name``, whose reply's item ``at`` is 1 when it grants the
        caller's token. With ``replicas=N`` a grant counts only once N replicas acknowledged
        it: ``NotReplicated`` otherwise (the caller's cleanup gives the permits back)."""
        rep = self._replicas
        if rep is None:
            return self._s[name](keys=self._k.keys, args=args)
        return replicated_grant(
            self._client, self._s[name], self._k.keys, args, rep, lambda r: r[at] == 1, what
        )

    def _withdraw(self, token: str) -> None:
        with contextlib.suppress(*IO_ERRORS):
            rt.settle(self._s["SEM_RELEASE"](keys=self._k.keys, args=[self._lease_ms, token]))

    def _wait(self, token: str, n: int, grace_ms: int, guard: rt.Guard) -> tuple[float, int]:
        """Wait until ``token`` is granted; -> (when the request that confirmed the grant
        was sent, the grant's fence)."""
        _, check_every = intervals(self._lease_ms)
        k = self._k
        lease_ms = self._lease_ms
        pubsub = self._client.pubsub()
        try:
            with _translated("redis.Semaphore.acquire"):
                pubsub.subscribe(k.channel)
                while True:
                    # Subscribed, then checked: a grant published in between shows here; the
                    # check also renews this waiter's lease and expires dead holders. A
                    # grant message is confirmed by the next check, which also starts the
                    # holder's lease clock (sent before the check) and reads its fence.
                    sent = time.monotonic()
                    r = self._grant("SEM_TOUCH", [lease_ms, token], 2)
                    grace_ms = int(r[0])
                    if r[2] == 1:
                        return sent, int(r[3])
                    if r[2] == 0:
                        # This waiter's queue lease ran out (the process stalled longer than
                        # the lease) or Redis lost its state: it held nothing, so it simply
                        # queues again, at the back.
                        sent = time.monotonic()
                        r = self._grant("SEM_ACQUIRE", [lease_ms, token, n, self._size], 0)
                        if r[0] == -1:
                            raise size_conflict("redis.Semaphore.acquire", self._size, r[1])
                        if r[0] == 1:
                            return sent, int(r[1])
                        grace_ms = int(r[1])
                        continue
                    # During an epoch's grace, check again as soon as it ends.
                    wait = min(check_every, grace_ms / 1000) if grace_ms > 0 else check_every
                    msg = next_message(pubsub, max(wait, 0.005), guard)
                    if granted_in(msg, token):
                        continue  # confirmed (and its fence read) by the check
        finally:
            with contextlib.suppress(*IO_ERRORS):
                pubsub.close()

    def _renew(self) -> None:
        """Renew the lease of every permit held here (the Ticker's tick)."""
        with self._lock:
            held = list(self._held.items())
        if not held:
            return
        for _, permit in held:
            permit._ctx.arm()
        sent = time.monotonic()
        args = [self._lease_ms, *(t for t, _ in held)]
        rep = self._replicas
        try:
            if rep is None:
                r, acked = self._s["SEM_TOUCH"](keys=self._k.keys, args=args), True
            else:
                r, acks = replicated(self._client, self._s["SEM_TOUCH"], self._k.keys, args, rep)
                acked = acks >= rep.n
        except (*IO_ERRORS, ResponseError):
            return  # a blip: the leases may still run; each ctx's own deadline decides
        for i, (_, permit) in enumerate(held):
            if r[2 + 2 * i] == 1:
                if acked:  # (renewed but not acknowledged by replicas=N: a blip)
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

    def _release(self, token: str, n: int) -> None:
        with self._lock:
            permit = self._held.pop(token, None)
        if permit is None:
            raise ValueError("redis.Permit.release: these permits were already released")
        self._renewal.idle()
        lease = permit._ctx
        try:
            r = 0
            if not self._waiting:  # (else SEM_FAST_RELEASE would most likely answer 0)
                _, sha, keys, lease_ms, _ = self._fast
                args = ("EVALSHA", sha, 4, *keys, lease_ms, token)
                try:
                    r = self._client.execute_command(*args)
                except NoScriptError:
                    self._client.script_load(scripts.SEM_FAST_RELEASE)
                    r = self._client.execute_command(*args)
            if r != 1:  # not decided by the lean script: the original decides
                r = self._s["SEM_RELEASE"](keys=self._k.keys, args=[self._lease_ms, token])
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
        return f"<corral.threads.redis.Semaphore size={self._size} held_here={held}>"
