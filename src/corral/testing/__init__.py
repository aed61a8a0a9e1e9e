"""Test helpers for corral and for code built on it.

Three tools that work on any asyncio or threaded code, not only on corral's:

* **Schedule exploration** — :func:`explore` runs an asyncio scenario under many different
  but reproducible interleavings. Each run gets a seed; the seed drives a task factory that
  delays task resumptions at random (so tasks overtake each other in ways plain asyncio's
  FIFO ready queue never shows), a virtual clock (``timeout=`` and ``asyncio.sleep`` take
  no real time and fire in a reproducible order), corral's ``select`` choice, and
  :attr:`Schedule.rng` for the scenario's own random data. The same seed replays the same
  schedule: :func:`run_schedule` ``(scenario, seed)`` or ``CORRAL_SEED=<seed>``.
* **Cancellation sweep** — :func:`cancel_sweep` runs a scenario once to count its
  scheduling steps, then once per step ``k``, cancelling the scenario's chosen targets just
  before step ``k``: every point where a cancellation can land is tried.
* **Thread hammering** — :func:`hammer` starts workers behind a barrier with a tiny
  ``sys.setswitchinterval``, joins every thread, and re-raises what they raised.

And the leak-check hooks the test suite uses after every test: :func:`track`,
:func:`tracked_waiters`, :func:`untrack` (no corral waiter left queued),
:func:`wait_timers_idle`, and :func:`format_task_stacks` (what every task is awaiting).

>>> import asyncio, corral, corral.testing
>>> async def scenario(sched):
...     ch = corral.Channel(1)
...     async def produce(name):
...         for i in range(3):
...             await ch.send((name, i))
...     tasks = [asyncio.create_task(produce(name)) for name in "ab"]
...     got = [await ch.recv() for _ in range(6)]
...     await asyncio.gather(*tasks)
...     assert sorted(got) == [(n, i) for n in "ab" for i in range(3)], got
>>> report = corral.testing.explore(scenario, seeds=range(20))
corral.testing.explore: scenario, seeds 0..19
>>> report.runs, report.distinct_traces > 1
(20, True)
"""

from __future__ import annotations

from .._core.clock import ManualClock as ManualClock
from ._explore import CANCEL_AT_ENV as CANCEL_AT_ENV
from ._explore import SEED_ENV as SEED_ENV
from ._explore import ExploreReport as ExploreReport
from ._explore import Scenario as Scenario
from ._explore import ScheduleFailure as ScheduleFailure
from ._explore import ScheduleResult as ScheduleResult
from ._explore import explore as explore
from ._explore import run_schedule as run_schedule
from ._hammer import hammer as hammer
from ._leaks import format_task_stacks as format_task_stacks
from ._leaks import track as track
from ._leaks import tracked_waiters as tracked_waiters
from ._leaks import untrack as untrack
from ._leaks import wait_timers_idle as wait_timers_idle
from ._schedule import Deadlock as Deadlock
from ._schedule import Schedule as Schedule
from ._schedule import seed_select as seed_select
from ._sweep import SweepReport as SweepReport
from ._sweep import cancel_sweep as cancel_sweep

__all__ = [
    "Deadlock",
    "ExploreReport",
    "ManualClock",
    "Schedule",
    "ScheduleFailure",
    "ScheduleResult",
    "SweepReport",
    "cancel_sweep",
    "explore",
    "format_task_stacks",
    "hammer",
    "run_schedule",
    "seed_select",
    "track",
    "tracked_waiters",
    "untrack",
    "wait_timers_idle",
]
