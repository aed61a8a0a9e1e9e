"""The article's pipeline snippet (validate -> enrich -> transform) in Python, with
``corral.pipeline``.

Go::

    func pipeline(ctx context.Context, input <-chan RawData) <-chan ProcessedData {
        validated := validate(ctx, input)
        enriched := enrich(ctx, validated)
        transformed := transform(ctx, enriched)
        return transformed
    }
    func validate(ctx context.Context, in <-chan RawData) <-chan ValidData {
        out := make(chan ValidData)
        go func() {
            defer close(out)
            for data := range in {
                if data.IsValid() {
                    select {
                    case out <- ValidData(data):
                    case <-ctx.Done(): return
                    }
                }
            }
        }()
        return out
    }

Each stage is a ``corral.stage``: its own workers, and a bounded buffer to the next
stage, so the stages run concurrently and a slow one holds back the ones before it
(backpressure). The goroutine, the channel, ``defer close(out)`` and the
``select ... ctx.Done()`` of every Go stage are what ``pipeline`` does for each stage.
Stages may run as tasks, in threads or in processes, mixed. The first error cancels the
whole pipeline; ``statistics()`` names the bottleneck.
Run it: ``python docs/examples/pipeline.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import corral
import corral.threads


@dataclass(frozen=True)
class RawData:
    id: int
    text: str


class InvalidData(Exception):
    pass


# --8<-- [start:stages]
def validate(data: RawData) -> RawData:
    # Go drops invalid data silently; here it is an error that the stage skips
    # (errors="skip"), logged as a warning on the "corral" logger.
    if not data.text.strip():
        raise InvalidData(f"record {data.id} is empty")
    return data


async def enrich(data: RawData) -> tuple[int, str, int]:
    await asyncio.sleep(0.005)  # a lookup in another service: the slow stage
    return (data.id, data.text, len(data.text))


def enrich_blocking(data: RawData) -> tuple[int, str, int]:
    time.sleep(0.005)  # the same lookup, blocking
    return (data.id, data.text, len(data.text))


def transform(enriched: tuple[int, str, int]) -> str:
    id_, text, size = enriched
    return f"{id_}:{text.upper()}({size})"


# --8<-- [end:stages]
def records() -> list[RawData]:
    return [RawData(i, "" if i % 5 == 4 else f"rec{i}") for i in range(20)]


async def main() -> None:
    logging.getLogger("corral").setLevel(logging.ERROR)  # the skipped records are expected

    # --8<-- [start:run]
    async with corral.pipeline(
        records(),
        corral.stage(validate, errors="skip", name="validate"),  # a thread
        corral.stage(enrich, workers=4, buffer=8, name="enrich"),  # 4 tasks
        corral.stage(transform, workers=2, name="transform"),  # 2 threads
        ordered=True,  # keep the input's order end to end
    ) as out:
        results = [r async for r in out]
    # --8<-- [end:run]
    print(f"asyncio: {len(results)} records")
    print(f"  first: {results[:3]}")
    stats = out.statistics()
    print(f"  skipped by validate: {stats.stages[0].errors}")
    print(f"  bottleneck: {stats.bottleneck.name if stats.bottleneck else None}")

    with corral.threads.pipeline(
        records(),
        corral.stage(validate, errors="skip"),
        corral.stage(enrich_blocking, workers=4),
        corral.stage(transform),
        ordered=True,
    ) as tout:
        tresults = list(tout)
    print(f"threads: {len(tresults)} records, same as asyncio: {tresults == results}")

    # A stage error cancels the whole pipeline and reaches the consumer.
    def strict(data: RawData) -> RawData:
        if not data.text:
            raise InvalidData(f"record {data.id} is empty")
        return data

    try:
        await corral.pipeline(records(), strict, corral.stage(enrich, workers=4)).collect()
    except InvalidData as err:
        print(f"errors='raise' (the default): {err!r}")


if __name__ == "__main__":
    asyncio.run(main())
