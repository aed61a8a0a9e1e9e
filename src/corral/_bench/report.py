"""The outcome of a benchmark run: per-implementation results, per-row ratios, JSON, table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["Comparison", "Report", "Result", "RowReport", "Status", "Verdict"]

Status = Literal["ok", "missing", "error"]
Verdict = Literal["met", "missed", "n/a"]


@dataclass(slots=True)
class Result:
    """One implementation of one row."""

    benchmark: str
    impl: str
    peer: bool
    status: Status
    #: Best (lowest) time per operation over the repeats, in nanoseconds; ``None`` unless ok.
    #: In a row whose ``metric`` is ``"bytes"``: the lowest bytes per operation instead.
    ns_per_op: float | None = None
    #: Worst / best over the repeats (1.0 = no spread); ``None`` unless ok.
    spread: float | None = None
    samples_ns: list[float] = field(default_factory=list)
    #: Best CPU time of this process per operation (all threads), in nanoseconds: steadier
    #: than wall time on a busy machine for single-threaded rows.
    cpu_ns_per_op: float | None = None
    cpu_samples_ns: list[float] = field(default_factory=list)
    items: int = 0
    gc: str = "on"
    error: str | None = None
    #: Each measured run's extra figures (``Timing.figures``), when the row reports any.
    figures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Comparison:
    """How one corral implementation of a row compares with the peers of the same run."""

    impl: str
    reference: str | None
    vs_reference: float | None  #: corral best / reference best (lower is better)
    #: Median over the interleaved rounds of (corral / reference) in the same round: steadier
    #: than the ratio of bests when the machine's load changes during the row.
    vs_reference_paired: float | None
    vs_reference_cpu: float | None  #: the same ratio in CPU time (best / best)
    best_peer: str | None
    vs_best_peer: float | None  #: corral time / fastest peer's time
    target: float | None
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class RowReport:
    benchmark: str
    note: str
    unit: str
    gc: str
    items: int
    repeats: int
    comparisons: list[Comparison] = field(default_factory=list)
    #: "time" (ns per operation) or "bytes" (bytes per operation, in the same fields)
    metric: str = "time"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Report:
    """A whole run. ``to_json()`` for machines, ``to_table()`` for people."""

    python: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    results: list[Result] = field(default_factory=list)
    rows: list[RowReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def result(self, benchmark: str, impl: str) -> Result | None:
        for r in self.results:
            if r.benchmark == benchmark and r.impl == impl:
                return r
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "machine": self.machine,
            "settings": self.settings,
            "warnings": list(self.warnings),
            "results": [r.to_dict() for r in self.results],
            "rows": [r.to_dict() for r in self.rows],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_table(self) -> str:
        s = self.settings
        lines = [
            f"corral bench — {self.python}, {self.machine.get('cpus')} CPUs, "
            f"loop={s.get('loop')}, {'quick' if s.get('quick') else 'full'} run, "
            f"best of {s.get('repeat')} (after a warm-up); "
            f"load {self.machine.get('loadavg_start')}",
            "ratios are time / reference time in this run: < 1 means faster than the reference",
        ]
        lines += [f"WARNING: {w}" for w in self.warnings]
        for row in self.rows:
            lines.append("")
            lines.extend(self._row_table(row))
        return "\n".join(lines) + "\n"

    def _row_table(self, row: RowReport) -> list[str]:
        results = [r for r in self.results if r.benchmark == row.benchmark]
        head = f"{row.benchmark}  [n={row.items:,}, gc {row.gc}, best of {row.repeats}]"
        out = [head]
        if row.note:
            out.append(f"  {row.note}")
        ref = next((c.reference for c in row.comparisons if c.reference), None)
        ref_res = self.result(row.benchmark, ref) if ref else None
        ref_ns = ref_res.ns_per_op if ref_res is not None else None
        width = max([len(r.impl) for r in results] + [4])
        ref_col = f"vs {ref}" if ref else ""
        per = ("B/" if row.metric == "bytes" else "ns/") + row.unit
        out.append(f"  {'impl':<{width}}  {per:>11}  {'spread':>7}  {'cpu ns':>8}  {ref_col}")
        for r in results:
            name = r.impl if r.peer else f"{r.impl} *"
            if r.status != "ok" or r.ns_per_op is None:
                msg = r.error or r.status
                out.append(f"  {name:<{width}}  {r.status.upper():>11}  {'':>7}  {'':>8}  {msg}")
                continue
            ratio = f"{r.ns_per_op / ref_ns:.2f}×" if ref_ns else ""
            spread = f"{r.spread:.2f}×" if r.spread is not None else ""
            cpu = f"{r.cpu_ns_per_op:,.0f}" if r.cpu_ns_per_op is not None else ""
            out.append(f"  {name:<{width}}  {r.ns_per_op:>11,.0f}  {spread:>7}  {cpu:>8}  {ratio}")
            out.extend(f"  {'':<{width}}    run {k + 1}: {f}" for k, f in enumerate(r.figures))
        for c in row.comparisons:
            parts = []
            if c.vs_reference is not None:
                part = f"{c.vs_reference:.2f}× {c.reference}"
                extra = []
                if c.vs_reference_paired is not None:
                    extra.append(f"paired median {c.vs_reference_paired:.2f}×")
                if c.vs_reference_cpu is not None:
                    extra.append(f"cpu {c.vs_reference_cpu:.2f}×")
                if extra:
                    part += " [" + ", ".join(extra) + "]"
                if c.target is not None:
                    part += f" (target ≤ {c.target:g}×: {c.verdict})"
                parts.append(part)
            elif c.reference is not None:
                parts.append(f"reference {c.reference} not measured")
            if c.vs_best_peer is not None:
                parts.append(f"{c.vs_best_peer:.2f}× best peer ({c.best_peer})")
            out.append(f"  → {c.impl}: " + "; ".join(parts or ["no peer measured"]))
        return out
