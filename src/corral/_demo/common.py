"""What both flavours of the demo share: settings, the service's records, its counters, and
the steps of the service that do not wait (:class:`ServiceBase`)."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._core.singleflight import SingleFlightStatistics
    from .db import Database

__all__ = [
    "USER_SQL",
    "Counters",
    "Dashboard",
    "DemoConfig",
    "FaultReport",
    "Lookup",
    "ServiceBase",
    "Stage",
    "StatsUnavailable",
    "TTLCache",
    "User",
    "percentile",
    "request_keys",
]

USER_SQL = "SELECT id, name, plan, currency, last_seen FROM users WHERE id = ?"
ORDERS_SQL = (
    "SELECT id, total_cents, created FROM orders WHERE user_id = ? ORDER BY created DESC LIMIT 5"
)
STATS_SQL = "SELECT visits, orders_count, spent_cents FROM stats WHERE user_id = ?"
NOTIFICATIONS_SQL = "SELECT count(*) FROM notifications WHERE user_id = ? AND created > ?"

LOOKUPS = ("orders", "stats", "notifications")
ZIPF_S = 1.1


@dataclass(frozen=True)
class DemoConfig:
    """The knobs of ``corral demo`` (the CLI's defaults live in ``corral.cli``)."""

    requests: int = 2000
    concurrency: int = 64
    users: int = 500
    db_limit: int = 8
    flavor: str = "asyncio"
    db: Path | None = None
    query_ms: float = 2.0
    cache_ttl_ms: float = 50.0
    seed: int = 1
    # Which request gets the injected failure (None: the middle one).
    fail_request: int | None = None

    @property
    def failing_request(self) -> int:
        return self.requests // 2 if self.fail_request is None else self.fail_request


@dataclass(frozen=True)
class User:
    id: int
    name: str
    plan: str
    currency: str
    last_seen: float


@dataclass
class Dashboard:
    """One response: the article's ``Dashboard{Orders, Stats, Notifications}``."""

    user_id: int
    orders: list[tuple[Any, ...]] = field(default_factory=list)
    stats: tuple[Any, ...] | None = None
    unread_notifications: int = 0


class StatsUnavailable(Exception):
    """The injected failure: one request's stats lookup fails."""


def request_keys(cfg: DemoConfig, users: int) -> list[int]:
    """The user asked for by each request: Zipf-skewed, so a few users are very hot."""
    rng = random.Random(cfg.seed)
    ids = list(range(1, users + 1))
    weights = [1.0 / (rank**ZIPF_S) for rank in ids]
    return rng.choices(ids, weights, k=cfg.requests)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (``q`` in 0..100)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class TTLCache:
    """The service's in-memory user cache; entries expire after ``ttl`` seconds."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[float, User]] = {}

    def get(self, key: int) -> User | None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def set(self, key: int, user: User) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + self._ttl, user)


class Counters:
    """What the service counts about itself while it runs (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.served = 0
        self.ok = 0
        self.failed = 0
        self.latencies: list[float] = []
        self.cache_hits = 0
        self.cache_misses = 0
        # Singleflight: each execution of the shared load gets an id; every caller that
        # receives a result notes the id it got. Callers beyond one per id were saved a query.
        self.loads_started = 0
        # Loads that reached the database. A load can end before that: SingleFlight cancels a
        # call when every caller has left (say, the failing request's cancelled siblings).
        self.loads_queried = 0
        self._served_by_load: Counter[int] = Counter()
        # The SingleFlight's own statistics at the end of the run, for a cross-check.
        self.sf_started = 0
        self.sf_joined = 0

    def request_done(self, seconds: float, ok: bool) -> None:
        with self._lock:
            self.served += 1
            if ok:
                self.ok += 1
            else:
                self.failed += 1
            self.latencies.append(seconds)

    def cache_hit(self) -> None:
        with self._lock:
            self.cache_hits += 1

    def cache_miss(self) -> None:
        with self._lock:
            self.cache_misses += 1

    def load_started(self) -> int:
        with self._lock:
            self.loads_started += 1
            return self.loads_started

    def load_queried(self) -> None:
        with self._lock:
            self.loads_queried += 1

    def load_served(self, load_id: int) -> None:
        with self._lock:
            self._served_by_load[load_id] += 1

    @property
    def singleflight_served(self) -> int:
        with self._lock:
            return sum(self._served_by_load.values())

    @property
    def singleflight_shared(self) -> int:
        """Callers that got the result of a load another caller had started."""
        with self._lock:
            return sum(n - 1 for n in self._served_by_load.values())


class Stage:
    """Where a lookup of the failing request is, for the report of how it was cancelled."""

    STARTING = "starting"
    USER = "waiting for the user (cache/singleflight)"
    PERMIT = "waiting for a database permit"
    QUERY = "in a database query"


@dataclass
class Lookup:
    """One lookup of the failing request, as observed from inside it."""

    name: str
    started: bool = False
    stage: str = Stage.STARTING
    outcome: str = "running"


@dataclass
class FaultReport:
    """What happened to the request that got the injected failure."""

    request: int
    user_id: int
    lookups: dict[str, Lookup]
    injected: BaseException | None = None
    surfaced: BaseException | None = None
    injected_at: float = 0.0  # time.perf_counter() when the failure was raised
    surfaced_after_ms: float = 0.0

    @property
    def siblings(self) -> list[Lookup]:
        return [lk for name, lk in self.lookups.items() if name != "stats"]

    @property
    def siblings_cancelled(self) -> int:
        return sum(lk.outcome.startswith("cancelled") for lk in self.siblings)

    def to_json(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "user": self.user_id,
            "lookup": "stats",
            "injected": None if self.injected is None else repr(self.injected),
            "surfaced": None if self.surfaced is None else repr(self.surfaced),
            "surfaced_is_injected": self.surfaced is not None and self.surfaced is self.injected,
            "surfaced_after_ms": round(self.surfaced_after_ms, 3),
            "siblings": {lk.name: lk.outcome for lk in self.siblings},
            "siblings_cancelled": self.siblings_cancelled,
        }


class _HasStatistics(Protocol):
    def statistics(self) -> SingleFlightStatistics: ...


class ServiceBase:
    """The dashboard service's steps that do not wait, for both flavours: each flavour's
    ``DashboardService`` adds the Semaphore, the SingleFlight and the Group, and awaits or
    blocks between these steps."""

    _sf: _HasStatistics  # the flavour's SingleFlight

    def __init__(self, db: Database, cfg: DemoConfig, counters: Counters, fault: FaultReport):
        self._db = db
        self._cfg = cfg
        self._counters = counters
        self._fault = fault
        self._cache = TTLCache(cfg.cache_ttl_ms / 1000)

    def singleflight_statistics(self) -> SingleFlightStatistics:
        return self._sf.statistics()

    def _cached_user(self, user_id: int, lookup: Lookup | None) -> User | None:
        """The user from the cache (counted as a hit or a miss), ``None`` on a miss."""
        if lookup is not None:
            lookup.stage = Stage.USER
        user = self._cache.get(user_id)
        if user is not None:
            self._counters.cache_hit()
        else:
            self._counters.cache_miss()
        return user

    def _cache_user(self, user_id: int, rows: list[tuple[Any, ...]]) -> User:
        user = User(*rows[0])
        self._cache.set(user_id, user)
        return user

    def _inject_failure(self, user_id: int) -> StatsUnavailable:
        """Record the injected failure (the caller raises it)."""
        self._fault.injected = StatsUnavailable(
            f"stats backend unavailable (injected, user {user_id})"
        )
        self._fault.injected_at = time.perf_counter()
        return self._fault.injected

    def _fault_surfaced(self, exc: StatsUnavailable, start: float) -> None:
        """The failing request raised ``exc``: record it as the failure that surfaced."""
        self._fault.surfaced = exc
        self._fault.surfaced_after_ms = (time.perf_counter() - self._fault.injected_at) * 1e3
        self._counters.request_done(time.perf_counter() - start, ok=False)
