"""The engine: run rows, every implementation of a row in this process, best-of-N.

Measuring fairly on a shared, noisy machine (see ``bench/README.md``):

* every implementation of a row runs in this process with the same GC setting, the same
  item count and the same event-loop kind;
* each gets one warm-up run (a tenth of the items), then ``repeat`` measured runs; the
  repeats are interleaved (round-robin, the order rotating each round) so a burst of load
  from elsewhere hits every implementation alike instead of one of them;
* ``gc.collect()`` runs before every measurement; with ``gc="off"`` the collector is also
  disabled while the implementation runs;
* the result is the best time per operation, and the spread (worst / best);
* a machine that is already busy when the run starts is reported in ``warnings``.
"""

from __future__ import annotations

import gc
import importlib.util
import math
import os
import platform
import statistics
import sys
import sysconfig
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .harness import CheckFailed, Env, Memory, Timing
from .registry import GcMode, Impl, Metric, Row, select_rows
from .report import Comparison, Report, Result, RowReport, Status, Verdict

__all__ = ["DEFAULT_REPEAT", "QUICK_REPEAT", "run"]

DEFAULT_REPEAT = 5
QUICK_REPEAT = 3

Progress = Callable[[str], None]


@dataclass(slots=True)
class _State:
    impl: Impl
    status: Status = "ok"
    error: str | None = None
    samples: list[float] = field(default_factory=list)  # wall ns per operation
    cpu_samples: list[float] = field(default_factory=list)  # CPU ns per operation
    figures: list[str] = field(default_factory=list)  # Timing.figures of each measured run


def _missing(impl: Impl) -> list[str]:
    out = []
    for mod in impl.requires:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(mod)
    return out


def _measure(impl: Impl, env: Env, n: int, gc_mode: GcMode, metric: Metric = "time") -> Timing:
    """One run of ``n`` operations; for a ``bytes`` row, ``wall`` is bytes per operation."""
    gc.collect()
    was_enabled = gc.isenabled()
    if gc_mode == "off":
        gc.disable()
    else:
        gc.enable()
    try:
        got = impl.fn(env, n)
    finally:
        if was_enabled:
            gc.enable()
        else:
            gc.disable()
    if metric == "bytes":
        if not isinstance(got, Memory):
            raise CheckFailed(f"{impl.name}: a bytes row's implementation must return Memory")
        if not (got.bytes > 0.0):
            raise CheckFailed(f"{impl.name}: measured memory {got.bytes!r} is not positive")
        # Reported through the time fields (scaled so that the per-op figure is in bytes).
        return Timing(got.bytes / (got.ops or n) * n * 1e-9, math.nan)
    if isinstance(got, Memory):
        raise CheckFailed(f"{impl.name}: returned Memory in a time row")
    t = got if isinstance(got, Timing) else Timing(float(got), math.nan)
    if not (t.wall > 0.0):
        raise CheckFailed(f"{impl.name}: measured time {t.wall!r} is not positive")
    return t


def _describe(exc: BaseException) -> str:
    # Point at the implementation's line, not at the check helper that raised.
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.endswith("harness.py")
    ]
    where = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _run_row(
    row: Row, env: Env, n: int, repeat: int, gc_mode: GcMode, progress: Progress | None
) -> tuple[list[Result], RowReport]:
    states = [_State(impl) for impl in row.impls]
    for st in states:
        missing = _missing(st.impl)
        if missing:
            st.status = "missing"
            st.error = "not installed: " + ", ".join(missing)
    warm_n = max(n // 10, 1)
    rounds: list[int] = [-1, *range(repeat)]  # -1: the warm-up round
    for rnd in rounds:
        live = [st for st in states if st.status == "ok"]
        if rnd > 0 and live:  # rotate the order each round
            k = rnd % len(live)
            live = live[k:] + live[:k]
        for st in live:
            if progress is not None:
                what = "warm-up" if rnd < 0 else f"run {rnd + 1}/{repeat}"
                progress(f"{row.id}: {st.impl.name} {what}")
            try:
                dt = _measure(st.impl, env, warm_n if rnd < 0 else n, gc_mode, row.metric)
            except Exception as exc:
                st.status = "error"
                st.error = _describe(exc)
                if progress is not None:
                    progress(f"{row.id}: {st.impl.name} FAILED: {st.error}")
                continue
            if rnd >= 0:
                st.samples.append(dt.wall / n * 1e9)
                if not math.isnan(dt.cpu):
                    st.cpu_samples.append(dt.cpu / n * 1e9)
                if dt.figures:
                    st.figures.append(dt.figures)

    results = []
    for st in states:
        r = Result(
            benchmark=row.id,
            impl=st.impl.name,
            peer=st.impl.peer,
            status=st.status,
            items=n,
            gc=gc_mode,
            error=st.error,
            figures=list(st.figures),
        )
        if st.status == "ok" and st.samples:
            best = min(st.samples)
            r.ns_per_op = best
            r.spread = max(st.samples) / best
            r.samples_ns = [round(x, 1) for x in st.samples]
            if st.cpu_samples:
                r.cpu_ns_per_op = min(st.cpu_samples)
                r.cpu_samples_ns = [round(x, 1) for x in st.cpu_samples]
        results.append(r)
    return results, RowReport(
        benchmark=row.id,
        note=row.note,
        unit=row.unit,
        metric=row.metric,
        gc=gc_mode,
        items=n,
        repeats=repeat,
        comparisons=_compare(row, results),
    )


def _compare(row: Row, results: list[Result]) -> list[Comparison]:
    by_name = {r.impl: r for r in results}
    out = []
    for impl in row.impls:
        if impl.peer:
            continue
        peers = [
            by_name[i.name]
            for i in row.impls
            if i.peer and i.kind == impl.kind and by_name[i.name].ns_per_op is not None
        ]
        best = min(peers, key=lambda r: r.ns_per_op or 0.0) if peers else None
        mine = by_name[impl.name].ns_per_op
        ref = by_name.get(impl.reference) if impl.reference else None
        vs_ref = paired = vs_cpu = None
        if mine is not None and ref is not None and ref.ns_per_op:
            vs_ref = mine / ref.ns_per_op
            rounds = zip(by_name[impl.name].samples_ns, ref.samples_ns, strict=False)
            paired = statistics.median(a / b for a, b in rounds)
            my_cpu = by_name[impl.name].cpu_ns_per_op
            if my_cpu is not None and ref.cpu_ns_per_op:
                vs_cpu = my_cpu / ref.cpu_ns_per_op
        vs_best = None
        if mine is not None and best is not None and best.ns_per_op:
            vs_best = mine / best.ns_per_op
        verdict: Verdict = "n/a"
        if impl.target is not None and vs_ref is not None:
            verdict = "met" if vs_ref <= impl.target else "missed"
        out.append(
            Comparison(
                impl=impl.name,
                reference=impl.reference,
                vs_reference=vs_ref,
                vs_reference_paired=paired,
                vs_reference_cpu=vs_cpu,
                best_peer=best.impl if best else None,
                vs_best_peer=vs_best,
                target=impl.target,
                verdict=verdict,
            )
        )
    return out


def _machine() -> dict[str, object]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in load] if load else None,
        "switch_interval_s": sys.getswitchinterval(),
    }


def _python() -> str:
    # A free-threaded build says so: its figures are not comparable with a GIL build's.
    nogil = " free-threaded" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    gil_on = " (GIL on)" if nogil and getattr(sys, "_is_gil_enabled", lambda: True)() else ""
    return f"{platform.python_implementation()} {platform.python_version()}{nogil}{gil_on}"


def run(
    rows: Sequence[str] | None = None,
    quick: bool = False,
    repeat: int = 0,
    loop: str | None = None,
    *,
    gc_mode: GcMode | None = None,
    progress: Progress | None = None,
) -> Report:
    """Run the rows matching ``rows`` (ids, globs or prefixes; all if ``None``).

    ``quick``: fewer items and repeats (the whole suite in well under a minute).
    ``repeat``: measured runs per implementation (``<= 0``: 5, or 3 when quick).
    ``loop``: ``None``/``"asyncio"`` or ``"uvloop"`` for every asyncio-based implementation.
    ``gc_mode``: force ``"on"`` or ``"off"`` for every row (default: each row's own setting).
    ``progress``: called with a short line before each measurement.
    """
    selected = select_rows(rows)
    if repeat <= 0:
        repeat = QUICK_REPEAT if quick else DEFAULT_REPEAT
    if gc_mode not in (None, "on", "off"):
        raise ValueError(f"gc_mode must be 'on', 'off' or None, got {gc_mode!r}")
    env = Env(loop)
    machine = _machine()
    report = Report(
        python=_python(),
        machine=machine,
        settings={
            "quick": quick,
            "repeat": repeat,
            "loop": env.loop_name,
            "gc": gc_mode or "per row",
            "corral": _corral_version(),
        },
    )
    cpus = os.cpu_count() or 1
    start_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if start_load > cpus * 0.5:
        report.warnings.append(
            f"machine busy at start: load average {start_load:.2f} on {cpus} CPUs; "
            "ratios within one run still compare, absolute times are inflated"
        )
    t0 = time.perf_counter()
    for row in selected:
        n = row.quick_items if quick else row.items
        results, row_report = _run_row(row, env, n, repeat, gc_mode or row.gc, progress)
        report.results.extend(results)
        report.rows.append(row_report)
    machine["elapsed_s"] = round(time.perf_counter() - t0, 2)
    if hasattr(os, "getloadavg"):
        end_load = os.getloadavg()
        machine["loadavg_end"] = [round(x, 2) for x in end_load]
        # This run itself adds about 1 to the load average.
        if end_load[0] > cpus * 0.5 + 1.0 and start_load <= cpus * 0.5:
            report.warnings.append(
                f"machine busy during the run: load average {end_load[0]:.2f} at the end "
                "(this run accounts for about 1)"
            )
    return report


def _corral_version() -> str:
    try:
        import corral

        return corral.__version__
    except Exception:  # pragma: no cover - the engine should still report
        return "unknown"
