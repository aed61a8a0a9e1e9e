"""docs/examples/channel_select.py and docs/examples/context.py run and print what they say.

Both are included in the docs site's guides (docs/guide/), so what a reader sees there is
what runs here.
"""

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


CHANNEL_SELECT_OUTPUT = """\
validated: ['alpha', 'beta', 'gamma', 'delta', 'epsilon']
cancelled after ['alpha', 'beta']: both returned, valid.closed=True
default: None
timeout: DeadlineExceeded
received 'last' from case 0, ok=True
closed and drained: value=None, ok=False
recv on a closed, drained channel raises EndOfChannel
a thread fed a task through one channel: [0, 1, 4, 9, 16]
threads: the worker handled ['job-1', 'job-2', 'job-3'], then quit
"""


def test_channel_select_example() -> None:
    assert run_example("channel_select.py") == CHANNEL_SELECT_OUTPUT


CONTEXT_OUTPUT = """\
fast: ok (request 42)
slow: DeadlineExceeded, ctx.err is DeadlineExceeded
cancel with a cause:
  after_func ran: child is done
  child.err=Cancelled, cause=RuntimeError('shutting down')
  detached is still live: True
  stop() after it ran: False
select woke on case 1 (ctx.done()), ok=False
recv(ctx=ctx) raised DeadlineExceeded
threads: the worker stopped with Cancelled: 1 error
"""


def test_context_example() -> None:
    assert run_example("context.py") == CONTEXT_OUTPUT
