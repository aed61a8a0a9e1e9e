"""The article's errgroup snippet (``fetchDashboardData``) in Python, with ``corral.Group``.

Go::

    g, ctx := errgroup.WithContext(ctx)
    g.Go(func() error { orders, err = orderService.GetRecent(ctx, userID); return err })
    g.Go(func() error { stats, err = statsService.Get(ctx, userID); return err })
    g.Go(func() error { notifications, err = notifService.GetUnread(ctx, userID); return err })
    if err := g.Wait(); err != nil {
        return nil, err // First error cancels all goroutines via ctx
    }

In Python the group is a block: leaving it is ``g.Wait()``, and it raises the first error
itself. When one call fails, the others are cancelled (tasks) or see ``g.ctx`` done
(threads). Run it: ``python docs/examples/errgroup.py``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import corral
import corral.threads


class ServiceError(Exception):
    pass


@dataclass
class Dashboard:
    orders: list[str]
    stats: dict[str, int]
    notifications: list[str]


class Service:
    """A remote service: answers after ``latency`` seconds, or fails."""

    def __init__(self, name: str, answer: Any, latency: float, *, down: bool = False):
        self.name, self.answer, self.latency, self.down = name, answer, latency, down
        self.finished = False

    async def get(self, ctx: corral.Context, user_id: int) -> Any:
        if self.down:
            raise ServiceError(f"{self.name} service unavailable")
        await asyncio.sleep(self.latency)  # the network call; cancelled if a sibling fails
        self.finished = True
        return self.answer

    def get_blocking(self, ctx: corral.Context, user_id: int) -> Any:
        if self.down:
            raise ServiceError(f"{self.name} service unavailable")
        # A blocking call that watches ctx: threads cannot be interrupted, so they look.
        if ctx.wait_blocking(timeout=self.latency):
            ctx.raise_if_cancelled()
        self.finished = True
        return self.answer


def services(*, stats_down: bool = False) -> tuple[Service, Service, Service]:
    return (
        Service("orders", ["order-1", "order-2"], 0.01 if not stats_down else 10),
        Service("stats", {"visits": 7}, 0.02, down=stats_down),
        Service("notifications", ["welcome back"], 0.03 if not stats_down else 10),
    )


# --8<-- [start:twin]
async def fetch_dashboard_data(
    ctx: corral.Context, user_id: int, orders: Service, stats: Service, notif: Service
) -> Dashboard:
    async with corral.Group(ctx=ctx) as g:  # g, ctx := errgroup.WithContext(ctx)
        o = await g.go(orders.get, g.ctx, user_id)
        s = await g.go(stats.get, g.ctx, user_id)
        n = await g.go(notif.get, g.ctx, user_id)
    # Leaving the block waited for all three and raised the first error, if any.
    return Dashboard(o.result(), s.result(), n.result())


def fetch_dashboard_data_threads(
    ctx: corral.Context, user_id: int, orders: Service, stats: Service, notif: Service
) -> Dashboard:
    with corral.threads.Group(ctx=ctx) as g:  # the same, in threads
        o = g.go(orders.get_blocking, g.ctx, user_id)
        s = g.go(stats.get_blocking, g.ctx, user_id)
        n = g.go(notif.get_blocking, g.ctx, user_id)
    return Dashboard(o.result(), s.result(), n.result())


# --8<-- [end:twin]
def show(title: str, dashboard: Dashboard) -> None:
    print(f"{title}:")
    print(f"  orders: {dashboard.orders}")
    print(f"  stats: {dashboard.stats}")
    print(f"  notifications: {dashboard.notifications}")


def show_failure(title: str, err: Exception, svcs: tuple[Service, ...]) -> None:
    print(f"{title}:")
    print(f"  error: {err!r}")
    # Stopped early: cancelled, or never started (once the group failed, go() starts
    # nothing: errgroup would still run it).
    stopped = sorted(s.name for s in svcs if not s.finished and not s.down)
    print(f"  the others stopped early: {stopped}")


async def main() -> None:
    ctx = corral.background()
    show("dashboard for user 42", await fetch_dashboard_data(ctx, 42, *services()))

    svcs = services(stats_down=True)
    try:
        await fetch_dashboard_data(ctx, 42, *svcs)
    except ServiceError as err:
        show_failure("stats service down", err, svcs)

    show("threads, dashboard for user 42", fetch_dashboard_data_threads(ctx, 42, *services()))
    svcs = services(stats_down=True)
    try:
        fetch_dashboard_data_threads(ctx, 42, *svcs)
    except ServiceError as err:
        show_failure("threads, stats service down", err, svcs)


if __name__ == "__main__":
    asyncio.run(main())
