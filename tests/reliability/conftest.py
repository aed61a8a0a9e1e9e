"""Reliability suite: prints the figures block at the end of the run (see figures.py)."""

from __future__ import annotations

import pytest

from . import figures


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = figures.render()
    if not lines:
        return
    terminalreporter.section("corral reliability figures", sep="=", bold=True)
    for line in lines:
        terminalreporter.write_line(line)
    terminalreporter.write_sep("=", "end of corral reliability figures")
