"""The dashboard service, threads flavour: corral.threads.Group, SingleFlight and Semaphore.

The same service as ``aio.py`` with blocking calls. Threads cannot be interrupted, so a
lookup learns that its Group gave up through ``g.ctx``: the semaphore's ``acquire`` takes
it, and the database's simulated round trip waits on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import corral
import corral.threads

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

Rows = list[tuple[Any, ...]]
LookupFn = Callable[[Context, Dashboard, "Lookup | None"], None]


class DashboardService(ServiceBase):
    def __init__(self, db: Database, cfg: DemoConfig, counters: Counters, fault: FaultReport):
        super().__init__(db, cfg, counters, fault)
        self._sem = corral.threads.Semaphore(cfg.db_limit)
        self._sf: corral.threads.SingleFlight[int, tuple[User, int]] = corral.threads.SingleFlight()
        self._fault_lock = threading.Lock()
        self._fault_siblings_started = threading.Event()

    # -- the database, behind the Semaphore --------------------------------------------------

    def _query(
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
        with self._sem.acquire(1, ctx=ctx):
            if lookup is not None:
                lookup.stage = Stage.QUERY
            if on_query is not None:
                on_query()  # from here on the statement runs, whatever happens to the caller
            # Only the failing request's lookups carry a ``lookup``; their queries hang until
            # the Group cancels them, so that cancellation is certain to be what ends them.
            return self._db.query(sql, params, ctx or background(), hang=lookup is not None)

    # -- users: cache, then SingleFlight on a miss -------------------------------------------

    def get_user(self, user_id: int, lookup: Lookup | None) -> User:
        user = self._cached_user(user_id, lookup)
        if user is not None:
            return user
        user, load_id = self._sf.do(user_id, self._load_user, user_id)
        self._counters.load_served(load_id)
        return user

    def _load_user(self, user_id: int) -> tuple[User, int]:
        load_id = self._counters.load_started()
        rows = self._query(None, USER_SQL, (user_id,), on_query=self._counters.load_queried)
        return self._cache_user(user_id, rows), load_id

    # -- the three lookups of a dashboard ----------------------------------------------------

    def _orders(self, ctx: Context, d: Dashboard, lookup: Lookup | None) -> None:
        user = self.get_user(d.user_id, lookup)
        rows = self._query(ctx, ORDERS_SQL, (d.user_id,), lookup=lookup)
        d.orders = [(oid, f"{cents / 100:.2f} {user.currency}", at) for oid, cents, at in rows]

    def _stats(self, ctx: Context, d: Dashboard, lookup: Lookup | None) -> None:
        user = self.get_user(d.user_id, lookup)
        if lookup is not None:
            # The injected failure, once both siblings are under way.
            self._fault_siblings_started.wait(30)
            raise self._inject_failure(d.user_id)
        rows = self._query(ctx, STATS_SQL, (d.user_id,), lookup=lookup)
        d.stats = (user.plan, *rows[0])

    def _notifications(self, ctx: Context, d: Dashboard, lookup: Lookup | None) -> None:
        user = self.get_user(d.user_id, lookup)
        rows = self._query(ctx, NOTIFICATIONS_SQL, (d.user_id, user.last_seen), lookup=lookup)
        d.unread_notifications = rows[0][0]

    def _observed(self, fn: LookupFn, ctx: Context, d: Dashboard, lookup: Lookup) -> None:
        """Run one lookup of the failing request, recording how it ends."""
        with self._fault_lock:
            lookup.started = True
            if all(lk.started for lk in self._fault.siblings):
                self._fault_siblings_started.set()
        try:
            fn(ctx, d, lookup)
        except corral.Cancelled:
            lookup.outcome = f"cancelled by the Group (g.ctx) while {lookup.stage}"
            raise
        except BaseException as exc:
            lookup.outcome = f"raised {exc!r}"
            raise
        lookup.outcome = "completed"

    # -- one request -------------------------------------------------------------------------

    def dashboard(self, request: int, user_id: int) -> Dashboard:
        d = Dashboard(user_id)
        lookups: list[tuple[str, LookupFn]] = [
            ("orders", self._orders),
            ("stats", self._stats),
            ("notifications", self._notifications),
        ]
        with corral.threads.Group() as g:
            for name, fn in lookups:
                if request == self._fault.request:
                    g.go(self._observed, fn, g.ctx, d, self._fault.lookups[name])
                else:
                    g.go(fn, g.ctx, d, None)
        return d

    def handle(self, request: int, user_id: int) -> None:
        start = time.perf_counter()
        try:
            self.dashboard(request, user_id)
        except StatsUnavailable as exc:
            if request != self._fault.request:
                raise
            self._fault_surfaced(exc, start)
        else:
            self._counters.request_done(time.perf_counter() - start, ok=True)

    # -- the load ----------------------------------------------------------------------------

    def serve(self, keys: list[int]) -> None:
        """Serve one request per key, ``concurrency`` at a time, fed through a Channel."""
        requests: corral.threads.Channel[tuple[int, int]] = corral.threads.Channel(
            self._cfg.concurrency
        )

        def produce(ctx: Context) -> None:
            try:
                for item in enumerate(keys):
                    requests.send(item, ctx=ctx)
            finally:
                requests.close()

        def worker(ctx: Context) -> None:
            # Threads cannot be interrupted: if another worker fails, stop at the next request.
            for request, user_id in requests:
                ctx.raise_if_cancelled()
                self.handle(request, user_id)

        with corral.threads.Group() as g:
            g.go(produce, g.ctx)
            for _ in range(self._cfg.concurrency):
                g.go(worker, g.ctx)


def run(
    db: Database, cfg: DemoConfig, keys: list[int], counters: Counters, fault: FaultReport
) -> None:
    """Serve ``keys`` (one request each) with the threads flavour of the service."""
    service = DashboardService(db, cfg, counters, fault)
    service.serve(keys)
    stats = service.singleflight_statistics()
    counters.sf_started, counters.sf_joined = stats.started, stats.joined
