"""What a run reports while it runs: progress callbacks and per-stage statistics.

:class:`Progress` and its driver (called from the consumer, at most every
``PROGRESS_INTERVAL``), :class:`StageStatistics` and :class:`PipelineStatistics` (built by
``StageRun.statistics`` / ``FlowRun.statistics`` from the workers' ``WorkerRecord``s).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._engine import FlowRun

__all__ = ["PipelineStatistics", "Progress", "StageStatistics"]

# -- progress ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    """What a progress callback gets: results delivered so far, failures, elapsed time.

    ``total`` is ``len(items)`` when the input has a length, else ``None``.

    >>> import corral.threads
    >>> seen = []
    >>> _ = corral.threads.fan_out(abs, range(5), workers=2, progress=seen.append).collect()
    >>> seen[-1].done, seen[-1].total, seen[-1].failed
    (5, 5, 0)
    """

    done: int
    failed: int
    total: int | None
    elapsed: float

    @property
    def rate(self) -> float:
        """Results per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


ProgressSpec = Callable[[Progress], object] | bool | None
PROGRESS_INTERVAL = 0.1  # seconds between two progress reports (first and last always sent)


def check_progress(progress: object, what: str) -> None:
    if progress is None or progress is False or callable(progress):
        return
    if progress is True:
        try:
            importlib.import_module("tqdm")
        except ImportError:
            raise ImportError(
                f"{what}: progress=True draws a tqdm bar, but tqdm is not installed "
                "(pip install 'corral[tqdm]'), or pass a callback: progress=fn"
            ) from None
        return
    raise TypeError(
        f"{what}: progress must be a callable, True (a tqdm bar) or None, "
        f"got {type(progress).__name__}"
    )


class ProgressDriver:
    """Calls the progress hook from the consumer, at most every ``PROGRESS_INTERVAL``."""

    __slots__ = ("_bar", "_fn", "_last", "_next", "_run", "_shown", "closed")

    def __init__(self, spec: ProgressSpec, run: FlowRun) -> None:
        self._run = run
        self._bar: Any = None
        self._fn: Callable[[Progress], object] | None = None
        if spec is True:
            tqdm = importlib.import_module("tqdm").tqdm  # optional: corral[tqdm]
            self._bar = tqdm(total=run.plan.total, unit="item", desc=run.plan.what)
        elif callable(spec):
            self._fn = spec
        self._next = 0.0
        self._shown = 0
        self._last: Progress | None = None
        self.closed = False

    def tick(self, done: int) -> None:
        now = time.perf_counter()
        if now >= self._next:
            self._next = now + PROGRESS_INTERVAL
            self._report(done, now)

    def _report(self, done: int, now: float) -> None:
        run = self._run
        p = Progress(done, run.failed_count(), run.plan.total, now - run.t0)
        if self._bar is not None:
            self._bar.update(done - self._shown)
            self._shown = done
        if self._fn is not None:
            self._fn(p)

    def close(self, done: int) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._report(done, time.perf_counter())
        finally:
            if self._bar is not None:
                self._bar.close()


# -- statistics -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageStatistics:
    """One stage of a running or finished fan-out/pipeline.

    Times are worker-seconds. ``busy`` is time not spent parked: waiting for input
    (``waiting_input``) or for room in the output buffer (``waiting_output``).
    ``utilization`` is ``busy / (workers * elapsed)``: near 1.0 for the bottleneck.
    Buffer figures describe this stage's *output* buffer (``buffer_mean`` and
    ``buffer_high`` are sampled as results are delivered).

    >>> import corral.threads
    >>> with corral.threads.pipeline(range(10), corral.stage(abs, name="abs")) as out:
    ...     _ = list(out)
    >>> s = out.statistics().stages[0]
    >>> s.name, s.run_in, s.items_in, s.items_out, s.errors
    ('abs', 'thread', 10, 10, 0)
    """

    name: str
    run_in: str
    workers: int
    items_in: int
    items_out: int
    errors: int
    busy: float
    waiting_input: float
    waiting_output: float
    utilization: float
    waiting_now: int  #: workers parked right now (for input, for room, or for a window slot)
    buffer: int
    buffer_now: int
    buffer_mean: float
    buffer_high: int


@dataclass(frozen=True, slots=True)
class PipelineStatistics:
    """A snapshot of a fan-out or pipeline: per-stage figures and the bottleneck.

    >>> import corral.threads
    >>> with corral.threads.pipeline(range(100), corral.stage(abs, workers=2)) as out:
    ...     n = sum(1 for _ in out)
    >>> stats = out.statistics()
    >>> n, stats.stages[0].items_out, stats.bottleneck.name
    (100, 100, 'abs')
    """

    stages: tuple[StageStatistics, ...]
    elapsed: float
    delivered: int
    running: bool

    @property
    def bottleneck(self) -> StageStatistics | None:
        """The stage whose workers were busiest (highest utilization)."""
        if not self.stages:
            return None
        return max(self.stages, key=lambda s: (s.utilization, -s.waiting_output))

    def report(self) -> str:
        """A table of the stages, and a line naming the bottleneck and why."""
        head = (
            f"{'stage':<16} {'run_in':<8} {'wrk':>4} {'in':>9} {'out':>9} {'err':>6} "
            f"{'busy':>6} {'wait-in':>8} {'wait-out':>8} {'buffer mean/high/cap':>21}"
        )
        lines = [head]
        for s in self.stages:
            cap = s.workers * self.elapsed or 1.0
            lines.append(
                f"{s.name[:16]:<16} {s.run_in:<8} {s.workers:>4} {s.items_in:>9} "
                f"{s.items_out:>9} {s.errors:>6} {s.busy / cap:>6.0%} "
                f"{s.waiting_input / cap:>8.0%} {s.waiting_output / cap:>8.0%} "
                f"{s.buffer_mean:>9.1f}/{s.buffer_high}/{s.buffer:<5}"
            )
        b = self.bottleneck
        state = "running" if self.running else "finished"
        lines.append(f"{self.delivered} results in {self.elapsed:.3f} s ({state})")
        if b is not None:
            lines.append(
                f"bottleneck: {b.name!r} (busy {b.utilization:.0%} of {b.workers} worker(s); "
                "stages before it wait for room, stages after it wait for input)"
            )
        return "\n".join(lines)
