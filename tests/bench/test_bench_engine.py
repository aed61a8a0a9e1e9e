"""The benchmark engine (``corral._bench``): registry rules, honest reporting, JSON shape.

Timings are never asserted; only that every number comes from a checked run, that a broken
implementation is reported as an error and a missing peer as missing.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator

import pytest

import corral  # noqa: F401 - imported first, so the harness's waiter tracking sees it
from corral import _bench
from corral._bench.harness import Env, Stopwatch, Timing, check_transfer
from corral._bench.rows.channels import corral_async, make_asyncio_queue, queue_async

ROW = "test.engine"


@pytest.fixture
def row_id() -> Iterator[str]:
    yield ROW
    try:
        _bench.unregister(ROW)
    except KeyError:
        pass


def _broken(env: Env, n: int) -> Timing:
    sw = Stopwatch()
    t = sw.stop()
    check_transfer([(n - 1, (n - 1) * (n - 2) // 2)], n)  # "lost" the last item
    return t


def _sleepy(env: Env, n: int) -> float:  # a plain float (wall seconds) is accepted too
    t0 = time.perf_counter()
    time.sleep(0.001)
    return time.perf_counter() - t0


def test_broken_impl_is_an_error_and_missing_peer_is_missing(row_id: str) -> None:
    _bench.register(
        row_id,
        items=200,
        quick_items=100,
        impls=[
            _bench.corral_impl("corral", _broken, reference="asyncio.Queue", target=1.0),
            _bench.peer_impl("asyncio.Queue", queue_async(make_asyncio_queue, 4)),
            _bench.peer_impl("ghost", _sleepy, requires=["no_such_module_for_corral_bench"]),
            _bench.peer_impl("sleepy", _sleepy),
        ],
    )
    report = _bench.run([row_id], quick=True, repeat=2)
    by_name = {r.impl: r for r in report.results}
    assert by_name["corral"].status == "error"
    assert "CheckFailed" in (by_name["corral"].error or "")
    assert by_name["corral"].ns_per_op is None
    assert by_name["ghost"].status == "missing"
    assert by_name["ghost"].ns_per_op is None
    assert by_name["asyncio.Queue"].status == "ok"
    assert len(by_name["asyncio.Queue"].samples_ns) == 2
    assert by_name["asyncio.Queue"].cpu_ns_per_op is not None
    assert by_name["sleepy"].status == "ok"
    assert by_name["sleepy"].cpu_ns_per_op is None  # wall time only
    (row,) = report.rows
    (cmp,) = row.comparisons
    assert cmp.verdict == "n/a"
    assert cmp.vs_reference is None

    table = report.to_table()
    assert "ERROR" in table
    assert "MISSING" in table
    assert row_id in table
    data = json.loads(report.to_json())
    assert {"python", "machine", "results"} <= set(data)
    for r in data["results"]:
        assert {"benchmark", "impl", "ns_per_op", "peer", "spread"} <= set(r)


def test_ratios_and_verdict(row_id: str) -> None:
    _bench.register(
        row_id,
        items=2000,
        quick_items=1000,
        impls=[
            _bench.corral_impl("corral", corral_async(16), reference="asyncio.Queue", target=1e9),
            _bench.peer_impl("asyncio.Queue", queue_async(make_asyncio_queue, 16)),
        ],
    )
    report = _bench.run([row_id], quick=True, repeat=2)
    (cmp,) = report.rows[0].comparisons
    assert cmp.reference == "asyncio.Queue"
    assert cmp.best_peer == "asyncio.Queue"
    assert cmp.vs_reference is not None
    assert cmp.vs_reference > 0
    assert cmp.vs_reference_paired is not None
    assert cmp.vs_reference_cpu is not None
    assert cmp.verdict == "met"
    assert all(r.spread is not None and r.spread >= 1.0 for r in report.results)


def test_gc_state_is_restored(row_id: str) -> None:
    seen: list[bool] = []

    def probe(env: Env, n: int) -> Timing:
        seen.append(gc.isenabled())
        return Stopwatch().stop()

    _bench.register(
        row_id, items=10, quick_items=10, gc="off", impls=[_bench.peer_impl("probe", probe)]
    )
    assert gc.isenabled()
    _bench.run([row_id], quick=True, repeat=1)
    assert seen == [False, False]  # warm-up and the one repeat, both with the GC off
    assert gc.isenabled()
    seen.clear()
    _bench.run([row_id], quick=True, repeat=1, gc_mode="on")
    assert seen == [True, True]


def test_register_rejects_inconsistent_rows(row_id: str) -> None:
    peer = _bench.peer_impl("p", _sleepy)
    with pytest.raises(ValueError, match="not a peer"):
        _bench.register(
            row_id,
            items=10,
            quick_items=10,
            impls=[_bench.corral_impl("c", _sleepy, reference="nope"), peer],
        )
    with pytest.raises(ValueError, match="duplicate"):
        _bench.register(row_id, items=10, quick_items=10, impls=[peer, peer])
    with pytest.raises(ValueError, match="quick_items"):
        _bench.register(row_id, items=10, quick_items=20, impls=[peer])
    _bench.register(row_id, items=10, quick_items=10, impls=[peer])
    with pytest.raises(ValueError, match="already registered"):
        _bench.register(row_id, items=10, quick_items=10, impls=[peer])


def test_select_rows() -> None:
    ids = [r.id for r in _bench.all_rows()]
    assert [r.id for r in _bench.select_rows(["sem"])] == [i for i in ids if i.startswith("sem.")]
    assert [r.id for r in _bench.select_rows(["chan.async.*"])] == [
        i for i in ids if i.startswith("chan.async.")
    ]
    assert _bench.select_rows(None) == _bench.all_rows()
    with pytest.raises(_bench.BenchError, match=r"no\.such\.row"):
        _bench.select_rows(["no.such.row"])


@pytest.mark.slow
# Every chan and sem row, each measured with a gc.collect() around it: it ran past the suite's
# 60 s on 2 cores at a load average of 20+ (CI on 3.15), and a timeout ends the whole pytest
# run (timeout_method = "thread"). Like the memory rows' tests.
@pytest.mark.timeout(240)
def test_builtin_rows_every_impl_moves_the_items() -> None:
    # Every built-in channel/semaphore implementation whose peer is installed passes its own
    # correctness check on a tiny run.
    report = _bench.run(["chan", "sem"], quick=True, repeat=1)
    bad = [(r.benchmark, r.impl, r.error) for r in report.results if r.status == "error"]
    assert not bad
