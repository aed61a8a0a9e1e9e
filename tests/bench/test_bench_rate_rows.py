"""The rate-limit bench rows: their figure helper, and one small run of corral's
implementations (timings are not asserted: only that each run checks out)."""

from __future__ import annotations

import pytest

import corral._bench as _bench
from corral._bench.harness import Env
from corral._bench.rows.ratelimits import accuracy_figures, smallest_gap


def test_accuracy_figures_count_half_open_windows() -> None:
    achieved, most = accuracy_figures([0.0, 0.5, 0.99, 1.0, 1.5], rate=2, per=1.0)
    assert achieved == 4 / 1.5
    assert most == 3  # [0, 1) holds 0, 0.5, 0.99; [0.5, 1.5) holds 0.5, 0.99, 1.0
    # A burst at the start shows in both: 10 at once, then one per 0.1 s.
    achieved, most = accuracy_figures([0.0] * 10 + [0.1 * k for k in range(1, 11)], 10, 1.0)
    assert most == 19
    assert achieved == 19 / 1.0


def test_smallest_gap_is_between_consecutive_instants() -> None:
    assert smallest_gap([0.3, 0.0, 0.1, 0.25]) == pytest.approx(0.05)
    assert smallest_gap([1.0]) == float("inf")


def test_corral_accuracy_figures_are_at_the_caller() -> None:
    env = Env()
    rows = {r.id: r for r in _bench.select_rows(["rate.accuracy"])}
    for impl in rows["rate.accuracy"].impls:
        if not impl.peer:
            text = impl.fn(env, 30).figures
            assert "at the caller" in text, (impl.name, text)
            assert "smallest gap" in text, (impl.name, text)


def test_rate_rows_are_registered_with_their_peers() -> None:
    rows = {r.id: r for r in _bench.select_rows(["rate"])}
    assert set(rows) == {"rate.uncontended", "rate.accuracy", "rate.joint3"}
    names = {i.name for i in rows["rate.uncontended"].impls}
    assert {"aiolimiter", "pyrate-limiter", "corral", "corral.threads"} <= names
    assert {i.name for i in rows["rate.accuracy"].impls} == {
        "corral",
        "corral.threads",
        "corral mixed",
        "aiolimiter",
        "pyrate-limiter async",
        "pyrate-limiter",
        "aiometer",
    }


def test_corral_implementations_run_and_check_out() -> None:
    env = Env()
    rows = {r.id: r for r in _bench.select_rows(["rate"])}
    for row_id, n in (("rate.uncontended", 200), ("rate.joint3", 60), ("rate.accuracy", 20)):
        for impl in rows[row_id].impls:
            if not impl.peer:
                t = impl.fn(env, n)
                assert t.wall > 0
                if row_id != "rate.uncontended":
                    assert t.figures, impl.name
