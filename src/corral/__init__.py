"""corral: Go's concurrency patterns for Python, for asyncio tasks and threads.

``corral`` is the asyncio flavour plus the flavour-neutral names (Context, errors,
statistics types); ``corral.threads`` mirrors it name for name with blocking calls.
Channels and semaphores of the two flavours are views of one shared state
(``ch.as_threads()``, ``ch.as_async()``), so threads and tasks can share them.
"""

from ._aio.channel import Channel as Channel
from ._aio.group import Group as Group
from ._aio.ratelimit import Limits as Limits
from ._aio.ratelimit import RateLimit as RateLimit

# What acquire() returns, under names users can import and annotate with (the classes
# keep their private names; corral.threads exports the same three names for its own types).
from ._aio.ratelimit import RateLimitAcquire as RateLimitAcquire
from ._aio.ratelimit import _LimitsAcquire as LimitsAcquire
from ._aio.select import select as select
from ._aio.semaphore import Semaphore as Semaphore
from ._aio.semaphore import SemaphoreAcquire as SemaphoreAcquire
from ._aio.singleflight import SingleFlight as SingleFlight
from ._core.channel import ChannelStatistics as ChannelStatistics
from ._core.channel import RecvCase as RecvCase
from ._core.channel import SendCase as SendCase
from ._core.context import CancelContext as CancelContext
from ._core.context import Context as Context
from ._core.context import background as background
from ._core.context import with_cancel as with_cancel
from ._core.context import with_deadline as with_deadline
from ._core.context import with_timeout as with_timeout
from ._core.context import with_value as with_value
from ._core.context import without_cancel as without_cancel
from ._core.group import GroupStatistics as GroupStatistics
from ._core.ratelimit import RateLimitStatistics as RateLimitStatistics
from ._core.semaphore import SemaphoreStatistics as SemaphoreStatistics
from ._core.singleflight import FlightResult as FlightResult
from ._core.singleflight import SingleFlightStatistics as SingleFlightStatistics
from ._errors import Cancelled as Cancelled
from ._errors import ChannelClosed as ChannelClosed
from ._errors import CorralError as CorralError
from ._errors import DeadlineExceeded as DeadlineExceeded
from ._errors import EndOfChannel as EndOfChannel
from ._errors import GroupError as GroupError
from ._errors import ThreadStartError as ThreadStartError
from ._errors import WouldBlock as WouldBlock
from ._patterns._aio_flow import Flow as Flow
from ._patterns._aio_flow import fan_out as fan_out
from ._patterns._aio_flow import pipeline as pipeline
from ._patterns._aio_relays import Relay as Relay
from ._patterns._aio_relays import RelayChannel as RelayChannel
from ._patterns._aio_relays import fan_in as fan_in
from ._patterns._aio_relays import or_done as or_done
from ._patterns._aio_relays import tee as tee
from ._patterns._plan import Outcome as Outcome
from ._patterns._plan import Stage as Stage
from ._patterns._plan import stage as stage
from ._patterns._stats import PipelineStatistics as PipelineStatistics
from ._patterns._stats import Progress as Progress
from ._patterns._stats import StageStatistics as StageStatistics
from ._select import Selected as Selected
from ._shells import Grant as Grant

# The thread flavour's view classes, loaded with the asyncio ones: the two shells do not
# import each other, so as_threads() finds its twin in the view families that defining
# these classes fills (_core/views.py). Small modules; corral.threads needs them anyway.
from ._threads import channel as _threads_channel  # noqa: F401
from ._threads import ratelimit as _threads_ratelimit  # noqa: F401
from ._threads import semaphore as _threads_semaphore  # noqa: F401
from ._threads import singleflight as _threads_singleflight  # noqa: F401

__version__ = "0.1.0"

# `import corral` makes `corral.threads` reachable as an attribute, as users expect of a
# package's flavour submodule (the thread view classes are loaded above anyway).
from . import threads as threads

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
