"""Item-conservation scenarios for the patterns: fan_out, pipeline, fan_in, tee.

Same contract as ``scenarios.py``: an asyncio form explored over seeded schedules and a
thread form hammered, checked by :func:`scenarios.check`. Stage functions yield to the
scheduler a random number of times, so items overtake each other inside the pattern.
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import corral
import corral.threads
from corral.testing import Schedule, hammer

from .scenarios import Item, Scenario, Tally, check


async def _jitter(rng: random.Random) -> None:
    for _ in range(rng.choice((0, 0, 1, 2))):
        await asyncio.sleep(0)


def _source(rng: random.Random) -> list[Item]:
    n_prod = rng.randint(1, 3)
    items = [(p, i) for p in range(n_prod) for i in range(rng.randint(0, 10))]
    # Interleave producers, each in its own order: per-producer order stays meaningful.
    streams = [[x for x in items if x[0] == p] for p in range(n_prod)]
    out: list[Item] = []
    while any(streams):
        s = rng.choice([s for s in streams if s])
        out.append(s.pop(0))
    return out


def _spin(rng: random.Random) -> None:
    for _ in range(rng.choice((0, 0, 10, 100))):
        pass


# --- fan_out ---------------------------------------------------------------------------------


def _fan_out() -> Scenario:
    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        src = _source(rng)
        ordered = rng.random() < 0.5

        async def fn(x: Item) -> Item:
            await _jitter(rng)
            return x

        flow = corral.fan_out(
            fn, src, workers=rng.randint(1, 4), buffer=rng.randint(0, 3), ordered=ordered
        )
        async with flow as results:
            got = [x async for x in results]
        if ordered:
            assert got == src, f"ordered fan_out reordered: {got} != {src}"
        return check(src, [got], ordered=ordered)

    def threads(rng: random.Random) -> Tally:
        src = _source(rng)
        ordered = rng.random() < 0.5
        seeds = [rng.random() for _ in src]

        def fn(x: Item) -> Item:
            _spin(random.Random(seeds[src.index(x)]))
            return x

        got: list[Item] = []

        def consume() -> None:
            flow = corral.threads.fan_out(
                fn, src, workers=rng.randint(1, 4), buffer=rng.randint(0, 3), ordered=ordered
            )
            with flow as results:
                got.extend(results)

        hammer(consume)
        if ordered:
            assert got == src, f"ordered fan_out reordered: {got} != {src}"
        return check(src, [got], ordered=ordered)

    return Scenario("fan_out", aio, threads)


# --- pipeline --------------------------------------------------------------------------------


def _pipeline() -> Scenario:
    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        src = _source(rng)
        ordered = rng.random() < 0.5
        passed: list[list[Item]] = [[], [], []]

        def make(k: int) -> Any:
            async def fn(x: Item) -> Item:
                await _jitter(rng)
                passed[k].append(x)
                return x

            return fn

        stages = [
            corral.stage(make(k), workers=rng.randint(1, 3), buffer=rng.randint(0, 2))
            for k in range(3)
        ]
        async with corral.pipeline(src, *stages, ordered=ordered) as out:
            got = [x async for x in out]
        for k in range(3):
            check(src, [passed[k]], ordered=False)  # every stage saw each item once
        if ordered:
            assert got == src, f"ordered pipeline reordered: {got} != {src}"
        return check(src, [got], ordered=ordered)

    def threads(rng: random.Random) -> Tally:
        src = _source(rng)
        ordered = rng.random() < 0.5
        lock = threading.Lock()
        passed: list[list[Item]] = [[], [], []]

        def make(k: int) -> Any:
            def fn(x: Item) -> Item:
                _spin(rng)
                with lock:
                    passed[k].append(x)
                return x

            return fn

        stages = [
            corral.threads.stage(make(k), workers=rng.randint(1, 3), buffer=rng.randint(0, 2))
            for k in range(3)
        ]
        got: list[Item] = []

        def consume() -> None:
            with corral.threads.pipeline(src, *stages, ordered=ordered) as out:
                got.extend(out)

        hammer(consume)
        for k in range(3):
            check(src, [passed[k]], ordered=False)
        if ordered:
            assert got == src, f"ordered pipeline reordered: {got} != {src}"
        return check(src, [got], ordered=ordered)

    return Scenario("pipeline, 3 stages", aio, threads)


# --- fan_in ----------------------------------------------------------------------------------


def _fan_in() -> Scenario:
    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        chans: list[corral.Channel[Item]] = [corral.Channel(rng.randrange(2)) for _ in range(3)]
        counts = [rng.randint(0, 8) for _ in chans]
        produced: list[Item] = []

        async def produce(p: int) -> None:
            for i in range(counts[p]):
                await chans[p].send((p, i))
                produced.append((p, i))
            chans[p].close()

        async with corral.fan_in(*chans, buffer=rng.randrange(3)) as merged:
            prods = [asyncio.create_task(produce(p)) for p in range(3)]
            got = [x async for x in merged]
            await asyncio.gather(*prods)
        return check(produced, [got])

    def threads(rng: random.Random) -> Tally:
        chans: list[corral.threads.Channel[Item]] = [
            corral.threads.Channel(rng.randrange(2)) for _ in range(3)
        ]
        counts = [rng.randint(0, 8) for _ in chans]
        produced: list[list[Item]] = [[] for _ in chans]
        got: list[Item] = []
        relay = corral.threads.fan_in(*chans, buffer=rng.randrange(3))

        def produce(p: int) -> None:
            try:
                for i in range(counts[p]):
                    chans[p].send((p, i))
                    produced[p].append((p, i))
            finally:
                chans[p].close()

        with relay as merged:

            def consume() -> None:
                got.extend(merged)

            hammer(*[lambda p=p: produce(p) for p in range(3)], consume)
        return check([x for ps in produced for x in ps], [got])

    return Scenario("fan_in of 3 channels", aio, threads)


# --- tee ---------------------------------------------------------------------------------------


def _tee() -> Scenario:
    """Every output of a lockstep or buffered tee gets every item, in order."""

    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        src = _source(rng)
        n = rng.randint(1, 3)
        policy = rng.choice(("lockstep", "buffer"))
        buffer = None if policy == "lockstep" else rng.randint(1, 3)

        async def consume(o: Any) -> list[Item]:
            got = []
            async for x in o:
                got.append(x)
                await _jitter(rng)
            return got

        async with corral.tee(src, n, policy=policy, buffer=buffer) as outs:
            streams = await asyncio.gather(*[consume(o) for o in outs])
        for s in streams:
            assert s == src, f"tee output {s} != source {src}"
        return check(src * n, streams)

    def threads(rng: random.Random) -> Tally:
        src = _source(rng)
        n = rng.randint(1, 3)
        policy = rng.choice(("lockstep", "buffer"))
        buffer = None if policy == "lockstep" else rng.randint(1, 3)
        streams: list[list[Item]] = [[] for _ in range(n)]
        with corral.threads.tee(src, n, policy=policy, buffer=buffer) as outs:

            def consume(k: int) -> None:
                for x in outs[k]:
                    streams[k].append(x)
                    _spin(rng)

            hammer(*[lambda k=k: consume(k) for k in range(n)])
        for s in streams:
            assert s == src, f"tee output {s} != source {src}"
        return check(src * n, streams)

    return Scenario("tee (lockstep, buffer)", aio, threads)


def _mixed_pipeline() -> Scenario:
    """A pipeline whose middle stage is a plain function: its workers are threads, between
    two stages of tasks (asyncio flavour) or of threads around coroutines run on the
    pipeline's private loop (thread flavour)."""

    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        src = _source(rng)

        async def first(x: Item) -> Item:
            await _jitter(rng)
            return x

        def middle(x: Item) -> Item:  # runs on a worker thread
            return x

        async def last(x: Item) -> Item:
            await _jitter(rng)
            return x

        stages = [
            corral.stage(first, workers=rng.randint(1, 2)),
            corral.stage(middle, workers=rng.randint(1, 3)),
            corral.stage(last, workers=rng.randint(1, 2)),
        ]
        ordered = rng.random() < 0.5
        async with corral.pipeline(src, *stages, ordered=ordered) as out:
            got = [x async for x in out]
        return check(src, [got], ordered=ordered)

    def threads(rng: random.Random) -> Tally:
        src = _source(rng)

        def first(x: Item) -> Item:
            return x

        async def middle(x: Item) -> Item:  # a coroutine: runs on the pipeline's loop
            await asyncio.sleep(0)
            return x

        stages = [
            corral.threads.stage(first, workers=rng.randint(1, 2)),
            corral.threads.stage(middle, workers=rng.randint(1, 3)),
            corral.threads.stage(first, workers=rng.randint(1, 2)),
        ]
        ordered = rng.random() < 0.5
        got: list[Item] = []

        def consume() -> None:
            with corral.threads.pipeline(src, *stages, ordered=ordered) as out:
                got.extend(out)

        hammer(consume)
        return check(src, [got], ordered=ordered)

    return Scenario("pipeline, task+thread stages", aio, threads, virtual_clock=False)


def _singleflight() -> Scenario:
    """Callers of a few keys arrive at random times: each gets its own key's value from
    exactly one call, every call that ran served at least one caller, and no two calls of
    one key overlapped (deduplication)."""

    def verify(results: list[tuple[int, tuple[int, int]]], calls: dict[int, int]) -> Tally:
        served: dict[tuple[int, int], int] = {}
        for key, token in results:
            assert token[0] == key, f"a caller of key {key} got {token}"
            assert 1 <= token[1] <= calls[key], f"{token}: no such call (calls {calls})"
            served[token] = served.get(token, 0) + 1
        for key, n in calls.items():
            for c in range(1, n + 1):
                assert served.get((key, c), 0) >= 1, f"call {(key, c)} served nobody"
        return Tally(len(results), False)

    async def aio(sched: Schedule) -> Tally:
        rng = sched.rng
        sf: corral.SingleFlight[int, tuple[int, int]] = corral.SingleFlight()
        calls: dict[int, int] = {}
        running: set[int] = set()

        async def load(key: int) -> tuple[int, int]:
            assert key not in running, f"two calls of key {key} at once"
            running.add(key)
            calls[key] = calls.get(key, 0) + 1
            n = calls[key]
            await _jitter(rng)
            await _jitter(rng)
            running.discard(key)
            return (key, n)

        async def caller(key: int) -> tuple[int, tuple[int, int]]:
            await _jitter(rng)
            return key, await sf.do(key, load, key)

        keys = [rng.randrange(3) for _ in range(rng.randint(1, 8))]
        results = await asyncio.gather(*[caller(k) for k in keys])
        return verify(list(results), calls)

    def threads(rng: random.Random) -> Tally:
        sf: corral.threads.SingleFlight[int, tuple[int, int]] = corral.threads.SingleFlight()
        calls: dict[int, int] = {}
        running: set[int] = set()
        lock = threading.Lock()

        def load(key: int) -> tuple[int, int]:
            with lock:
                assert key not in running, f"two calls of key {key} at once"
                running.add(key)
                calls[key] = calls.get(key, 0) + 1
                n = calls[key]
            _spin(rng)
            with lock:
                running.discard(key)
            return (key, n)

        keys = [rng.randrange(3) for _ in range(rng.randint(2, 8))]
        results: list[tuple[int, tuple[int, int]]] = []

        def caller(key: int) -> None:
            token = sf.do(key, load, key)
            with lock:
                results.append((key, token))

        def task_callers() -> None:  # two asyncio callers on a loop, same call table
            async def main() -> None:
                asf = sf.as_async()
                for key, token in await asyncio.gather(
                    *[_call_async(asf, k, load) for k in (0, 1)]
                ):
                    with lock:
                        results.append((key, token))

            asyncio.run(main())

        hammer(*[lambda k=k: caller(k) for k in keys], task_callers)
        return verify(results, calls)

    return Scenario("SingleFlight dedup, threads+tasks", aio, threads, unit="callers")


async def _call_async(asf: Any, key: int, load: Any) -> tuple[int, Any]:
    return key, await asf.do(key, load, key)


PATTERN_SCENARIOS: list[Scenario] = [
    _fan_out(),
    _pipeline(),
    _fan_in(),
    _tee(),
    _mixed_pipeline(),
    _singleflight(),
]
