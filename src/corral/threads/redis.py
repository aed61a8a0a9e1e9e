"""SingleFlight and the weighted Semaphore shared by every process on one Redis, for threads
over a blocking ``redis.Redis`` (``pip install 'corral[redis]'``). The same objects as
``corral.redis`` (asyncio); see there and docs/redis.md."""

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
from .._redis.limits_threads import Limits
from .._redis.rate_common import CrossSlot, RedisRateLimitStatistics
from .._redis.rate_threads import Grant, RateLimit
from .._redis.threads import SingleFlight
from .._redis.threads_semaphore import Permit, Semaphore

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
