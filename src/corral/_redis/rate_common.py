"""What both flavours of the Redis rate limits share and that does no I/O: the arguments'
checks, the key names, the statistics, the cross-slot error and the per-limit constants."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from .._core.ratelimit import check_cost, check_rate_args
from .common import RedisUnsupported, check_namespace

__all__ = [
    "CrossSlot",
    "RateKeys",
    "RedisRateLimitStatistics",
    "ServerClock",
    "check_headroom",
    "late_shift_us",
]

#: How far ahead a grant may be reserved (seconds): a caller whose cost is due within this
#: is granted at once, as of its due instant, and sleeps locally until then. It absorbs the
#: lateness of a waiter's own wake-up and of its round trip, which would otherwise be
#: charged to the rate (a grant taken from a late "now" pushes every later one back).
HORIZON = 0.1


class ServerClock:
    """This process's estimate of the server's clock (``TIME``, which decides every grant):
    the offset from ``time.time()`` seen by the script call with the shortest round trip so
    far (its error is at most half that round trip), so a caller granted "as of instant s"
    returns at s on the server's clock, whichever process or host it runs on. A sample
    older than ``_FRESH`` seconds is replaced by any newer one within 1.5x its round trip,
    so a clock that is slewed is followed."""

    __slots__ = ("offset", "rtt", "samples", "when")

    _FRESH = 10.0

    def __init__(self) -> None:
        self.offset = 0.0
        self.rtt = float("inf")
        self.when = 0.0
        self.samples = 0

    def sample(self, sent: float, received: float, server_us: int) -> None:
        rtt = received - sent
        self.samples += 1
        if rtt <= self.rtt or (received - self.when > self._FRESH and rtt <= 1.5 * self.rtt):
            self.offset = server_us / 1e6 - (sent + received) / 2
            self.rtt = rtt
            self.when = received

    def until(self, server_us: int) -> float:
        """Seconds from now until the server's clock reads ``server_us``."""
        return server_us / 1e6 - self.offset - time.time()


def late_shift_us(late: float, rtt: float, headroom: float) -> int:
    """How far (microseconds) the grants not yet made must move back after a caller
    returned ``late`` seconds past its grant's instant, as this process's estimate of the
    server's clock says (``ServerClock``: its error is at most half the best round trip
    ``rtt``), so that a window starting at that return holds no more than the limit: 0 when
    the headroom surely covers it.

    The caller was at most ``late + rtt / 2`` late, and only what exceeds the headroom
    needs moving. (The rule this replaces took the least lateness, ``late - rtt / 2``, then
    added back a whole ``rtt`` and a fifth of the headroom: every report moved the schedule
    1 ms more than needed at the default headroom, callers 4-5 ms late reported at all, and
    with a round trip over a fifth of the headroom a caller that may have been past the
    headroom did not report.)
    """
    excess = late + rtt / 2 - headroom
    return round(excess * 1e6) if excess > 0 else 0


class CrossSlot(RedisUnsupported, ValueError):
    """The limiters of one ``corral.redis.Limits`` do not share a hash tag (or a client,
    or a namespace): their keys could be on different Cluster slots, and one script could
    not grant them atomically. Give them one ``tag=``. Raised at construction; a
    :class:`RedisUnsupported` (what a cross-slot reply from the server raises) and a
    ``ValueError``."""


@dataclass(frozen=True, slots=True)
class RedisRateLimitStatistics:
    """This process's view of a ``corral.redis.RateLimit`` (``rl.statistics()``, no I/O)."""

    rate: float  #: units of cost per ``per`` seconds
    per: float
    burst: float  #: the most cost granted at one instant, and the largest single cost
    waiting: int  #: acquires of this process queued in Redis
    acquired: int  #: acquires granted to this process since it was made
    granted: float  #: cost granted to this process, net of adjustments and refunds
    #: reports by acquires of this process that resumed later after their grant's instant
    #: than the headroom covers (not scheduled in time), each pushing the next grants back
    late: int


def check_headroom(headroom: object, per: float, what: str) -> float:
    if isinstance(headroom, bool) or not isinstance(headroom, int | float):
        raise TypeError(
            f"{what}: headroom must be a number of seconds, got {type(headroom).__name__}"
        )
    if not (0 <= headroom < per and math.isfinite(headroom)):
        raise ValueError(f"{what}: headroom must be >= 0 and < per ({per}), got {headroom!r}")
    return float(headroom)


class RateKeys:
    """One limiter's keys and constants (see ``rate_scripts``)."""

    __slots__ = (
        "_keys",
        "burst",
        "epoch",
        "group",
        "headroom",
        "interval_us",
        "last",
        "per",
        "prefix",
        "rate",
        "solo",
        "tat",
        "what",
    )

    def __init__(
        self,
        name: object,
        rate: object,
        per: object,
        burst: object,
        namespace: object,
        tag: object,
        headroom: object,
        what: str,
    ) -> None:
        n = check_namespace(name, what, "name")
        ns = check_namespace(namespace, what)
        g = n if tag is None else check_namespace(tag, what, "tag")
        for arg, v in (("name", n), ("namespace", ns), ("tag", g)):
            if "{" in v or "}" in v:
                raise ValueError(f"{what}: {arg} must not contain braces, got {v!r}")
        try:
            self.rate, self.per, self.burst = check_rate_args(rate, per, burst)
        except (TypeError, ValueError) as exc:
            raise type(exc)(str(exc).replace("RateLimit:", f"{what}:", 1)) from None
        self.headroom = h = check_headroom(headroom, self.per, what)
        self.what = what
        # ``rate`` per ``per + headroom`` seconds: see the class docstring for why.
        self.interval_us = (self.per + h) * 1e6 / self.rate
        self.group = (ns, g)
        self.prefix = f"{ns}:{{{g}}}:"
        self.epoch = f"{self.prefix}epoch"
        self.tat = f"{self.prefix}rl:{n}:t"
        base = self.tat[:-1]
        self._keys = [self.tat, base + "q", base + "x", base + "m", base + "s"]
        #: RL_ACQUIRE's keys for this limiter alone (the epoch, then ``keys()``), as a tuple.
        self.solo = (self.epoch, *self._keys)

    def keys(self) -> list[str]:
        """tat, queue, queue leases, entries, shift total (the per-limiter KEYS; a list
        made once: do not change it)."""
        return self._keys

    def cost(self, c: object, what: str) -> float:
        """``c`` checked against the burst (``ValueError`` naming ``cost``)."""
        try:
            return check_cost(c, self.burst, what)
        except ValueError as exc:
            raise ValueError(str(exc).replace("to the RateLimit", "to this RateLimit")) from None
