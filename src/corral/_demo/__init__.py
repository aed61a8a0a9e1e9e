"""``corral demo``: the seed's closing paragraph, run for real.

"A real system might use errgroup to fan out to multiple services, singleflight to
deduplicate cache misses within each call, and semaphores to limit database connections."

A dashboard service over a real SQLite database (users, orders, stats, notifications):
each request fans out with a ``Group`` to three lookups (orders, stats, notifications);
each lookup needs the user, read through an in-memory cache with ``SingleFlight`` on a
miss; every query holds a ``Semaphore`` permit (the limit on database connections). Many
concurrent requests with a skewed choice of users hit the same users at once. One request's
stats lookup fails on purpose, to show the Group cancelling its siblings.

Every figure in the result is counted while the demo runs: SQLite reports the statements
it executes, the connection pool measures connections in use, the service counts cache
hits, singleflight loads and latencies.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import (
    LOOKUPS,
    Counters,
    DemoConfig,
    FaultReport,
    Lookup,
    percentile,
    request_keys,
)
from .db import TABLES, Database, DatabaseError, create_database

__all__ = ["DatabaseError", "DemoConfig", "DemoResult", "format_text", "run_demo"]


@dataclass
class DemoResult:
    """What one run of the demo measured."""

    config: DemoConfig
    db_path: str
    db_temporary: bool
    db_created: bool
    users: int
    table_rows: dict[str, int]
    top10_share: float
    elapsed_s: float
    requests: int
    ok: int
    failed: int
    latencies_ms: list[float]
    db_queries: dict[str, int]
    cache_hits: int
    cache_misses: int
    singleflight_loads: int
    singleflight_loads_queried: int
    singleflight_served: int
    singleflight_shared: int
    sf_started: int
    sf_joined: int
    peak_db_connections: int
    db_connections_opened: int
    fault: FaultReport
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def db_queries_total(self) -> int:
        return sum(self.db_queries.values())

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)

    @property
    def max_ms(self) -> float:
        return self.latencies_ms[-1] if self.latencies_ms else 0.0

    def to_json(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "flavor": cfg.flavor,
            "requests": self.requests,
            "ok": self.ok,
            "failed": self.failed,
            "elapsed_s": round(self.elapsed_s, 4),
            "requests_per_s": round(self.requests / self.elapsed_s, 1) if self.elapsed_s else 0,
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "db_queries": self.db_queries,
            "db_queries_total": self.db_queries_total,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "singleflight_loads": self.singleflight_loads,
            "singleflight_loads_queried": self.singleflight_loads_queried,
            "singleflight_served": self.singleflight_served,
            "singleflight_shared": self.singleflight_shared,
            "singleflight_statistics": {"started": self.sf_started, "joined": self.sf_joined},
            "peak_db_connections": self.peak_db_connections,
            "db_limit": cfg.db_limit,
            "db_connections_opened": self.db_connections_opened,
            "concurrency": cfg.concurrency,
            "users": self.users,
            "top10_users_share": round(self.top10_share, 4),
            "query_ms": cfg.query_ms,
            "cache_ttl_ms": cfg.cache_ttl_ms,
            "seed": cfg.seed,
            "db": {
                "path": self.db_path,
                "temporary": self.db_temporary,
                "created": self.db_created,
                "rows": self.table_rows,
            },
            "failure": self.fault.to_json(),
            "notes": self.notes,
            "problems": self.problems,
        }


def run_demo(cfg: DemoConfig) -> DemoResult:
    """Create (or open) the database, serve ``cfg.requests`` requests, return the figures.

    Raises ``DatabaseError`` if ``cfg.db`` exists but is not a demo database.
    """
    with tempfile.TemporaryDirectory(prefix="corral-demo-") as tmp:
        temporary = cfg.db is None
        path = Path(tmp) / "dashboard.db" if cfg.db is None else cfg.db
        created = not path.exists()
        if created:
            create_database(path, cfg.users, cfg.seed)
        db = Database(path, cfg.query_ms / 1000)
        try:
            return _run(cfg, db, temporary, created)
        finally:
            db.close()


def _run(cfg: DemoConfig, db: Database, temporary: bool, created: bool) -> DemoResult:
    notes: list[str] = []
    if not created and db.users != cfg.users:
        notes.append(f"reused {db.path}: it has {db.users} users (not --users {cfg.users})")
    keys = request_keys(cfg, db.users)
    hot = Counter(keys).most_common(10)
    top10_share = sum(n for _, n in hot) / len(keys)

    counters = Counters()
    fault = FaultReport(
        request=cfg.failing_request,
        user_id=keys[cfg.failing_request],
        lookups={name: Lookup(name) for name in LOOKUPS},
    )
    if cfg.flavor == "asyncio":
        from .aio import run as serve
    elif cfg.flavor == "threads":
        from .threaded import run as serve
    else:
        raise ValueError(f"flavor must be 'asyncio' or 'threads', got {cfg.flavor!r}")

    start = time.perf_counter()
    serve(db, cfg, keys, counters, fault)
    elapsed = time.perf_counter() - start

    result = DemoResult(
        config=cfg,
        db_path=str(db.path),
        db_temporary=temporary,
        db_created=created,
        users=db.users,
        table_rows=db.table_sizes(),
        top10_share=top10_share,
        elapsed_s=elapsed,
        requests=counters.served,
        ok=counters.ok,
        failed=counters.failed,
        latencies_ms=sorted(s * 1e3 for s in counters.latencies),
        db_queries=db.queries(),
        cache_hits=counters.cache_hits,
        cache_misses=counters.cache_misses,
        singleflight_loads=counters.loads_started,
        singleflight_loads_queried=counters.loads_queried,
        singleflight_served=counters.singleflight_served,
        singleflight_shared=counters.singleflight_shared,
        sf_started=counters.sf_started,
        sf_joined=counters.sf_joined,
        peak_db_connections=db.peak_in_use,
        db_connections_opened=db.opened,
        fault=fault,
        notes=notes,
    )
    result.problems = _check(result, db)
    return result


def _check(r: DemoResult, db: Database) -> list[str]:
    """Invariants the demo promises; any broken one is reported (and fails the command)."""
    cfg = r.config
    problems = []
    if r.requests != cfg.requests:
        problems.append(f"served {r.requests} requests, expected {cfg.requests}")
    if r.peak_db_connections > cfg.db_limit:
        problems.append(
            f"{r.peak_db_connections} connections were in use at once, above the limit "
            f"{cfg.db_limit}"
        )
    if db.in_use:
        problems.append(f"{db.in_use} connection(s) still in use after the run")
    if r.db_queries["users"] != r.singleflight_loads_queried:
        problems.append(
            f"SQLite ran {r.db_queries['users']} user queries but the service's singleflight "
            f"loads made {r.singleflight_loads_queried}"
        )
    # Every load is a call the SingleFlight started (one it cancels before it runs, when
    # all its callers left at once, is started but never loads).
    if r.singleflight_loads > r.sf_started:
        problems.append(
            f"the service ran {r.singleflight_loads} loads but the SingleFlight reports only "
            f"{r.sf_started} calls started"
        )
    f = r.fault
    if f.injected is None:
        problems.append("the failure was not injected")
    elif f.surfaced is not f.injected:
        problems.append(f"the Group raised {f.surfaced!r}, not the injected {f.injected!r}")
    if f.siblings_cancelled != len(f.siblings):
        problems.append(
            "not every sibling of the failed lookup was cancelled: "
            + ", ".join(f"{lk.name}: {lk.outcome}" for lk in f.siblings)
        )
    return problems


def _cancelled_loads(r: DemoResult) -> str:
    left = r.singleflight_loads - r.singleflight_loads_queried
    if not left:
        return ""
    return f" ({left} load{'s' if left > 1 else ''} cancelled: every caller left)"


def format_text(r: DemoResult) -> str:
    """The human-readable report (lines under 100 columns)."""
    cfg = r.config
    q = r.db_queries
    rows = r.table_rows
    f = r.fault

    def n(x: int) -> str:
        return f"{x:,}"

    if r.db_temporary:
        where = "a temporary file, created for this run"
    else:
        where = "created for this run" if r.db_created else "an existing demo database, reused"
    pad = " " * 14
    lines = [
        f"corral demo: a dashboard service over SQLite, {cfg.flavor} flavour",
        "",
        f"  database    {r.db_path}",
        f"{pad}({where})",
        pad + ", ".join(f"{n(rows[t])} {t}" for t in TABLES),
        f"  load        {n(cfg.requests)} requests, {n(cfg.concurrency)} at a time; users drawn "
        f"with a Zipf skew:",
        f"{pad}the 10 hottest of {n(r.users)} users got {r.top10_share:.0%} of the requests",
        "  service     each request fans out with a Group to orders, stats and notifications;",
        f"{pad}each lookup reads its user from a cache ({cfg.cache_ttl_ms:g} ms TTL), "
        "SingleFlight on a miss;",
        f"{pad}every query holds a Semaphore({cfg.db_limit}) permit and takes "
        f"~{cfg.query_ms:g} ms (simulated round trip)",
        "",
        f"requests      {n(r.requests)} served in {r.elapsed_s:.2f} s "
        f"({r.requests / r.elapsed_s:,.0f}/s): {n(r.ok)} ok, {n(r.failed)} failed"
        + (" (the injected failure)" if r.failed == 1 and f.surfaced is not None else ""),
        f"latency       p50 {r.p50_ms:.1f} ms   p99 {r.p99_ms:.1f} ms   max {r.max_ms:.1f} ms",
        f"db queries    {n(r.db_queries_total)} (SQLite's own count): "
        + ", ".join(f"{t} {n(q[t])}" for t in TABLES),
        f"user cache    {n(r.cache_hits + r.cache_misses)} lookups: {n(r.cache_hits)} hits, "
        f"{n(r.cache_misses)} misses",
        f"singleflight  {n(r.singleflight_served)} misses answered by "
        f"{n(q['users'])} user queries: {n(r.singleflight_shared)} queries saved"
        + _cancelled_loads(r),
        f"connections   peak {r.peak_db_connections} in use at once, limit {cfg.db_limit}: "
        + ("within the limit" if r.peak_db_connections <= cfg.db_limit else "OVER THE LIMIT")
        + f" ({r.db_connections_opened} opened)",
    ]
    if f.injected is not None:
        lines.append(
            f"errgroup      request #{f.request} (user {f.user_id}): the stats lookup raised "
            f"{type(f.injected).__name__} (injected)"
        )
        lines.extend(f"{pad}- {lk.name}: {lk.outcome}" for lk in f.siblings)
        if f.surfaced is not None:
            same = "the injected error" if f.surfaced is f.injected else "ANOTHER error"
            lines.append(
                f"{pad}- the Group raised {type(f.surfaced).__name__} ({same}), "
                f"{f.surfaced_after_ms:.1f} ms after the failure"
            )
    lines.extend(f"note          {note}" for note in r.notes)
    lines.extend(f"PROBLEM       {p}" for p in r.problems)
    return "\n".join(lines)
