"""``corral.redis``'s SingleFlight, shared through Redis, for asyncio (over
``redis.asyncio``); the Semaphore is in ``aio_semaphore.py``. The scripts are
``scripts``'s and the I/O-free rules ``common``'s; this shell only waits for them. What
truly differs between the flavours (running ``fn``, renewing leases, a wait's limits) is
in ``_rt_aio`` / ``_rt_threads``: ``threads.py`` is generated from ``aio.py`` by
``scripts/unasync_patterns.py``."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import NoScriptError

from .._aio.singleflight import SingleFlight as LocalSingleFlight
from .._core.context import Context
from .._core.singleflight import CURRENT_FLIGHT, SingleFlightBase
from . import _rt_aio as rt
from . import scripts
from .common import (
    CURRENT_FENCE,
    IO_ERRORS,
    PICKLE,
    Counter,
    LeaseLost,
    NotReplicated,
    RedisSingleFlightStatistics,
    RemoteError,
    Serializer,
    SFKeys,
    check_client,
    check_lease,
    check_namespace,
    check_on_lost,
    check_serializer,
    decode,
    intervals,
    lost_leader,
    new_lease,
    new_token,
    redis_key,
    state_lost,
)
from .common import translated as _translated
from .outcome import ABANDONED, dump_outcome, load_outcome
from .replicas import Replicas, check_replicas, not_replicated

__all__ = ["SingleFlight"]

#: The largest outcome ``share_for=`` keeps by default (bytes, serialized).
SHARE_MAX_BYTES = 1 << 20


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


async def next_message(pubsub: Any, wait: float, guard: rt.Guard) -> Any:
    """The next published message within ``wait`` seconds, else None (subscribe
    confirmations are skipped without ending the wait)."""
    end = guard.now() + wait
    while (left := end - guard.now()) > 0:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=guard.slice(left))
        if msg is not None:
            return msg
    return None


async def replicated(
    client: Any, script: Any, keys: list[str], args: list[Any], rep: Replicas
) -> tuple[Any, int]:
    """Run ``script``, then ``WAIT rep.n rep.timeout_ms``, on one connection: -> (the
    script's reply, how many replicas acknowledged it).

    ``WAIT`` counts the replicas that acknowledged every write *this connection* made, and
    redis-py hands each command any connection of its pool: the two go in one pipeline
    (not a transaction), which runs on one connection, in one round trip. Every script that
    grants writes (the grant itself, or a lease renewal and key expiries), so the WAIT
    covers the grant even when another process's script made it (a queued waiter's grant is
    confirmed by its own renewal, later in the replication stream). ``NOSCRIPT`` (a restart,
    ``SCRIPT FLUSH``) loads the script and runs the pair again."""
    for attempt in range(2):
        pipe = client.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        pipe.execute_command("WAIT", rep.n, rep.timeout_ms)
        r, acks = await pipe.execute(raise_on_error=False)
        if isinstance(r, NoScriptError) and attempt == 0:
            await client.script_load(script.script)
            continue
        for reply in (r, acks):
            if isinstance(reply, Exception):
                raise reply
        return r, int(acks)
    raise AssertionError("unreachable")  # pragma: no cover


def first_item_granted(r: Any) -> bool:
    """A reply that says "granted" with a 1 first (SF_JOIN, RL_ACQUIRE, LIMITS_ACQUIRE)."""
    return bool(r[0] == 1)


async def replicated_grant(
    client: Any,
    script: Any,
    keys: list[str],
    args: list[Any],
    rep: Replicas,
    granted: Callable[[Any], bool],
    what: str,
) -> Any:
    """The one rule of ``replicas=N`` for a script that may grant (a permit, a leadership, a
    joint grant): run it and ``WAIT`` (``replicated``); a grant (``granted(reply)``) that
    fewer than N replicas acknowledged raises ``NotReplicated``, and the caller gives it
    back. -> the script's reply."""
    r, acks = await replicated(client, script, keys, args, rep)
    if granted(r) and acks < rep.n:
        raise not_replicated(what, acks, rep)
    return r


class SingleFlight:
    """SingleFlight(client, *, namespace="corral", lease=10.0, serializer=pickle, ctx=None,
    share_for=0.0, share_max_bytes=1 MiB, on_lost=None, replicas=0, replicas_timeout=None):
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

    **Leases.** The leader's ``current_context()`` is cancelled with a ``LeaseLost`` cause
    the moment its lease is known or must be assumed lost (see docs/redis.md), and
    ``current_fence()`` is its fencing token, strictly increasing per namespace: pass it to
    the resource ``fn`` writes (``UPDATE ... WHERE fence < ?``) so a stale leader's write is
    refused. ``on_lost(error)`` is called (from any thread) for each lost leadership.

    **share_for=** seconds keeps a finished call's outcome (value or exception) joinable
    that long, so callers of the same burst that reach Redis after the call ended get it
    instead of running it again. Outcomes over ``share_max_bytes`` (serialized) are not
    kept: those late callers run the call again (counted in ``statistics().not_kept``).

    **replicas=N** makes a leadership count only once N replicas acknowledged it (``WAIT``
    on the connection that took it, for ``replicas_timeout`` seconds: by default a tenth of
    the lease, at most 1 s); otherwise it is given back and the callers get
    ``NotReplicated``, so a failover to a replica that missed it cannot start a second
    leader. Renewals count only when acknowledged too (see docs/redis.md).

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
        "_replicas",
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
        replicas: int = 0,
        replicas_timeout: float | None = None,
    ) -> None:
        what = "redis.SingleFlight"
        check_client(client, what, binary=True, asyncio=rt.ASYNC)
        check_serializer(serializer, what)
        check_on_lost(on_lost, what)
        self._ns = check_namespace(namespace, what)
        self._lease_ms = check_lease(lease, what)
        self._share_ms = _check_share(share_for, share_max_bytes, what)
        self._replicas = check_replicas(replicas, replicas_timeout, self._lease_ms, client, what)
        self._share_max = share_max_bytes
        self._on_lost = on_lost
        self._lost = Counter()
        self._shared_late = self._not_kept = 0
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
                r = await self._join(keys, dead, token)
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

    async def _join(self, keys: SFKeys, dead: list[str], token: str) -> Any:
        """SF_JOIN; with ``replicas=N`` a leadership it grants counts only once N replicas
        acknowledged it, else it is given back: ``NotReplicated``."""
        join_keys = [keys.lease, keys.epoch, keys.done, *map(keys.result, dead)]
        args = [token, self._lease_ms]
        rep = self._replicas
        if rep is None:
            return await self._s["SF_JOIN"](keys=join_keys, args=args)
        try:
            return await replicated_grant(
                self._client,
                self._s["SF_JOIN"],
                join_keys,
                args,
                rep,
                first_item_granted,
                "redis.SingleFlight.do",
            )
        except NotReplicated:
            await self._abandon(keys, token)
            raise

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
        rep = self._replicas
        every, _ = intervals(lease_ms)
        # The leadership's Context: a child of the local flight's (cancelled when every
        # caller here left), cancelled with LeaseLost when the lease is gone.
        lease = new_lease(
            SingleFlightBase.current_context(), lease_ms, sent, fence, self._lease_lost
        )

        async def tick() -> bool:
            lease.arm()
            sent = time.monotonic()
            args = [token, lease_ms]
            if rep is None:
                ok, acked = bool(await renew(keys=[keys.lease], args=args)), True
            else:
                r, acks = await replicated(self._client, renew, [keys.lease], args, rep)
                ok, acked = bool(r), acks >= rep.n
            if not ok:
                lease.lose(f"SingleFlight key {k!r}: the renewal found the lease not ours")
            elif acked:
                lease.renewed(sent)
            # (renewed but not acknowledged by replicas=N: it extends nothing, as a blip)
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
                    msg = await next_message(pubsub, check_every, guard)
                    if msg is not None and msg.get("type") == "message":
                        data = bytes(msg["data"])
                        return None if data == ABANDONED else data
        finally:
            with contextlib.suppress(*IO_ERRORS):
                await pubsub.aclose()

    def __repr__(self) -> str:
        return f"<corral.redis.SingleFlight namespace={self._ns!r}>"
