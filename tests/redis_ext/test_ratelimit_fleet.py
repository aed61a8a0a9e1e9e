"""Fleets of real processes sharing corral.redis rate limits, judged by an independent log.

Eight processes (four asyncio, four threads; eight callers each) start at one wall-clock
instant. Each caller appends the instant ``acquire`` returned to one ``O_APPEND`` file
(``rate_worker.py``): the log is outside Redis (an independent record, not a second Redis)
and records what the callers' code saw, so it judges the promise where users judge it (a
server that counts requests per rolling second sees these instants, plus a constant).

Every module here runs on each server kind of the matrix (conftest.py), the cluster included:
the workers get cluster clients there (``cluster_env``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .conftest import cluster_env

WORKER = Path(__file__).with_name("rate_worker.py")
PROCS = 8
CALLERS = 8
#: Grants of push-back (late callers) up to which the fleet counts as on time: the issue's
#: 1 % bound (20 grants) less the headroom's 10 leaves room for this and a little idle time.
ON_TIME = 5.0


def _fleet(
    client: Any, url: str, tmp: Path, mode: str, seconds: float, args: list[object]
) -> tuple[float, list[tuple[float, int, int]]]:
    """Run the fleet; (start instant, [(instant, pid, cost)] sorted by instant)."""
    ns = f"fleet-{mode}"
    log = tmp / f"{mode}.log"
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), mode, "aio" if i % 2 else "threads", url, ns, str(log),
             str(CALLERS), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cluster_env(url),
        )
        for i in range(PROCS)
    ]  # fmt: skip
    try:
        for _ in range(PROCS):
            assert client.blpop([f"{ns}:ready"], timeout=60) is not None, "a process never started"
        start = time.time() + 0.3
        client.rpush(f"{ns}:go", *[json.dumps({"start": start, "seconds": seconds})] * PROCS)
        for p in procs:
            out, err = p.communicate(timeout=seconds + 30)
            assert p.returncode == 0, err
            print(out.strip())  # the process's statistics (shown with -s)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    rows = []
    for line in log.read_text().splitlines():
        t, pid, *cost = line.split()
        rows.append((float(t), int(pid), int(cost[0]) if cost else 1))
    rows.sort()
    return start, rows


def _worst_window(rows: list[tuple[float, int, int]], width: float) -> float:
    """The most cost in any half-open window ``[t, t + width)`` (windows start at an event:
    the worst one does)."""
    worst = total = 0.0
    j = 0
    for i, (t, _, _) in enumerate(rows):
        while j < len(rows) and rows[j][0] < t + width:
            total += rows[j][2]
            j += 1
        worst = max(worst, total)
        total -= rows[i][2]
    return worst


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_8_processes_one_rate_limit_hold_at_the_callers(
    client: Any, redis_url: str, tmp_path: Path
) -> None:
    """Eight processes share ``RateLimit(200, per=1.0)`` for 10 s (issue 21): no 1-second
    window at the callers sees more than 200 returns, and the fleet gets within 1 % of
    ``rate * seconds + burst`` = 2,001 grants whenever its callers were on time.

    What the 1 % covers: the headroom (the limiter grants 200 per 1.005 s so that a caller's
    wake-up jitter under 5 ms cannot crowd a window: 1,991 at most, 0.5 % below) and a few
    grants of the schedule pushed back by callers that resumed later than the headroom
    covers. That push is the only way a window starting at such a late return holds 200:
    on a loaded machine it is the promise's price, not the limiter's loss. Redis sums it
    (the shift total; ``lost_to_late`` is the grants it cost), so the test knows which case
    it is in:

    * callers on time (the push-back cost at most ``ON_TIME`` grants): the issue's bound,
      at least 99 % of 2,001;
    * callers stalled for longer (a loaded machine: CI runs several interpreters at once):
      99 % of 2,001 is out of reach without breaking the window promise. The bound is then
      98 % less what the push-back cost: besides the push-back, a machine that stalls every
      caller of the fleet at once leaves the schedule idle (nobody asks at the due time),
      about 0.3 % in the worst run measured at load ~10.

    Measured figures per load: docs/redis.md, "Fleet accuracy".
    """
    rate, seconds, burst, headroom = 200, 10.0, 1, 0.005
    _, rows = _fleet(client, redis_url, tmp_path, "rate", seconds, [rate])
    t0 = rows[0][0]
    inside = [r for r in rows if r[0] < t0 + seconds]
    worst = _worst_window(rows, 1.0)
    by_pid = Counter(pid for _, pid, _ in inside)
    shift = float(client.get("fleet-rate:{rl}:rl:rl:s") or 0) / 1e6
    lost_to_late = shift * rate / (1.0 + headroom)
    want = rate * seconds + burst
    on_time = lost_to_late <= ON_TIME
    print(
        f"grants in {seconds} s: {len(inside)} of {want} ({len(inside) / want - 1:+.2%});"
        f" worst 1-s window: {worst}; per process: {sorted(by_pid.values())}; pushed back"
        f" by late callers: {shift * 1e3:.1f} ms = {lost_to_late:.1f} grants"
        f" ({'on time: the 1 % bound' if on_time else 'stalled: 2 % beyond the push-back'})"
    )
    assert worst <= rate  # the caller-side promise: never more than 200 returns in a second
    assert len(inside) <= want
    if on_time:
        assert len(inside) >= 0.99 * want, (
            f"{len(inside)} grants: more than 1 % below {want}, with callers on time "
            f"(push-back {lost_to_late:.1f} grants)"
        )
    else:
        assert len(inside) >= 0.98 * want - lost_to_late, (
            f"{len(inside)} grants: more than 2 % below {want} beyond the "
            f"{lost_to_late:.1f} grants late callers' push-back cost"
        )
    assert len(by_pid) == PROCS


@pytest.mark.timeout(120)
def test_8_processes_limits_rpm_tpm_with_adjust(
    client: Any, redis_url: str, tmp_path: Path
) -> None:
    req_rate, tok_rate, tok_burst, seconds = 60, 5_000, 300, 3.0
    start, rows = _fleet(
        client, redis_url, tmp_path, "limits", seconds, [req_rate, tok_rate, tok_burst]
    )
    worst_req = _worst_window([(t, p, 1) for t, p, _ in rows], 1.0)
    worst_tok = _worst_window(rows, 1.0)
    inside = [r for r in rows if start <= r[0] < start + seconds]
    by_pid = Counter(pid for _, pid, _ in inside)
    print(f"calls: {len(inside)}; worst 1-s window: {worst_req} requests, {worst_tok} tokens;"
          f" per process: {sorted(by_pid.values())}")  # fmt: skip
    assert worst_req <= req_rate
    # GCRA's bound for weighted costs: the burst at once plus the rate over the window.
    assert worst_tok <= tok_rate + tok_burst
    # No process starved: FIFO across processes gives each about an eighth.
    assert len(by_pid) == PROCS
    assert min(by_pid.values()) >= 0.4 * len(inside) / PROCS
