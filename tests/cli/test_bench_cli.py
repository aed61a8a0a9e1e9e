"""``corral bench``: the CLI's side (the engine has its own tests). Timings are never asserted."""

from __future__ import annotations

import importlib.util
import json

import pytest

import corral  # noqa: F401 - imported first, so the harness's waiter tracking sees it
from corral import _bench
from corral.cli import main

ROW = "chan.async.cap128"  # quick, and has peers that may be missing


def test_bench_quick_only_json_has_the_documented_shape(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["bench", "--quick", "--only", ROW, "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    report = json.loads(out)
    assert {"python", "machine", "settings", "warnings", "results", "rows"} <= set(report)
    assert report["settings"]["quick"] is True
    assert report["settings"]["loop"] == "asyncio"
    assert isinstance(report["warnings"], list)

    assert [row["benchmark"] for row in report["rows"]] == [ROW]
    results = report["results"]
    assert {r["benchmark"] for r in results} == {ROW}
    corral_results = [r for r in results if not r["peer"]]
    assert corral_results
    assert all(r["status"] == "ok" and r["ns_per_op"] > 0 for r in corral_results)

    # A peer that is not installed is reported as missing, never given a number.
    (row,) = [r for r in _bench.all_rows() if r.id == ROW]
    by_name = {r["impl"]: r for r in results}
    for impl in row.impls:
        result = by_name[impl.name]
        if any(importlib.util.find_spec(m) is None for m in impl.requires):
            assert result["status"] == "missing", impl.name
            assert result["ns_per_op"] is None
        else:
            assert result["status"] in ("ok", "error"), impl.name
        if result["status"] != "ok":
            assert result["ns_per_op"] is None

    (row_report,) = report["rows"]
    for comparison in row_report["comparisons"]:
        assert comparison["impl"] in by_name
        assert comparison["vs_best_peer"] is None or comparison["vs_best_peer"] > 0


def test_bench_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--quick", "--only", ROW])
    out, _ = capsys.readouterr()
    assert code == 0
    assert out.startswith("corral bench")
    assert ROW in out
    assert "ns/item" in out


def test_bench_list(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--list"])
    out, _ = capsys.readouterr()
    assert code == 0
    ids = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert ids == [row.id for row in _bench.all_rows()]
    assert ROW in ids


def test_bench_unknown_row_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--only", "no.such.row"])
    _, err = capsys.readouterr()
    assert exc.value.code == 2
    assert "argument --only" in err
    assert "no.such.row" in err
    assert ROW in err  # the known rows are listed


def test_bench_uvloop_when_missing_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("uvloop") is not None:
        code = main(["bench", "--quick", "--only", ROW, "--loop", "uvloop", "--json"])
        out, _ = capsys.readouterr()
        assert code == 0
        assert json.loads(out)["settings"]["loop"] == "uvloop"
        return
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--quick", "--only", ROW, "--loop", "uvloop"])
    _, err = capsys.readouterr()
    assert exc.value.code == 2
    assert "uvloop" in err
    assert "not installed" in err
