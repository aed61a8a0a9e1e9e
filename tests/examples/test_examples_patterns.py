"""docs/examples/{fan_out_fan_in,pipeline,or_done,tee,semaphore_limit}.py run and print
what they say: the seed's fan-out/fan-in, pipeline, or-done, tee and bounded-concurrency
snippets, in Python."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

pytestmark = pytest.mark.timeout(60)


def run_example(name: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


FAN_OUT_FAN_IN = """\
asyncio:
  results: ['PAYLOAD-0', 'PAYLOAD-1', 'PAYLOAD-2', 'PAYLOAD-4', 'PAYLOAD-5', 'PAYLOAD-6', \
'PAYLOAD-8', 'PAYLOAD-9']
  skipped: ['item 3 has no payload', 'item 7 has no payload']
threads:
  results: ['PAYLOAD-0', 'PAYLOAD-1', 'PAYLOAD-2', 'PAYLOAD-4', 'PAYLOAD-5', 'PAYLOAD-6', \
'PAYLOAD-8', 'PAYLOAD-9']
  skipped: ['item 3 has no payload', 'item 7 has no payload']
errors='collect', in input order:
  item 0: PAYLOAD-0
  item 1: PAYLOAD-1
  item 2: PAYLOAD-2
  item 3: ProcessError('item 3 has no payload')
fan_in of two queues: ['eu-1', 'eu-2', 'eu-3', 'us-1', 'us-2']
"""

PIPELINE = """\
asyncio: 16 records
  first: ['0:REC0(4)', '1:REC1(4)', '2:REC2(4)']
  skipped by validate: 4
  bottleneck: enrich
threads: 16 records, same as asyncio: True
errors='raise' (the default): InvalidData('record 4 is empty')
"""

OR_DONE = """\
asyncio: read [0, 1, 2, 3, 4], then ctx was done: Cancelled
threads: read [] from a quiet channel; ctx: DeadlineExceeded
"""

TEE = """\
lockstep: audit got event-0
  audit waits for event-1: search has not taken event-0 yet
  search got event-0, so audit gets event-1
  then both got the rest: ['event-2'] ['event-1', 'event-2']
buffer=3: the fast consumer ran ahead by 4 values: [0, 1, 2, 3]
  then: fast got 10, slow got 10
drop, buffer=5 (threads): the stalled consumer got [95, 96, 97, 98, 99], dropped 95
  the live one got the newest value: 99
"""

SEMAPHORE_LIMIT = """\
asyncio: 50 items, at most 10 at once
  one item fails: BadItem('item -1 is invalid')
  the items still waiting for the semaphore never ran: True
  the semaphore is free again: True
threads: 30 items, at most 10 at once: True
fan_out(workers=10): 50 items, at most 10 at once
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fan_out_fan_in.py", FAN_OUT_FAN_IN),
        ("pipeline.py", PIPELINE),
        ("or_done.py", OR_DONE),
        ("tee.py", TEE),
        ("semaphore_limit.py", SEMAPHORE_LIMIT),
    ],
)
def test_pattern_example_prints_what_it_says(name: str, expected: str) -> None:
    assert run_example(name) == expected
