"""The thread flavours (patterns, Redis shells) are generated from the asyncio ones: keep it so.

That every generated file is up to date is checked by ``make lint`` (``scripts/unasync_patterns.py
--check``), which ``make check`` and ``make test`` run: once per loop, not again inside pytest.
"""

from __future__ import annotations

from pathlib import Path

import corral
import corral.threads

ROOT = Path(__file__).resolve().parents[2]


def test_both_flavours_export_the_pattern_names() -> None:
    names = {"fan_out", "fan_in", "pipeline", "or_done", "tee", "stage", "Stage", "Outcome"}
    names |= {"Progress", "StageStatistics", "PipelineStatistics"}
    for mod in (corral, corral.threads):
        assert names <= set(mod.__all__)
    # Flavour-neutral names are the very same objects; the others differ.
    for n in ("stage", "Stage", "Outcome", "Progress", "StageStatistics", "PipelineStatistics"):
        assert getattr(corral, n) is getattr(corral.threads, n)
    for n in ("fan_out", "fan_in", "pipeline", "or_done", "tee"):
        assert getattr(corral, n) is not getattr(corral.threads, n)


def test_redis_thread_shell_is_generated_from_the_asyncio_shell() -> None:
    # `scripts/unasync_patterns.py --check` (in `make lint`, hence `make check` and `make test`)
    # covers them only while the script lists them: keep them listed.
    for aio, threads in [
        ("aio", "threads"),
        ("aio_semaphore", "threads_semaphore"),
        ("rate_aio", "rate_threads"),
    ]:
        first = (ROOT / f"src/corral/_redis/{threads}.py").read_text().splitlines()[0]
        want = f"# GENERATED from src/corral/_redis/{aio}.py by scripts/unasync_patterns.py."
        assert first == want
