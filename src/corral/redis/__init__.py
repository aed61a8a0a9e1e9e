"""SingleFlight and the weighted Semaphore shared by every process on one Redis, for asyncio
(``pip install 'corral[redis]'``; the thread flavour is ``corral.threads.redis``).

* :class:`SingleFlight` — one execution of a call per key across every process; the others
  get its value. The leader holds a renewed lease; if it dies, a follower takes over.
* :class:`Semaphore` — weighted, FIFO across processes; permits are held under renewed
  leases, so a dead holder's permits come back when its lease runs out.

Errors: :class:`RedisUnavailable` (Redis unreachable, or it lost its state mid-call),
:class:`LeaseLost` (this process's lease was lost while it held it: also the cause of
the lease's cancelled Context), :class:`RedisUnsupported` (a server too old, a cross-slot
refusal), :class:`NotReplicated` (a grant fewer replicas than ``replicas=`` acknowledged,
given back: a subclass of ``RedisUnavailable``), :class:`RemoteError`
(another process's exception could not be carried across), :class:`SizeConflict` (a
semaphore name used with two sizes). See docs/redis.md.
"""

from .._redis.aio import SingleFlight
from .._redis.aio_semaphore import Permit, Semaphore
from .._redis.common import (
    LeaseLost,
    NotReplicated,
    RedisSemaphoreStatistics,
    RedisSingleFlightStatistics,
    RedisUnavailable,
    RedisUnsupported,
    RemoteError,
    Serializer,
    SizeConflict,
)
from .._redis.limits_aio import Limits
from .._redis.rate_aio import Grant, RateLimit
from .._redis.rate_common import CrossSlot, RedisRateLimitStatistics

__all__ = [
    "CrossSlot",
    "Grant",
    "LeaseLost",
    "Limits",
    "NotReplicated",
    "Permit",
    "RateLimit",
    "RedisRateLimitStatistics",
    "RedisSemaphoreStatistics",
    "RedisSingleFlightStatistics",
    "RedisUnavailable",
    "RedisUnsupported",
    "RemoteError",
    "Semaphore",
    "Serializer",
    "SingleFlight",
    "SizeConflict",
]
