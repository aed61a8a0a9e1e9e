"""What both flavours of ``corral.redis`` share and that does no I/O: errors, argument
checks, key names, the outcome envelope, statistics, the timing rules and a wait's limits."""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import math
import pickle
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from random import getrandbits as _getrandbits
from typing import Any, Protocol

from redis import exceptions as rexc

from .._core import timer as _timer
from .._core.context import CancelContext, Context, _derive
from .._core.semaphore import check_size
from .._errors import Cancelled, CorralError, DeadlineExceeded

__all__ = [
    "LeaseContext",
    "LeaseLost",
    "NotReplicated",
    "RedisUnavailable",
    "RedisUnsupported",
    "RemoteError",
    "Serializer",
    "SizeConflict",
    "check_client",
    "check_lease",
    "decode",
    "new_token",
    "redis_key",
]


#: redis-py's errors for a connection that failed or timed out (a blip, or Redis is gone),
#: and a Redis Cluster's transient refusals, which a cluster client raises once its own
#: retries are spent: ``CLUSTERDOWN`` (a master restarting answers it until it has rejoined;
#: the whole cluster once a master is marked failed), ``TRYAGAIN`` (a slot migrating), a
#: slot no reachable node serves, or no node answering at all. Each means "not available
#: now", as a dropped connection does: the same ``RedisUnavailable``, and a lease renewal
#: retried while the lease may still run. (``ClusterDownError`` and ``TryAgainError`` are
#: ``ResponseError`` subclasses, so this tuple is caught before ``ResponseError``.)
IO_ERRORS = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.ClusterDownError,
    rexc.TryAgainError,
    rexc.SlotNotCoveredError,
    # Newer redis-py only (no node of the cluster answered a topology refresh); older ones
    # raise the errors above for it, so the fallback repeats one of them: their plain
    # ``RedisClusterException`` also means a bad cluster setup, so it is not caught there.
    getattr(rexc, "RedisClusterUnreachableError", rexc.ConnectionError),
)
#: The longest socket read of a wait that watches a Context (a local wait, not a round trip).
CTX_SLICE = 0.1


class RedisUnavailable(CorralError):
    """Redis could not be reached, failed in the middle of an operation, or lost the state
    the operation relied on (it restarted without persistence). ``__cause__`` is redis-py's
    error when there is one. The operation's outcome is unknown to this caller: it did not
    silently succeed."""


class NotReplicated(RedisUnavailable):
    """A grant (Semaphore permits, a SingleFlight leadership) was acknowledged by fewer
    replicas than ``replicas=`` asked for within ``replicas_timeout``, so it was given back
    instead of used: Redis replicates asynchronously, and a failover to a replica that
    missed the grant would grant the same permits (or leadership) a second time.
    ``acked`` and ``wanted`` say how many replicas acknowledged and how many were asked for.
    Nothing is held: retry later, or lower ``replicas=``."""

    def __init__(self, message: str, acked: int = 0, wanted: int = 0) -> None:
        super().__init__(message)
        self.acked = acked
        self.wanted = wanted


class RedisUnsupported(CorralError):
    """The server or its configuration cannot run corral's scripts: a server too old for a
    command they need, or a Redis Cluster that refused keys as cross-slot (every key of a
    primitive shares the hash tag ``{name}``, so this means a proxy or a configuration that
    does not honour hash tags). ``__cause__`` is the server's reply."""


class LeaseLost(CorralError):
    """This process's lease ran out or vanished while it held it: a SingleFlight leader or a
    Semaphore holder stalled longer than the lease, or Redis lost its state. Another process
    may have taken over, so what was done under the lease may have been done twice."""


class RemoteError(CorralError):
    """The shared call failed in another process with an exception that could not be carried
    across (the serializer could not encode or decode it). ``type_name`` and the message say
    what it was."""

    def __init__(self, message: str, type_name: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name


class SizeConflict(CorralError, ValueError):
    """A ``corral.redis.Semaphore`` was used with a ``size`` other than the one the processes
    already using that name agreed on (also a ``ValueError``: a configuration mistake)."""


class Serializer(Protocol):
    """What ``serializer=`` takes: ``pickle`` (the default), ``json`` wrapped to bytes, or
    anything with these two functions."""

    def dumps(self, obj: Any, /) -> bytes:
        """Encode a value (or an exception) the leader publishes."""
        ...

    def loads(self, data: bytes, /) -> Any:
        """Decode what ``dumps`` made, in a follower."""
        ...


def new_token() -> str:
    """A 32-character random id: a flight, a holder or a waiter.

    It must be unique, not secret (anyone who can read it can read Redis): 128 bits of the
    ``random`` module's generator, seeded from the OS and again in a forked child, cost
    half of ``secrets.token_hex(16)``'s system call, on every acquire."""
    return f"{_getrandbits(128):032x}"


def decode(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def check_lease(lease: object, what: str) -> int:
    """``lease`` in seconds -> milliseconds: finite, at least 100 ms (renewals every third
    of it) and at most a day."""
    if isinstance(lease, bool) or not isinstance(lease, int | float):
        raise TypeError(f"{what}: lease must be a number of seconds, got {type(lease).__name__}")
    if not (math.isfinite(lease) and 0.1 <= lease <= 86400):  # also rejects NaN
        raise ValueError(
            f"{what}: lease must be a finite number of seconds in [0.1, 86400], got {lease!r}"
        )
    return round(lease * 1000)


def check_client(client: object, what: str, *, binary: bool, asyncio: bool | None = None) -> None:
    """A redis-py client of the flavour's kind (``redis.asyncio`` for ``corral.redis``, the
    blocking one for ``corral.threads.redis``; a single server or a ``RedisCluster``):
    pass ``asyncio=rt.ASYNC`` (``None`` skips the flavour check)."""
    try:
        kwargs = client.get_connection_kwargs()  # type: ignore[attr-defined]
        execute = client.execute_command  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError(
            f"{what}: client must be a redis-py client, got {type(client).__name__}"
        ) from None
    if asyncio is not None and inspect.iscoroutinefunction(execute) != asyncio:
        kind, want, where = (
            ("a blocking", "redis.asyncio.Redis", "corral.threads.redis")
            if asyncio
            else ("an asyncio", "redis.Redis", "corral.redis")
        )
        raise TypeError(
            f"{what}: client is {kind} {type(client).__module__}.{type(client).__name__};"
            f" this flavour needs a {want} (or use {where})"
        )
    if binary and kwargs.get("decode_responses"):
        raise ValueError(
            f"{what}: client has decode_responses=True, which cannot carry serialized values;"
            " pass a client made without it"
        )


def check_on_lost(on_lost: object, what: str) -> None:
    if on_lost is not None and not callable(on_lost):
        raise TypeError(f"{what}: on_lost must be callable or None, got {type(on_lost).__name__}")


def check_namespace(namespace: object, what: str, arg: str = "namespace") -> str:
    if not isinstance(namespace, str):
        raise TypeError(f"{what}: {arg} must be a str, got {type(namespace).__name__}")
    if not namespace:
        raise ValueError(f"{what}: {arg} must not be empty")
    return namespace


def check_serializer(serializer: object, what: str) -> None:
    """``serializer`` has ``dumps``/``loads`` that round-trip a sample value and exception
    through bytes (``json`` itself fails: it makes ``str``)."""
    if not callable(getattr(serializer, "dumps", None)) or not callable(
        getattr(serializer, "loads", None)
    ):
        raise TypeError(f"{what}: serializer must have dumps() and loads()")
    sample = {"corral": [1, "two"]}
    try:
        data = serializer.dumps(sample)  # type: ignore[attr-defined]
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"dumps() returned {type(data).__name__}, not bytes")
        back = serializer.loads(bytes(data))  # type: ignore[attr-defined]
    except Exception as exc:
        raise TypeError(
            f"{what}: serializer {serializer_name(serializer)} failed to round-trip a sample"
            f" {sample!r}: {exc}"
        ) from exc
    if back != sample:
        raise TypeError(
            f"{what}: serializer {serializer_name(serializer)} round-tripped {sample!r} as {back!r}"
        )


def serializer_name(serializer: object) -> str:
    name = getattr(serializer, "__name__", None) or type(serializer).__qualname__
    return str(name)


def redis_key(key: object, what: str) -> str:
    """A SingleFlight key as the text of its Redis keys: a ``str``, or an ``int`` (which
    meets the ``str`` of its digits: user ``7`` and ``"7"`` are one key across processes)."""
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    raise TypeError(f"{what}: key must be a str or an int, got {type(key).__name__}")


def check_semaphore(size: object, what: str) -> int:
    try:
        return check_size(size)
    except (TypeError, ValueError) as exc:
        raise type(exc)(str(exc).replace("Semaphore:", f"{what}:", 1)) from None


PICKLE: Serializer = pickle


@dataclass(frozen=True, slots=True)
class RedisSingleFlightStatistics:
    """This process's view of a ``corral.redis.SingleFlight`` (``sf.statistics()``)."""

    in_flight: int  #: keys this process is waiting for (leading or following)
    waiters: int  #: local callers waiting for those keys
    started: int  #: flights this process started locally (one per key and burst)
    joined: int  #: local callers that joined a flight of this process
    led: int  #: flights in which this process ran the call (leader, takeovers included)
    followed: int  #: flights whose value came from another process
    takeovers: int  #: times a follower found the leader gone and ran the call itself
    lost: int = 0  #: leaderships of this process whose lease was lost while ``fn`` ran
    shared_late: int = 0  #: flights answered by a finished call's kept outcome (share_for)
    not_kept: int = 0  #: outcomes over ``share_max_bytes``, not kept after their call


@dataclass(frozen=True, slots=True)
class RedisSemaphoreStatistics:
    """This process's view of a ``corral.redis.Semaphore`` (``sem.statistics()``); the
    server-wide view is ``server_statistics()``."""

    size: int
    held: int  #: permits held by this process
    waiting: int  #: acquires of this process queued in Redis
    acquired: int  #: acquires granted to this process since it was made
    lost: int  #: holders of this process whose lease was lost (renewal refused, or late)


def unavailable(what: str, exc: BaseException) -> RedisUnavailable:
    return RedisUnavailable(f"{what}: Redis is unreachable or failed mid-call: {exc}")


#: The server replies that mean the server or its setup cannot run the scripts.
_UNSUPPORTED = ("CROSSSLOT", "unknown command", "non deterministic", "Unknown Redis command")


def server_error(what: str, exc: rexc.ResponseError) -> BaseException:
    """A script's error reply as a typed error: ``RedisUnsupported`` for a server too old, a
    cross-slot refusal, or a redirection (``MOVED``/``ASK``) that reached us; anything else
    is returned as it is (a bug: say it loudly)."""
    if isinstance(exc, rexc.AskError):  # MovedError too
        # A cluster client follows redirections itself; one that reaches here came to a
        # single-node client talking to a Redis Cluster node that does not own the key.
        return RedisUnsupported(
            f"{what}: the server redirected the call to another node ({exc}): this is a Redis"
            " Cluster node, and a single-node client cannot follow redirections; pass a"
            " redis.cluster.RedisCluster (redis.asyncio.cluster.RedisCluster for corral.redis)"
        )
    text = str(exc)
    if any(s in text for s in _UNSUPPORTED):
        return RedisUnsupported(f"{what}: the server cannot run corral's scripts: {text}")
    return exc


@contextlib.contextmanager
def translated(what: str) -> Generator[None, None, None]:
    """redis-py's connection failures and refusals as corral's typed errors."""
    try:
        yield
    except IO_ERRORS as exc:
        raise unavailable(what, exc) from exc
    except rexc.ResponseError as exc:
        raise server_error(what, exc) from exc


def intervals(lease_ms: int) -> tuple[float, float]:
    """(renew every, check every) in seconds: a holder renews three times per lease (two
    renewals may fail and it still holds); a waiter re-checks twice per lease, so it sees a
    dead leader or holder within 1.5 leases."""
    return lease_ms / 3000, lease_ms / 2000


# --- leases as Contexts ---------------------------------------------------------------------

#: The share of a lease a holder gives up as a safety margin: it assumes its lease lost
#: ``lease * (1 - MARGIN)`` after it *sent* the request that granted or last renewed it
#: (the server started the lease after that instant, on a clock that runs at the same
#: rate), so it stops before the server can have let the lease expire and granted it to
#: another. The margin absorbs clock-rate drift, a late timer and the time the cancelled
#: work needs to notice. Renewals come every third of a lease: one may be lost or late
#: by up to ~0.47 leases before the holder gives up.
MARGIN = 0.2


#: Guards every lease's deadline and timer (held for a few attribute writes: one lock for
#: all leases costs less than a lock made per grant).
_LEASES = threading.Lock()


class LeaseContext(CancelContext):
    """The Context of one lease: a ``Permit``'s ``ctx``, a SingleFlight leader's
    ``current_context()``. Cancelled with a ``LeaseLost`` cause as soon as the holder knows
    (a renewal answered "not yours": the lease expired, was taken over, or Redis began a
    new epoch) or must assume (no successful renewal for ``lease * (1 - MARGIN)`` since the
    last one was sent, on the local monotonic clock) that the lease is gone; cancelled with
    no cause when the lease ends normally (released, the call finished).

    The deadline is also checked whenever this Context is read (``ctx.cancelled``,
    ``raise_if_cancelled()``), so a process resumed after a stall longer than its lease
    (SIGSTOP, a GC pause, a suspended VM) sees its ctx cancelled at its first check, even
    before the timer thread runs; contexts derived from it learn it from that timer."""

    __slots__ = ("_expires", "_hook", "_lease_s", "_lease_timer", "fence")

    def __init__(self, parent: Context, deadline: float | None, key: object = None, /) -> None:
        super().__init__(parent, deadline, key)  # made by _derive, which passes its key
        self._expires = math.inf
        self._lease_s = math.inf
        self._lease_timer: _timer.Timer | None = None
        self._hook: Callable[[LeaseLost], None] | None = None
        #: The fencing token of this lease (strictly increasing per name; see scripts.py).
        self.fence = 0

    def _current_err(self) -> Cancelled | None:
        err = super()._current_err()
        if err is None and time.monotonic() >= self._expires:
            self._on_timer()
            err = self._err
        return err

    def renewed(self, sent: float) -> None:
        """A renewal (or the grant) sent at ``sent`` (``time.monotonic()``) succeeded."""
        with _LEASES:
            if self._err is not None:
                return
            expires = sent + self._lease_s * (1 - MARGIN)
            if expires <= self._expires and self._expires != math.inf:
                return  # an older reply arriving late: it cannot extend anything
            self._expires = expires
            if self._lease_timer is not None:
                _timer.cancel(self._lease_timer)
                self._lease_timer = _timer.schedule(expires, self._on_timer)

    def arm(self) -> None:
        """Make sure a timer cancels this Context at its deadline even if nobody reads it.

        Called by the renewer's first tick (a third of a lease after the grant), not at the
        grant: a short hold, the common case, then costs no timer (the shared timer thread
        starts and stops with its first and last timer). Until then the deadline, still at
        least 47 % of a lease away, is checked whenever the Context is read."""
        with _LEASES:
            if self._err is None and self._lease_timer is None and self._expires != math.inf:
                self._lease_timer = _timer.schedule(self._expires, self._on_timer)

    def _on_timer(self) -> None:
        if time.monotonic() >= self._expires:
            self.lose(
                f"no renewal succeeded for {self._lease_s * (1 - MARGIN):.3g} s"
                f" ({1 - MARGIN:.0%} of the {self._lease_s:g} s lease)"
            )

    def lose(self, why: str) -> bool:
        """The lease is gone: cancel with a ``LeaseLost`` cause (once); tell the hook."""
        err = LeaseLost(f"lease lost (fence {self.fence}): {why}")
        if not self.cancel(err):
            return False
        self._stop_timer()
        hook = self._hook
        if hook is not None:
            try:
                hook(err)
            except Exception:
                logging.getLogger("corral").exception("corral.redis on_lost callback failed")
        return True

    def end(self) -> None:
        """The lease ended normally: stop watching it, cancel the Context (no cause)."""
        self._stop_timer()
        self.cancel()

    def lost(self) -> bool:
        """Whether this lease was lost (rather than ended)."""
        return self.cancelled and isinstance(self.cause, LeaseLost)

    def _stop_timer(self) -> None:
        with _LEASES:
            self._expires = math.inf
            if self._lease_timer is not None:
                _timer.cancel(self._lease_timer)
                self._lease_timer = None


def new_lease(
    parent: Context | None,
    lease_ms: int,
    sent: float,
    fence: int,
    hook: Callable[[LeaseLost], None] | None,
) -> LeaseContext:
    """A LeaseContext granted by a request sent at ``sent``, child of ``parent``."""
    from .._core.context import background

    ctx = _derive(parent if parent is not None else background(), None, None, LeaseContext)
    assert isinstance(ctx, LeaseContext)
    ctx._lease_s = lease_ms / 1000
    ctx.fence = fence
    ctx._hook = hook
    ctx.renewed(sent)
    return ctx


class Counter:
    """A count bumped from any thread (a lease's timer thread, a loop, a renewer)."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.value += n


#: The fence of the SingleFlight leadership running the current code.
CURRENT_FENCE: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "corral_redis_fence", default=None
)


class Bound:
    """A wait's limits: a deadline (``timeout=``) and a Context to watch, checked between
    reads. Neither flavour can rely on being interrupted inside redis-py's socket read (a
    thread cannot be; see ``_rt_aio.Guard`` for asyncio), so a wait with a ``ctx`` reads in
    slices of at most ``CTX_SLICE`` seconds; without one it sleeps until a message arrives
    or its periodic check is due."""

    __slots__ = ("ctx", "end", "timeout", "what")

    def __init__(self, timeout: float | None, ctx: Context | None, what: str) -> None:
        self.timeout = timeout
        self.end = None if timeout is None else self.now() + timeout
        self.ctx = ctx
        self.what = what

    def now(self) -> float:
        """The clock the deadline is on."""
        return time.monotonic()

    def slice(self, want: float) -> float:
        """How long the next read may block, at most ``want``; raises once a limit is hit."""
        if self.ctx is not None:
            self.ctx.raise_if_cancelled()
            want = min(want, CTX_SLICE)
        if self.end is not None:
            left = self.end - self.now()
            if left <= 0:
                raise DeadlineExceeded(f"{self.what}: timed out after {self.timeout} s")
            want = min(want, left)
        return want


# --- key names and script arguments ----------------------------------------------------------


class SFKeys:
    """The Redis keys of one SingleFlight key."""

    __slots__ = ("done", "epoch", "lease", "ns")

    def __init__(self, ns: str, key: str) -> None:
        self.ns = "{" + ns + "}"  # the hash tag: one slot per namespace (scripts.py)
        self.lease = f"{self.ns}:sf:{key}:lease"
        self.done = f"{self.ns}:sf:{key}:done"
        self.epoch = f"{self.ns}:sf:e"

    def result(self, token: str) -> str:
        return f"{self.ns}:sf:r:{token}"

    def channel(self, token: str) -> str:
        return f"{self.ns}:sf:c:{token}"


class SemKeys:
    """The Redis keys of one Semaphore name: ``{name}:m`` ..., or with a ``tag`` other
    than the name (to join a ``corral.redis.Limits`` of that tag: one Cluster slot)
    ``{tag}:name:m`` ... (no key of one layout is a key of the other)."""

    __slots__ = ("channel", "keys", "name", "tag")

    def __init__(self, name: str, tag: str | None = None) -> None:
        self.name = name
        self.tag = name if tag is None else tag
        # the hash tag: one slot per name, or per tag (scripts.py)
        base = "{" + name + "}" if self.tag == name else "{" + self.tag + "}:" + name
        self.keys = [f"{base}:{k}" for k in ("m", "h", "q", "qx", "e")]
        self.channel = f"{base}:c"


def granted_in(message: Any, token: str) -> bool:
    """Whether a pub/sub message of the semaphore's channel names ``token`` as granted."""
    if not isinstance(message, dict) or message.get("type") != "message":
        return False
    return token in decode(message["data"]).split(" ")


def size_conflict(what: str, size: int, theirs: Any) -> SizeConflict:
    return SizeConflict(
        f"{what}: size={size}, but the processes already using this semaphore name made it "
        f"with size={int(theirs)}; every process must pass the same size"
    )


def lost_holder(n: int) -> LeaseLost:
    return LeaseLost(
        f"Semaphore.release: the lease on these {n} permit(s) ran out before the release (the"
        " holder stalled longer than the lease, or Redis lost its state); another process may"
        " have held them meanwhile"
    )


def lost_leader(key: str) -> LeaseLost:
    return LeaseLost(
        f"SingleFlight: the lease on key {key!r} ran out or vanished while this process ran the"
        " call (it stalled longer than the lease, or Redis lost its state); another process may"
        " run it too, so its value is not reported as the shared result"
    )


def state_lost(key: str) -> RedisUnavailable:
    return RedisUnavailable(
        f"SingleFlight: Redis lost its state (restarted without persistence?) while key {key!r}"
        " was in flight; the call's outcome is unknown"
    )
