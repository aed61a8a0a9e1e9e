"""The ``redis.singleflight.share_for`` bench row: registered, reports MISSING without the
server, and one small run of each implementation against the test's redis-server (the
executions are checked by the row itself; here only that the figure is reported)."""

from __future__ import annotations

import re

import pytest

import corral._bench as _bench
from corral._bench.harness import Env
from corral._bench.rows import redis_rows

ROW = "redis.singleflight.share_for"


def test_row_is_registered_and_needs_the_server() -> None:
    rows = {r.id: r for r in _bench.select_rows([ROW])}
    impls = {i.name: i for i in rows[ROW].impls}
    assert set(impls) == {"corral.redis share_for=5", "corral.redis, no share_for"}
    for impl in impls.values():  # the redis package, and the server binary when absent
        assert impl.requires == redis_rows._REQUIRES
        assert not impl.peer  # the figure is the result: no reference
        assert impl.reference is None
    assert rows[ROW].unit == "key-wave"


@pytest.mark.timeout(180)
def test_each_implementation_runs_a_wave_and_reports_executions(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(redis_rows._state, "url", redis_url)
    (row,) = _bench.select_rows([ROW])
    per: dict[str, float] = {}
    for impl in row.impls:
        t = impl.fn(Env(), redis_rows._WAVE_KEYS)  # one wave of 20 keys
        m = re.search(r"(\d+) executions for 20 key-waves: ([\d.]+) per key-wave", t.figures)
        assert m is not None, t.figures
        per[impl.name] = float(m.group(2))
    assert per["corral.redis share_for=5"] == 1.0  # exactly one per key-wave
    assert per["corral.redis, no share_for"] >= 1.0
