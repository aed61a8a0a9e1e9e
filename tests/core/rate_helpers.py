"""Shared bits of the rate-limit tests: each world's view of a RateLimit, and a manual clock
stepped from the test's loop (grants made by a clock call-back wake waiters in any world)."""

from __future__ import annotations

import asyncio
from typing import Any

import corral
from corral.testing import ManualClock

from .flavours import World, until


def view(world: World, rl: Any) -> Any:
    """``world``'s view of a RateLimit (or Semaphore) made by either flavour."""
    if world.is_loop:
        return rl if isinstance(rl, (corral.RateLimit, corral.Semaphore)) else rl.as_async()
    return rl.as_threads() if isinstance(rl, (corral.RateLimit, corral.Semaphore)) else rl


async def waiting(rl: Any, n: int) -> None:
    """Until ``n`` acquires are queued in ``rl`` (a poll: see flavours.parked)."""
    await until(lambda: rl.statistics().waiting == n, f"{rl!r} to have {n} waiting")


async def step(clock: ManualClock, seconds: float) -> None:
    """Advance the clock, then let this loop run what the call-backs woke."""
    clock.advance(seconds)
    await asyncio.sleep(0)


def most_in_window(stamps: list[float], per: float) -> int:
    """The most instants any half-open window ``[t, t + per)`` holds (a nanosecond of
    tolerance for float sums: instants 0.1 apart ten times are 0.9999999999999999 apart)."""
    s = sorted(stamps)
    most = j = 0
    for i, t in enumerate(s):
        while j < len(s) and s[j] < t + per - 1e-9:
            j += 1
        most = max(most, j - i)
    return most
