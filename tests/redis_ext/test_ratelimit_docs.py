"""docs/examples/fleet_llm_rate_limits.py runs against a real redis-server and prints that the
fleet stayed within both limits (its own check of an independent log); on the cluster kind
with ``REDIS_CLUSTER=1``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import cluster_env

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "fleet_llm_rate_limits.py"


@pytest.mark.timeout(120)
def test_fleet_llm_example_stays_within_both_limits(redis_url: str) -> None:
    env = {**cluster_env(redis_url), "REDIS_URL": redis_url}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=100
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "144 calls from 4 processes; limits: 40 requests/min, 4,000 tokens/min, 3 in flight",
        "most requests in any minute: <= 40: True",
        "most tokens in any minute: <= 4,000 + burst: True",
        "most calls in flight: <= 3: True",
    ]
