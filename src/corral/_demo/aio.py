"""The dashboard service, asyncio flavour: corral.Group, corral.SingleFlight, corral.Semaphore.

SQLite is blocking, so every query runs in a worker thread while its task holds a
``Semaphore`` permit. A task cancelled during a query still waits for the worker thread to
hand its connection back before it gives up the permit: releasing the permit earlier
would let one more connection into use than the limit allows.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import corral

from .._core.context import Context, background
from .common import (
    NOTIFICATIONS_SQL,
    ORDERS_SQL,
    STATS_SQL,
    USER_SQL,
    Counters,
    Dashboard,
    DemoConfig,
    FaultReport,
    Lookup,
    ServiceBase,
    Stage,
    StatsUnavailable,
    User,
)
from .db import Database

__all__ = ["run"]

T = TypeVar("T")
Rows = list[tuple[Any, ...]]
LookupFn = Callable[[Context, Dashboard, "Lookup | None"], Awaitable[None]]


async def _await_thread(fut: asyncio.Future[T]) -> T:
    """The worker thread's result. If this task is cancelled meanwhile, wait for the thread
    to finish anyway (it holds a connection and the caller's permit must cover that; the
    query ends soon, as it waits on the cancelled context), then re-raise the cancellation."""
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        while not fut.done():
            try:
                await asyncio.wait([fut])
            except asyncio.CancelledError:
                continue
        if not fut.cancelled():
            fut.exception()  # retrieved: the cancellation is what this task reports
        raise


class DashboardService(ServiceBase):
    def __init__(self, db: Database, cfg: DemoConfig, counters: Counters, fault: FaultReport):
        super().__init__(db, cfg, counters, fault)
        self._sem = corral.Semaphore(cfg.db_limit)
        self._sf: corral.SingleFlight[int, tuple[User, int]] = corral.SingleFlight()
        # Room for every lookup in flight, so the pool is never what limits the database: the
        # Semaphore alone does. (Idle workers are reused: only about db_limit ever start.)
        self._executor = ThreadPoolExecutor(
            cfg.db_limit + 3 * cfg.concurrency, thread_name_prefix="corral-demo-db"
        )
        self._fault_siblings_started = asyncio.Event()

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    # -- the database, behind the Semaphore --------------------------------------------------

    async def _query(
        self,
        ctx: Context | None,
        sql: str,
        params: tuple[object, ...],
        *,
        lookup: Lookup | None = None,
        on_query: Callable[[], None] | None = None,
    ) -> Rows:
        if lookup is not None:
            lookup.stage = Stage.PERMIT
        async with self._sem.acquire(1, ctx=ctx):
            if lookup is not None:
                lookup.stage = Stage.QUERY
            if on_query is not None:
                on_query()  # from here on the statement runs, whatever happens to the caller
            # Only the failing request's lookups carry a ``lookup``; their queries hang until
            # the Group cancels them, so that cancellation is certain to be what ends them.
            call = functools.partial(
                self._db.query, sql, params, ctx or background(), hang=lookup is not None
            )
            fut = asyncio.get_running_loop().run_in_executor(self._executor, call)
            return await _await_thread(fut)

    # -- users: cache, then SingleFlight on a miss -------------------------------------------

    async def get_user(self, user_id: int, lookup: Lookup | None) -> User:
        user = self._cached_user(user_id, lookup)
        if user is not None:
            return user
        user, load_id = await self._sf.do(user_id, self._load_user, user_id)
        self._counters.load_served(load_id)
        return user

    async def _load_user(self, user_id: int) -> tuple[User, int]:
        # The shared load belongs to no single request: no request's context cancels it.
        load_id = self._counters.load_started()
        rows = await self._query(None, USER_SQL, (user_id,), on_query=self._counters.load_queried)
        return self._cache_user(user_id, rows), load_id

    # -- the three lookups of a dashboard ----------------------------------------------------

    async def _orders(self, ctx: Context, d: Dashboard, lookup: Lookup | None) -> None:
        user = await self.get_user(d.user_id, lookup)
        rows = await self._query(ctx, ORDERS_SQL, (d.user_id,), lookup=lookup)
        d.orders = [(oid, f"{cents / 100:.2f} {user.currency}", at) for oid, cents, at in rows]

    async def _stats(self, ctx: Context, d: Dashboard, lookup: Lookup | None) -> None:
        user = await self.get_user(d.user_id, lookup)
        if lookup is not None:
            # The injected failure, once both siblings are under way.
            await asyncio.wait_for(self._fault_siblings_started.wait(), 30)
            raise self._inject_failure(d.user_id)
        rows = await self._query(ctx, STATS_SQL, (d.user_id,), lookup=lookup)
        d.stats = (user.plan, *rows[0])

    async def _notifications(self, ctx: Context, d: Dashboard, lookup: Lookup | None) -> None:
        user = await self.get_user(d.user_id, lookup)
        rows = await self._query(ctx, NOTIFICATIONS_SQL, (d.user_id, user.last_seen), lookup=lookup)
        d.unread_notifications = rows[0][0]

    async def _observed(self, fn: LookupFn, ctx: Context, d: Dashboard, lookup: Lookup) -> None:
        """Run one lookup of the failing request, recording how it ends."""
        lookup.started = True
        if all(lk.started for lk in self._fault.siblings):
            self._fault_siblings_started.set()
        try:
            await fn(ctx, d, lookup)
        except asyncio.CancelledError:
            lookup.outcome = f"cancelled by the Group (task) while {lookup.stage}"
            raise
        except corral.Cancelled:
            lookup.outcome = f"cancelled by the Group (g.ctx) while {lookup.stage}"
            raise
        except BaseException as exc:
            lookup.outcome = f"raised {exc!r}"
            raise
        lookup.outcome = "completed"

    # -- one request -------------------------------------------------------------------------

    async def dashboard(self, request: int, user_id: int) -> Dashboard:
        d = Dashboard(user_id)
        lookups: list[tuple[str, LookupFn]] = [
            ("orders", self._orders),
            ("stats", self._stats),
            ("notifications", self._notifications),
        ]
        async with corral.Group() as g:
            for name, fn in lookups:
                if request == self._fault.request:
                    await g.go(self._observed, fn, g.ctx, d, self._fault.lookups[name])
                else:
                    await g.go(fn, g.ctx, d, None)
        return d

    async def handle(self, request: int, user_id: int) -> None:
        start = time.perf_counter()
        try:
            await self.dashboard(request, user_id)
        except StatsUnavailable as exc:
            if request != self._fault.request:
                raise
            self._fault_surfaced(exc, start)
        else:
            self._counters.request_done(time.perf_counter() - start, ok=True)

    # -- the load ----------------------------------------------------------------------------

    async def serve(self, keys: list[int]) -> None:
        """Serve one request per key, ``concurrency`` at a time, fed through a Channel."""
        requests: corral.Channel[tuple[int, int]] = corral.Channel(self._cfg.concurrency)

        async def produce() -> None:
            try:
                for item in enumerate(keys):
                    await requests.send(item)
            finally:
                requests.close()

        async def worker() -> None:
            async for request, user_id in requests:
                await self.handle(request, user_id)

        async with corral.Group() as g:
            await g.go(produce)
            for _ in range(self._cfg.concurrency):
                await g.go(worker)


def run(
    db: Database, cfg: DemoConfig, keys: list[int], counters: Counters, fault: FaultReport
) -> None:
    """Serve ``keys`` (one request each) with the asyncio flavour of the service."""

    async def main() -> None:
        service = DashboardService(db, cfg, counters, fault)
        try:
            await service.serve(keys)
        finally:
            service.close()
        stats = service.singleflight_statistics()
        counters.sf_started, counters.sf_joined = stats.started, stats.joined

    asyncio.run(main())
