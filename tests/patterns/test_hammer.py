"""Hammer: random pipelines (kinds, workers, buffers, order, policies, sources, early exits,
consumer cancellation) with a tiny thread switch interval. Marked ``hammer`` (run in the
second pass, and ten times longer with ``CORRAL_STRESS=1``); the seed is printed and
``CORRAL_SEED=<seed>`` replays a failure.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

import corral
import corral.threads

pytestmark = pytest.mark.hammer

ROUNDS = 40 * (10 if os.environ.get("CORRAL_STRESS") else 1)


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("CORRAL_SEED") or random.randrange(2**32))
    print(f"hammer seed: CORRAL_SEED={seed}")
    return random.Random(seed)


@pytest.fixture
def tiny_switch_interval() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.fixture(autouse=True)
def _quiet_skips(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="corral")


class Planted(Exception):
    pass


def _work(kind: str, rng: random.Random, fail: float) -> Any:
    # Each stage gets its own Random: workers run concurrently.
    r = random.Random(rng.random())

    def body(x: int) -> int:
        if r.random() < fail:
            raise Planted(x)
        return x

    if kind == "async":

        async def a(x: int) -> int:
            if r.random() < 0.2:
                await asyncio.sleep(0)
            return body(x)

        return a

    def s(x: int) -> int:
        if r.random() < 0.05:
            time.sleep(0)
        return body(x)

    return s


def _source(kind: str, n: int) -> Any:
    if kind == "range":
        return range(n)
    if kind == "generator":
        return (i for i in range(n))
    if kind == "async generator":

        async def agen() -> Any:
            for i in range(n):
                yield i

        return agen()
    ch = corral.threads.Channel(n + 1)
    for i in range(n):
        ch.send(i)
    ch.close()
    return ch


def _plan(rng: random.Random) -> dict[str, Any]:
    n = rng.choice([0, 1, 7, 100, 1000])
    fail = rng.choice([0.0, 0.0, 0.01])
    policies = ["raise", "skip"] if fail else ["raise"]
    stages = [
        corral.stage(
            _work(rng.choice(["async", "sync"]), rng, fail),
            workers=rng.randint(1, 5),
            buffer=rng.choice([0, 1, 3, 32]),
            errors=rng.choice(policies),
        )
        for _ in range(rng.randint(1, 3))
    ]
    return {
        "n": n,
        "stages": stages,
        "ordered": rng.random() < 0.5,
        "source": rng.choice(["range", "generator", "async generator", "channel"]),
        "stop_after": rng.choice([None, None, 0, 5]),
        "skips": any(s.errors == "skip" for s in stages),
    }


def _check(plan: dict[str, Any], got: list[int], stopped: bool) -> None:
    n = plan["n"]
    assert len(set(got)) == len(got), "an item came out twice"
    assert set(got) <= set(range(n))
    if plan["ordered"]:
        assert got == sorted(got), "ordered output out of order"
    if not stopped and not plan["skips"]:
        assert sorted(got) == list(range(n)), f"{len(got)} of {n} items"


async def test_random_asyncio_pipelines(rng: random.Random, tiny_switch_interval: None) -> None:
    for _ in range(ROUNDS):
        plan = _plan(rng)
        got: list[int] = []
        stopped = False
        try:
            async with asyncio.timeout(rng.choice([0.001, 0.01, 30.0])):
                async with corral.pipeline(
                    _source(plan["source"], plan["n"]), *plan["stages"], ordered=plan["ordered"]
                ) as out:
                    async for x in out:
                        got.append(x)
                        if plan["stop_after"] is not None and len(got) > plan["stop_after"]:
                            stopped = True
                            break
        except (Planted, TimeoutError):
            stopped = True
        _check(plan, got, stopped)
        assert asyncio.all_tasks() == {asyncio.current_task()}, "a task outlived its run"


def test_random_thread_pipelines(rng: random.Random, tiny_switch_interval: None) -> None:
    for _ in range(ROUNDS):
        plan = _plan(rng)
        got: list[int] = []
        stopped = False
        try:
            with corral.threads.pipeline(
                _source(plan["source"], plan["n"]), *plan["stages"], ordered=plan["ordered"]
            ) as out:
                for x in out:
                    got.append(x)
                    if plan["stop_after"] is not None and len(got) > plan["stop_after"]:
                        stopped = True
                        break
        except Planted:
            stopped = True
        _check(plan, got, stopped)
