"""Hammer: threads submitting to one corral.threads.Group under a limit, one worker failing.

Invariants checked after the block: the failing worker's error is what the group raised;
every go() either returned a Future that is resolved, or raised Cancelled (the group had
failed) or GroupError (it had finished); the limit was never exceeded; no thread is left
(the suite's leak check). ``CORRAL_STRESS=1`` runs more rounds.
"""

from __future__ import annotations

import os
import random
import threading
from concurrent.futures import Future
from typing import Any

import pytest

import corral
import corral.testing
import corral.threads

pytestmark = [pytest.mark.hammer, pytest.mark.timeout(300)]

ROUNDS = 300 if os.environ.get("CORRAL_STRESS") == "1" else 40


class Boom(Exception):
    pass


def one_round(rng: random.Random) -> None:
    limit = rng.randint(1, 4)
    fail_at = rng.randint(1, 40)  # the n-th worker to start fails
    g = corral.threads.Group(limit=limit)
    lock = threading.Lock()
    active = [0, 0]  # now, peak
    counter = [0]
    boom = Boom()

    def work(ctx: corral.Context) -> None:
        with lock:
            counter[0] += 1
            n = counter[0]
            active[0] += 1
            active[1] = max(active[1], active[0])
        try:
            if n == fail_at:
                raise boom
            ctx.raise_if_cancelled()
        finally:
            with lock:
                active[0] -= 1

    def submitter() -> list[Any]:
        out: list[Any] = []
        for _ in range(10):
            try:
                out.append(g.go(work, g.ctx))
            except (corral.Cancelled, corral.GroupError) as e:
                out.append(e)
        return out

    raised: BaseException | None = None
    results: list[list[Any]] = []
    try:
        with g:
            results = corral.testing.hammer(*[submitter] * 4, switch_interval=1e-5)
    except Boom as e:
        raised = e
    futures = [h for r in results for h in r if isinstance(h, Future)]
    assert all(f.done() for f in futures)
    assert active[1] <= limit
    assert raised is (boom if counter[0] >= fail_at else None)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_submitters_racing_a_failure(seed: int) -> None:
    print(f"seed={seed}")
    rng = random.Random(seed)
    for _ in range(ROUNDS):
        one_round(rng)
