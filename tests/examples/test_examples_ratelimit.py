"""docs/examples/llm_rate_limits.py runs, prints its deterministic totals, and never
exceeds a limit (the rates it achieves depend on the machine; the bounds do not)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

pytestmark = pytest.mark.timeout(60)

HEAD = """\
500 simulated LLM calls; limits: 60 requests/min, 10,000 tokens/min, 8 at once (1 min = 0.4 s here)
tokens: 105,307 used; 149,124 reserved up front, 43,817 refunded by grant.adjust after the replies
"""


def _number(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in the output:\n{text}"
    return float(m.group(1).replace(",", ""))


def test_llm_rate_limits_example_stays_within_every_limit() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "llm_rate_limits.py")],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    assert out.startswith(HEAD), out
    # Requests are spaced by the limiter (burst 1): (n - 1) / span can exceed 60 only by
    # the jitter of observing two grant instants, far below 0.5/min over 8+ minutes.
    assert _number(r"requests/min: achieved ([\d.]+) \(limit 60\)", out) <= 60.5
    achieved = _number(r"tokens/min: achieved ([\d,]+)", out)
    assert achieved <= _number(r"at most ([\d,]+) over this run", out)
    assert _number(r"most requests in any 1-min window: (\d+)", out) <= 60
    assert _number(r"peak calls in flight: (\d+) \(limit 8\)", out) <= 8
