"""What both flavours of ``corral.redis`` share and that does no I/O: errors, argument
checks, key names, the outcome envelope, statistics, the timing rules and a wait's limits."""

from __future__ import annotations

import pickle
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol

from redis import exceptions as rexc

from .._core.context import Context
from .._core.semaphore import check_size
from .._errors import CorralError, DeadlineExceeded

__all__ = [
    "LeaseLost",
    "RedisUnavailable",
    "RemoteError",
    "Serializer",
    "SizeConflict",
    "check_client",
    "check_lease",
    "decode",
    "dump_outcome",
    "load_outcome",
    "new_token",
    "redis_key",
]


#: redis-py's errors for a connection that failed or timed out (a blip, or Redis is gone).
IO_ERRORS = (rexc.ConnectionError, rexc.TimeoutError)
#: The longest socket read of a wait that watches a Context (a local wait, not a round trip).
CTX_SLICE = 0.1


class RedisUnavailable(CorralError):
    """Redis could not be reached, failed in the middle of an operation, or lost the state
    the operation relied on (it restarted without persistence). ``__cause__`` is redis-py's
    error when there is one. The operation's outcome is unknown to this caller: it did not
    silently succeed."""


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
    """A 32-character random id: a flight, a holder or a waiter."""
    return secrets.token_hex(16)


def decode(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def check_lease(lease: object, what: str) -> int:
    """``lease`` in seconds -> milliseconds; at least 100 ms (renewals every third of it)."""
    if isinstance(lease, bool) or not isinstance(lease, int | float):
        raise TypeError(f"{what}: lease must be a number of seconds, got {type(lease).__name__}")
    if not lease >= 0.1:  # also rejects NaN
        raise ValueError(f"{what}: lease must be >= 0.1 seconds, got {lease!r}")
    return round(lease * 1000)


def check_client(client: object, what: str, *, binary: bool) -> None:
    try:
        kwargs = client.get_connection_kwargs()  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError(
            f"{what}: client must be a redis-py client, got {type(client).__name__}"
        ) from None
    if binary and kwargs.get("decode_responses"):
        raise ValueError(
            f"{what}: client has decode_responses=True, which cannot carry serialized values;"
            " pass a client made without it"
        )


def check_namespace(namespace: object, what: str, arg: str = "namespace") -> str:
    if not isinstance(namespace, str):
        raise TypeError(f"{what}: {arg} must be a str, got {type(namespace).__name__}")
    if not namespace:
        raise ValueError(f"{what}: {arg} must not be empty")
    return namespace


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


# --- the outcome envelope: one kind byte, then the payload -----------------------------------

VALUE, ERROR, FOREIGN, ABANDONED = b"v", b"e", b"x", b"a"


def dump_outcome(serializer: Serializer, value: Any, error: BaseException | None) -> bytes:
    """What the leader publishes: the value, or the exception (serialized if the serializer
    can, else its type name and message)."""
    if error is None:
        return VALUE + serializer.dumps(value)
    try:
        return ERROR + serializer.dumps(error)
    except Exception:
        text = f"{type(error).__qualname__}\n{error}"
        return FOREIGN + text.encode("utf-8", "replace")


def load_outcome(serializer: Serializer, data: bytes) -> Any:
    """The value a follower returns, or raises the leader's exception."""
    kind, payload = data[:1], data[1:]
    if kind == VALUE:
        return serializer.loads(payload)
    if kind == ERROR:
        try:
            exc = serializer.loads(payload)
        except Exception as e:
            raise RemoteError("the shared call failed; its exception could not be decoded") from e
        if isinstance(exc, BaseException):
            raise exc
        raise RemoteError(f"the shared call failed with {exc!r}")
    type_name, _, message = payload.decode("utf-8", "replace").partition("\n")
    raise RemoteError(
        f"the shared call failed in another process: {type_name}: {message}", type_name
    )


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


@dataclass(frozen=True, slots=True)
class RedisSemaphoreStatistics:
    """This process's view of a ``corral.redis.Semaphore`` (``sem.statistics()``); the
    server-wide view is ``server_statistics()``."""

    size: int
    held: int  #: permits held by this process
    waiting: int  #: acquires of this process queued in Redis
    acquired: int  #: acquires granted to this process since it was made
    lost: int  #: holders of this process whose lease ran out before release


def unavailable(what: str, exc: BaseException) -> RedisUnavailable:
    return RedisUnavailable(f"{what}: Redis is unreachable or failed mid-call: {exc}")


def intervals(lease_ms: int) -> tuple[float, float]:
    """(renew every, check every) in seconds: a holder renews three times per lease (two
    renewals may fail and it still holds); a waiter re-checks twice per lease, so it sees a
    dead leader or holder within 1.5 leases."""
    return lease_ms / 3000, lease_ms / 2000


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

    __slots__ = ("epoch", "lease", "ns")

    def __init__(self, ns: str, key: str) -> None:
        self.ns = ns
        self.lease = f"{ns}:sf:{key}:lease"
        self.epoch = f"{ns}:sf:epoch"

    def result(self, token: str) -> str:
        return f"{self.ns}:sf:r:{token}"

    def channel(self, token: str) -> str:
        return f"{self.ns}:sf:c:{token}"


class SemKeys:
    """The Redis keys of one Semaphore name."""

    __slots__ = ("channel", "keys")

    def __init__(self, name: str) -> None:
        self.keys = [f"{name}:{k}" for k in ("m", "h", "q", "qx")]
        self.channel = f"{name}:c"


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
