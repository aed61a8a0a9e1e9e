"""``corral demo --engine dask``: one CPU-heavy pipeline stage moved to a Dask cluster.

The pipeline reads documents lazily, parses them in threads, then scores each one with
pure-Python arithmetic (CPU-bound: the GIL makes threads useless for it). The scoring stage
runs twice, with one argument changed:

    corral.stage(score, workers=8, run_in="process")   # a process pool on this machine
    corral.stage(score, workers=8, executor=client)    # a Dask cluster (here a LocalCluster)

Both runs must give the same results in the same order (``ordered=True``). Then the demo
asks the scheduler how many of the run's tasks it still holds: none (``left_on_cluster``).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DaskDemoResult", "format_dask_text", "run_dask_demo"]

KEY_PREFIX = "corral-demo"


def documents(n: int) -> Iterator[str]:
    """The source: read lazily, one document at a time."""
    for i in range(n):
        yield f"doc-{i}: " + " ".join(str((i * 7919 + j) % 1000) for j in range(20))


def parse(doc: str) -> tuple[str, list[int]]:
    name, _, body = doc.partition(": ")
    return name, [int(w) for w in body.split()]


def score(parsed: tuple[str, list[int]]) -> tuple[str, int]:
    """The CPU-heavy stage: ~10-20 ms of pure-Python arithmetic per document."""
    name, words = parsed
    s = 0
    for w in words:
        for k in range(6_000):
            s = (s * 31 + w * k) % 1_000_003
    return name, s


def _run(n: int, where: dict[str, Any]) -> tuple[list[tuple[str, int]], float, Any]:
    import corral
    import corral.threads

    t = time.perf_counter()
    with corral.threads.pipeline(
        documents(n),
        corral.stage(parse, workers=2, name="parse"),
        corral.stage(score, workers=8, name="score", **where),
        ordered=True,
    ) as out:
        results = list(out)
    return results, time.perf_counter() - t, out.statistics()


@dataclass
class DaskDemoResult:
    documents: int
    dask_workers: int
    local_s: float
    dask_s: float
    equal: bool
    score_stage_run_in: str
    left_on_cluster: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _ours_left(dask_scheduler: Any) -> int:
    return sum(
        1
        for ts in dask_scheduler.tasks.values()
        if isinstance(ts.key, str)
        and ts.key.startswith(KEY_PREFIX)
        and ts.state in ("waiting", "queued", "processing", "no-worker")
    )


def run_dask_demo(n: int = 48, workers: int = 2) -> DaskDemoResult:
    """Run the pipeline on local processes, then on a fresh LocalCluster; compare."""
    import corral.dask

    distributed: Any = importlib.import_module("distributed")  # the extra; untyped

    local, local_s, _ = _run(n, {"run_in": "process"})
    with (
        distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address="127.0.0.1:0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        ex = corral.dask.DaskExecutor(client, key_prefix=KEY_PREFIX)
        remote, dask_s, stats = _run(n, {"executor": ex})
        left = client.run_on_scheduler(_ours_left)
    return DaskDemoResult(
        documents=n,
        dask_workers=workers,
        local_s=round(local_s, 3),
        dask_s=round(dask_s, 3),
        equal=remote == local,
        score_stage_run_in=stats.stages[1].run_in,
        left_on_cluster=int(left),
    )


def format_dask_text(r: DaskDemoResult) -> str:
    return "\n".join(
        [
            f"corral demo --engine dask: {r.documents} documents, parse (threads) -> score (CPU)",
            f"  score with run_in='process'     {r.local_s:7.2f} s  (a local process pool)",
            f"  score with executor=client      {r.dask_s:7.2f} s  "
            f"(LocalCluster, {r.dask_workers} worker processes; "
            f"stage run_in={r.score_stage_run_in!r})",
            f"  same results, same order:       {'yes' if r.equal else 'NO'}",
            f"  tasks of the run left on the cluster: {r.left_on_cluster}",
        ]
    )
