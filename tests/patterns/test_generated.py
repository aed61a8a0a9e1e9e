"""The thread flavours (patterns, Redis shells) are generated from the asyncio ones: keep it so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import corral
import corral.threads

ROOT = Path(__file__).resolve().parents[2]


def test_threads_flavour_is_generated_from_the_asyncio_flavour_and_up_to_date() -> None:
    script = ROOT / "scripts" / "unasync_patterns.py"
    out = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


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
    # The check above covers it only while the script lists it: keep it listed.
    for aio, threads in [("aio", "threads"), ("aio_semaphore", "threads_semaphore")]:
        first = (ROOT / f"src/corral/_redis/{threads}.py").read_text().splitlines()[0]
        want = f"# GENERATED from src/corral/_redis/{aio}.py by scripts/unasync_patterns.py."
        assert first == want
