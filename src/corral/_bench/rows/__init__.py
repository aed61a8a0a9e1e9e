"""The built-in rows. Each module registers its rows when imported; add a module, import it here.

Planned (ids reserved, added by whoever writes them): ``group.spawn``, ``fanout.limit100``,
``pipeline.3stage``, ``fanout.cpu``, ``singleflight.10k``.
"""

from . import channels as channels
from . import dask_rows as dask_rows  # the dask extra: MISSING without distributed
from . import group_sf as group_sf
from . import memory as memory
from . import parallel as parallel
from . import patterns as patterns
from . import ratelimits as ratelimits
from . import redis_rate_rows as redis_rate_rows  # issue 21: fleet rate limits
from . import redis_rows as redis_rows
from . import semaphores as semaphores
