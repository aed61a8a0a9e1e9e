"""``corral demo``: every figure is measured, and the figures agree with each other."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import corral
import corral.threads
from corral._core.context import background, with_cancel
from corral._demo.db import TABLES, Database, create_database
from corral.cli import main

FLAVORS = ["asyncio", "threads"]
# Small and quick, but busy enough that the limit and the deduplication matter.
SMALL = ["--concurrency", "12", "--users", "20", "--db-limit", "3", "--query-ms", "1"]


def demo_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = main(["demo", "--json", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    figures: dict[str, Any] = json.loads(out)
    return figures


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("requests", [90, 131])
def test_demo_json_figures_are_consistent(
    capsys: pytest.CaptureFixture[str], flavor: str, requests: int
) -> None:
    r = demo_json(capsys, "--flavor", flavor, "--requests", str(requests), *SMALL)

    for key in (
        "requests",
        "db_queries",
        "singleflight_shared",
        "peak_db_connections",
        "db_limit",
        "p50_ms",
        "p99_ms",
    ):
        assert key in r, key
    assert r["flavor"] == flavor
    assert r["problems"] == []

    # Every request was served; exactly one failed, on purpose.
    assert r["requests"] == requests
    assert r["ok"] == requests - 1
    assert r["failed"] == 1

    # The database's own counts, per table, add up.
    q = r["db_queries"]
    assert set(q) == set(TABLES)
    assert sum(q.values()) == r["db_queries_total"]
    assert q["stats"] == requests - 1  # the failing request's stats lookup never queried
    assert requests - 1 <= q["orders"] <= requests
    assert requests - 1 <= q["notifications"] <= requests
    # Each user query is one singleflight load: counted by SQLite and by the service apart.
    assert q["users"] == r["singleflight_loads_queried"] > 0
    # A load whose callers all leave is cancelled (by SingleFlight), maybe before querying.
    assert r["singleflight_loads"] >= r["singleflight_loads_queried"]

    # Each of the three lookups of every request read its user through the cache.
    assert r["cache_hits"] + r["cache_misses"] == 3 * requests
    assert r["singleflight_served"] <= r["cache_misses"]
    # The skew makes many requests miss on the same user at once: singleflight saves queries.
    assert r["singleflight_shared"] > 0
    assert r["singleflight_served"] - r["singleflight_shared"] <= r["singleflight_loads"]
    # ... and the SingleFlight's own statistics agree.
    assert r["singleflight_statistics"]["started"] >= r["singleflight_loads"]
    assert r["singleflight_statistics"]["joined"] >= r["singleflight_shared"]

    # The Semaphore held the database to its limit, as measured by the connection pool.
    assert r["db_limit"] == 3
    assert 1 <= r["peak_db_connections"] <= r["db_limit"]
    assert r["db_connections_opened"] <= r["db_limit"]

    assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]

    # The injected failure: raised by one stats lookup, surfaced from the Group, with both
    # siblings cancelled.
    f = r["failure"]
    assert f["request"] == requests // 2
    assert f["lookup"] == "stats"
    assert "StatsUnavailable" in f["injected"]
    assert f["surfaced"] == f["injected"]
    assert f["surfaced_is_injected"] is True
    assert f["siblings_cancelled"] == 2
    assert set(f["siblings"]) == {"orders", "notifications"}
    assert all(outcome.startswith("cancelled") for outcome in f["siblings"].values())


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("limit", [1, 2])
def test_peak_connections_never_exceed_a_tight_limit(
    capsys: pytest.CaptureFixture[str], flavor: str, limit: int
) -> None:
    r = demo_json(
        capsys,
        *("--flavor", flavor, "--requests", "60", "--concurrency", "20", "--users", "8"),
        *("--db-limit", str(limit), "--query-ms", "0.5"),
    )
    assert r["db_limit"] == limit
    # 20 requests of 3 lookups each in flight: without the Semaphore the peak would be higher.
    assert r["peak_db_connections"] == limit
    assert r["problems"] == []


@pytest.mark.parametrize("flavor", FLAVORS)
def test_without_a_cache_singleflight_still_dedupes_within_each_request(
    capsys: pytest.CaptureFixture[str], flavor: str
) -> None:
    """TTL 0: every lookup misses; the three lookups of a request (and concurrent requests
    for the same user) still share one query per user."""
    r = demo_json(
        capsys,
        *("--flavor", flavor, "--requests", "40", "--concurrency", "4", "--users", "30"),
        *("--db-limit", "4", "--query-ms", "1", "--cache-ttl-ms", "0"),
    )
    assert r["cache_hits"] == 0
    assert r["cache_misses"] == 3 * 40
    assert r["singleflight_shared"] > 0
    assert r["db_queries"]["users"] < r["cache_misses"]
    assert r["problems"] == []


@pytest.mark.parametrize("flavor", FLAVORS)
def test_siblings_are_cancelled_mid_query(capsys: pytest.CaptureFixture[str], flavor: str) -> None:
    """With permits to spare, the failing request's siblings are inside their (hanging)
    queries when the stats lookup fails; the Group's context interrupts them."""
    r = demo_json(
        capsys,
        *("--flavor", flavor, "--requests", "20", "--concurrency", "2", "--users", "5"),
        *("--db-limit", "50", "--query-ms", "0.5"),
    )
    f = r["failure"]
    assert f["siblings_cancelled"] == 2
    # Each sibling's query would hang for 30 s unless cancelled.
    assert f["surfaced_after_ms"] < 10_000
    assert r["problems"] == []


@pytest.mark.parametrize("flavor", FLAVORS)
def test_broken_limit_is_detected(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, flavor: str
) -> None:
    """The peak comes from the pool's own measurement: a semaphore that does not limit is
    caught (reported, exit status 1), not hidden."""
    module = corral if flavor == "asyncio" else corral.threads
    real = module.Semaphore
    monkeypatch.setattr(module, "Semaphore", lambda size: real(1000))
    code = main(
        [
            *("demo", "--json", "--flavor", flavor, "--requests", "40", "--concurrency", "10"),
            *("--users", "5", "--db-limit", "2", "--query-ms", "2"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1
    r = json.loads(out)
    assert r["peak_db_connections"] > 2
    assert any("above the limit" in p for p in r["problems"])
    assert "problem:" in err


def test_demo_text_report(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--requests", "50", *SMALL])
    out, err = capsys.readouterr()
    assert code == 0, err
    for label in (
        "requests ",
        "latency ",
        "db queries ",
        "singleflight ",
        "connections ",
        "errgroup ",
    ):
        assert any(line.startswith(label) for line in out.splitlines()), label
    assert "50 served" in out
    assert "limit 3: within the limit" in out
    assert "StatsUnavailable" in out
    assert "PROBLEM" not in out


def test_db_path_is_created_then_reused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "dash.db"
    first = demo_json(capsys, "--db", str(path), "--requests", "30", *SMALL)
    assert path.exists()
    assert first["db"] == {
        "path": str(path),
        "temporary": False,
        "created": True,
        "rows": first["db"]["rows"],
    }
    assert first["db"]["rows"]["users"] == 20

    second = demo_json(
        capsys, "--db", str(path), "--requests", "30", *SMALL[:2], "--users", "99", *SMALL[4:]
    )
    assert second["db"]["created"] is False
    assert second["users"] == 20  # the database's own, not --users
    assert any("reused" in note for note in second["notes"])
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (20,)
    conn.close()


def test_temporary_database_is_removed(capsys: pytest.CaptureFixture[str]) -> None:
    r = demo_json(capsys, "--requests", "10", *SMALL)
    assert r["db"]["temporary"] is True
    assert not Path(r["db"]["path"]).exists()


def test_database_counts_its_own_queries(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    create_database(path, users=5, seed=3)
    db = Database(path, query_seconds=0)
    try:
        ctx = background()
        for uid in (1, 2, 3):
            db.query("SELECT name FROM users WHERE id = ?", (uid,), ctx)
        db.query("select count(*)\n  from   orders", (), ctx)
        assert db.queries() == {"users": 3, "orders": 1, "stats": 0, "notifications": 0}
        assert db.peak_in_use == 1
        assert db.in_use == 0
        with db.connection(), db.connection():
            assert db.in_use == 2
        assert db.peak_in_use == 2
        assert db.opened == 2
    finally:
        db.close()


def test_database_query_honours_a_cancelled_context(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    create_database(path, users=2, seed=3)
    db = Database(path, query_seconds=0)
    try:
        with with_cancel(background()) as ctx:
            ctx.cancel()
            with pytest.raises(corral.Cancelled):
                db.query("SELECT 1 FROM users", (), ctx, hang=True)
        assert db.queries()["users"] == 0  # refused before touching the database
        assert db.in_use == 0
    finally:
        db.close()
