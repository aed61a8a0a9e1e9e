"""Memory rows (``metric="bytes"``) in the bench engine, and the built-in memory and
free-threading rows. Figures are never asserted against targets; only that each number
comes from a checked run of the right kind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import corral  # noqa: F401 - imported first, so the harness's waiter tracking sees it
from corral import _bench
from corral._bench.harness import Env, Memory, Stopwatch, Timing

ROW = "test.memory"


@pytest.fixture
def row_id() -> Iterator[str]:
    yield ROW
    try:
        _bench.unregister(ROW)
    except KeyError:
        pass


def _bytes(per_op: float, ops: int | None = None) -> _bench.registry.ImplFn:
    def fn(env: Env, n: int) -> Memory:
        return Memory(per_op * (ops or n), ops)

    return fn


def _timed(env: Env, n: int) -> Timing:
    return Stopwatch().stop()


def test_a_bytes_row_reports_bytes_per_operation(
    row_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _bench.register(
        row_id,
        items=100,
        quick_items=10,
        unit="waiter",
        metric="bytes",
        impls=[
            _bench.corral_impl("corral", _bytes(300.0), reference="ref", target=1.5),
            _bench.peer_impl("ref", _bytes(200.0)),
            _bench.peer_impl("per run", _bytes(5000.0, ops=1)),
        ],
    )
    report = _bench.run([row_id], quick=True, repeat=2)
    by_name = {r.impl: r for r in report.results}
    assert by_name["corral"].ns_per_op == pytest.approx(300.0)
    assert by_name["ref"].ns_per_op == pytest.approx(200.0)
    assert by_name["per run"].ns_per_op == pytest.approx(5000.0)
    assert by_name["corral"].cpu_ns_per_op is None  # no CPU figure for memory
    (cmp,) = report.rows[0].comparisons
    assert cmp.vs_reference == pytest.approx(1.5)
    assert cmp.verdict == "met"
    assert report.rows[0].metric == "bytes"
    assert "B/waiter" in report.to_table()
    assert '"metric": "bytes"' in report.to_json()


def test_a_bytes_row_rejects_a_time_and_a_time_row_rejects_bytes(row_id: str) -> None:
    _bench.register(
        row_id,
        items=10,
        quick_items=10,
        metric="bytes",
        impls=[_bench.peer_impl("timed", _timed), _bench.peer_impl("empty", _bytes(0.0))],
    )
    report = _bench.run([row_id], quick=True, repeat=1)
    errors = {r.impl: r.error or "" for r in report.results}
    assert "must return Memory" in errors["timed"]
    assert "not positive" in errors["empty"]

    _bench.register(
        row_id, items=10, quick_items=10, impls=[_bench.peer_impl("m", _bytes(1.0))], replace=True
    )
    (res,) = _bench.run([row_id], quick=True, repeat=1).results
    assert res.status == "error"
    assert "Memory in a time row" in (res.error or "")


def test_register_rejects_an_unknown_metric(row_id: str) -> None:
    with pytest.raises(ValueError, match="metric"):
        _bench.register(
            row_id,
            items=10,
            quick_items=10,
            metric="joules",  # type: ignore[arg-type]
            impls=[_bench.peer_impl("m", _bytes(1.0))],
        )


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_builtin_memory_and_parallel_rows_pass_their_checks() -> None:
    report = _bench.run(
        ["mem.chan", "mem.sem", "mem.group", "chan.thread.2p2c"], quick=True, repeat=1
    )
    assert {r.benchmark for r in report.results} == {
        "mem.chan.recv_waiter",
        "mem.chan.idle",
        "mem.sem.acquire_waiter",
        "mem.group.task",
        "chan.thread.2p2c",
    }
    bad = [(r.benchmark, r.impl, r.error) for r in report.results if r.status != "ok"]
    assert not bad
    waiter = report.result("mem.chan.recv_waiter", "corral")
    bare = report.result("mem.chan.recv_waiter", "bare task")
    assert waiter is not None
    assert bare is not None
    # A parked receive holds at least what a bare parked task does (a sanity check of the
    # measurement, not a target).
    assert waiter.ns_per_op is not None
    assert bare.ns_per_op is not None
    assert waiter.ns_per_op > bare.ns_per_op > 0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_pipeline_rss_and_cpu_fan_out_rows_run() -> None:
    from corral._bench.rows import memory, parallel

    env = Env()
    got = memory._child_rss("corral", 2_000, 120.0)
    assert got.ops == 1
    assert got.bytes > 1_000_000  # a whole interpreter's RSS, in bytes (not KiB)
    assert parallel._threads_corral(env, 2).wall > 0
    assert parallel._split(10, 3) == [range(0, 3), range(3, 6), range(6, 10)]
