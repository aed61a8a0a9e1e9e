"""The corral.redis rate-limit bench rows: registered with their peers, and one small run of
each implementation against the test's redis-server (timings are not asserted: only that
each run checks out)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

import corral._bench as _bench
from corral._bench.harness import Env
from corral._bench.rows import redis_rows


def test_rows_are_registered_with_their_peers() -> None:
    rows = {r.id: r for r in _bench.select_rows(["redis.rate"])}
    assert set(rows) == {"redis.rate.uncontended", "redis.rate.accuracy.4proc", "redis.rate.joint3"}
    names = {i.name for i in rows["redis.rate.uncontended"].impls}
    assert names == {"corral.threads.redis", "limits (hit)", "pyrate-limiter"}
    # A peer's package missing makes its line MISSING, never an error.
    requires = {i.name: i.requires for i in rows["redis.rate.uncontended"].impls}
    assert "limits" in requires["limits (hit)"]
    assert "pyrate_limiter" in requires["pyrate-limiter"]


@pytest.mark.timeout(180)
def test_every_implementation_runs_and_checks_out(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # corral's implementations always run; a peer runs when its package is installed (the
    # test venv has no bench extra: CI's smoke bench runs the peers, with that extra).
    monkeypatch.setitem(redis_rows._state, "url", redis_url)
    env = Env()
    rows = {r.id: r for r in _bench.select_rows(["redis.rate"])}
    runs: list[tuple[str, int, Any]] = [
        ("redis.rate.uncontended", 50, None),
        ("redis.rate.joint3", 30, None),
        ("redis.rate.accuracy.4proc", 40, "corral.threads.redis"),
    ]
    ran: set[str] = set()
    for row_id, n, only in runs:
        for impl in rows[row_id].impls:
            if only is not None and impl.name != only:
                continue
            if not all(importlib.util.find_spec(m) for m in impl.requires):
                continue
            ran.add(impl.name)
            t = impl.fn(env, n)
            assert t.wall > 0, impl.name
            if row_id.startswith("redis.rate.accuracy"):
                assert "most returned in any 1 s window" in t.figures
    assert {"corral.threads.redis", "Limits (atomic)"} <= ran, ran
