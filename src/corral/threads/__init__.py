"""corral for threads: the same names as ``corral``, with blocking calls.

Flavour-neutral names (Context and friends, errors, statistics types) are the very same
objects as in ``corral``.
"""

from .._core.channel import ChannelStatistics as ChannelStatistics
from .._core.channel import RecvCase as RecvCase
from .._core.channel import SendCase as SendCase
from .._core.context import CancelContext as CancelContext
from .._core.context import Context as Context
from .._core.context import background as background
from .._core.context import with_cancel as with_cancel
from .._core.context import with_deadline as with_deadline
from .._core.context import with_timeout as with_timeout
from .._core.context import with_value as with_value
from .._core.context import without_cancel as without_cancel
from .._core.group import GroupStatistics as GroupStatistics
from .._core.ratelimit import RateLimitStatistics as RateLimitStatistics
from .._core.semaphore import SemaphoreStatistics as SemaphoreStatistics
from .._core.singleflight import FlightResult as FlightResult
from .._core.singleflight import SingleFlightStatistics as SingleFlightStatistics
from .._errors import Cancelled as Cancelled
from .._errors import ChannelClosed as ChannelClosed
from .._errors import CorralError as CorralError
from .._errors import DeadlineExceeded as DeadlineExceeded
from .._errors import EndOfChannel as EndOfChannel
from .._errors import GroupError as GroupError
from .._errors import ThreadStartError as ThreadStartError
from .._errors import WouldBlock as WouldBlock
from .._patterns._plan import Outcome as Outcome
from .._patterns._plan import Stage as Stage
from .._patterns._plan import stage as stage
from .._patterns._stats import PipelineStatistics as PipelineStatistics
from .._patterns._stats import Progress as Progress
from .._patterns._stats import StageStatistics as StageStatistics
from .._patterns._threads_flow import Flow as Flow
from .._patterns._threads_flow import fan_out as fan_out
from .._patterns._threads_flow import pipeline as pipeline
from .._patterns._threads_relays import Relay as Relay
from .._patterns._threads_relays import RelayChannel as RelayChannel
from .._patterns._threads_relays import fan_in as fan_in
from .._patterns._threads_relays import or_done as or_done
from .._patterns._threads_relays import tee as tee
from .._select import Selected as Selected
from .._shells import Grant as Grant

# What acquire() returns, under the names corral uses for its own (awaitable) handles:
# here the held permits, the taken cost and the Grant themselves.
from .._shells import Grant as LimitsAcquire
from .._threads.channel import Channel as Channel
from .._threads.group import Group as Group
from .._threads.ratelimit import Limits as Limits
from .._threads.ratelimit import RateLimit as RateLimit
from .._threads.ratelimit import Taken as RateLimitAcquire
from .._threads.select import select as select
from .._threads.semaphore import Held as SemaphoreAcquire
from .._threads.semaphore import Semaphore as Semaphore
from .._threads.singleflight import SingleFlight as SingleFlight

__all__ = [
    "CancelContext",
    "Cancelled",
    "Channel",
    "ChannelClosed",
    "ChannelStatistics",
    "Context",
    "CorralError",
    "DeadlineExceeded",
    "EndOfChannel",
    "FlightResult",
    "Flow",
    "Grant",
    "Group",
    "GroupError",
    "GroupStatistics",
    "Limits",
    "LimitsAcquire",
    "Outcome",
    "PipelineStatistics",
    "Progress",
    "RateLimit",
    "RateLimitAcquire",
    "RateLimitStatistics",
    "RecvCase",
    "Relay",
    "RelayChannel",
    "Selected",
    "Semaphore",
    "SemaphoreAcquire",
    "SemaphoreStatistics",
    "SendCase",
    "SingleFlight",
    "SingleFlightStatistics",
    "Stage",
    "StageStatistics",
    "ThreadStartError",
    "WouldBlock",
    "background",
    "fan_in",
    "fan_out",
    "or_done",
    "pipeline",
    "select",
    "stage",
    "tee",
    "with_cancel",
    "with_deadline",
    "with_timeout",
    "with_value",
    "without_cancel",
]
