"""The reliability figures: counts the suite must print on every CI run, and meet.

Tests record what they measured with :func:`record`; ``conftest.py`` prints every record
in one labelled block at the end of the pytest run (``pytest_terminal_summary``), whether
the test passed or not. A figure that misses its requirement also fails its test: the block
is the summary, the asserts are the enforcement.

How many runs: ``CORRAL_FIGURES=0`` (quick, for the extra Pythons in CI), unset (the
figures the issue asks for), ``CORRAL_STRESS=1`` (``make stress``: ten times more).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

QUICK = os.environ.get("CORRAL_FIGURES", "1") == "0"
STRESS = os.environ.get("CORRAL_STRESS", "0") == "1"
MODE = "stress" if STRESS else "quick" if QUICK else "figures"

# Per-test timeout for the big loops (pytest-timeout; the suite's default is 60 s).
TIMEOUT = 1800 if STRESS else 300

SCENARIOS_REQUIRED = 12
SCHEDULES_REQUIRED = 500
THREAD_RUNS_REQUIRED = 100


def count(figures: int, *, quick: int, stress: int | None = None) -> int:
    """How many runs to do in this mode: ``figures`` is the count the issue requires."""
    if STRESS:
        return stress if stress is not None else 10 * figures
    return quick if QUICK else figures


def at_least(required: int) -> int:
    """The requirement to enforce: ``required`` except in quick mode (then nothing)."""
    return 0 if QUICK else required


@dataclass
class Figure:
    section: str
    name: str
    value: str
    requirement: str
    ok: bool


_records: list[Figure] = []


def record(section: str, name: str, value: object, requirement: str = "", ok: bool = True) -> None:
    """Add a line to the figures block (printed at the end of the run)."""
    _records.append(Figure(section, name, str(value), requirement, ok))


@dataclass
class Conservation:
    scenario: str
    schedules: int
    distinct: int
    thread_runs: int
    items: int  # over both the schedules and the thread runs
    ok: bool
    unit: str = "items"  # or "grants" (semaphore), "callers" (SingleFlight)


_conservation: list[Conservation] = []


def record_conservation(c: Conservation, requirement: str) -> None:
    """One scenario's item-conservation row (and, at render time, the totals row)."""
    _conservation.append(c)
    verdicts = {
        "items": "lost 0, duplicated 0, per-producer order kept",
        "grants": "never over size, every permit back",
        "callers": "each served once, by one call of its key",
    }
    verdict = verdicts[c.unit] if c.ok else "FAILED"
    value = (
        f"{c.schedules} schedules ({c.distinct} distinct) + {c.thread_runs} thread runs, "
        f"{c.items} {c.unit}: {verdict}"
    )
    record("item conservation", c.scenario, value, requirement, c.ok)


def records() -> list[Figure]:
    return list(_records)


def render() -> list[str]:
    """The figures block, one line per record, grouped by section in first-seen order."""
    if not _records:
        return []
    if _conservation:
        n = len(_conservation)
        ok = all(c.ok for c in _conservation)
        need = at_least(SCENARIOS_REQUIRED)
        total = (
            f"{n} scenarios, {sum(c.schedules for c in _conservation)} schedules, "
            f"{sum(c.thread_runs for c in _conservation)} thread runs, "
            f"{sum(c.items for c in _conservation if c.unit == 'items')} items"
        )
        _records[:] = [f for f in _records if f.name != "ALL SCENARIOS"]
        _records.append(
            Figure(
                "item conservation",
                "ALL SCENARIOS",
                total,
                f">= {need} scenarios",
                ok and n >= need,
            )
        )
    sections: dict[str, list[Figure]] = {}
    for f in _records:
        sections.setdefault(f.section, []).append(f)
    width = max(len(f.name) for f in _records)
    lines = [f"mode: {MODE} (CORRAL_FIGURES=0 quick, CORRAL_STRESS=1 stress)"]
    for section, figs in sections.items():
        lines.append("")
        lines.append(f"[{section}]")
        for f in figs:
            mark = "ok  " if f.ok else "FAIL"
            req = f"   (required: {f.requirement})" if f.requirement else ""
            lines.append(f"  {mark} {f.name.ljust(width)}  {f.value}{req}")
    failed = sum(not f.ok for f in _records)
    lines.append("")
    verdict = f"{failed} failing" if failed else "all met"
    lines.append(f"{len(_records)} figure(s), {verdict}")
    return lines
