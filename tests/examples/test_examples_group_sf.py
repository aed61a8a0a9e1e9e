"""docs/examples/errgroup.py and docs/examples/singleflight.py run and print what they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

pytestmark = pytest.mark.timeout(60)


def run_example(name: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


ERRGROUP_OUTPUT = """\
dashboard for user 42:
  orders: ['order-1', 'order-2']
  stats: {'visits': 7}
  notifications: ['welcome back']
stats service down:
  error: ServiceError('stats service unavailable')
  the others stopped early: ['notifications', 'orders']
threads, dashboard for user 42:
  orders: ['order-1', 'order-2']
  stats: {'visits': 7}
  notifications: ['welcome back']
threads, stats service down:
  error: ServiceError('stats service unavailable')
  the others stopped early: ['notifications', 'orders']
"""


def test_errgroup_example() -> None:
    assert run_example("errgroup.py") == ERRGROUP_OUTPUT


SINGLEFLIGHT_OUTPUT = """\
100 concurrent requests for user 42: 1 database query
  every request got User(id='42', name='user-42'): True
100 more requests, now cached: 1 database query in total
first request for user 7: timed out
  the other 9 got User(id='7', name='user-7'), from 1 query
threads: 20 requests for user 9: 1 query, shared: True
"""


def test_singleflight_example() -> None:
    assert run_example("singleflight.py") == SINGLEFLIGHT_OUTPUT
