"""The flavour-neutral half of the patterns: specs, policies, statistics, and the engine.

``FlowRun`` is what ``fan_out`` and ``pipeline`` (both flavours) run on. Its shape:

* stage ``i``'s workers take items from their input (the source, or stage ``i-1``'s
  output channel) and put results into stage ``i``'s output channel, whose capacity is
  the stage's ``buffer``. The consumer reads the last stage's output.
* the first stage's workers pull from a plain iterable *directly* (``IterSource``): no
  feeder task, no extra hand-off. An async iterable (or a channel, in ordered mode) gets
  a feeder worker that hands items on through a rendezvous channel: that one item is the
  ``+ 1`` in the bound on items in flight, ``sum(buffer + workers) + 1``.
* a worker is a task (coroutine functions, and executor calls in the asyncio flavour) or
  a thread (plain functions, and executor calls in the thread flavour); one run may mix
  both, because corral channels are shared between threads and tasks. Task workers of
  the thread flavour live on a private event loop thread owned by the run.
* the run owns a child Context: the first error (or the consumer leaving) cancels it,
  which wakes every parked worker; task workers are also cancelled through a cancel
  scope, so a coroutine blocked elsewhere stops too. Threads cannot be interrupted: a
  thread finishes the call it is in (see lessons-from-peers, item 11).
* each worker's exit is counted; the last worker of a stage closes its output channel,
  and the last worker of the run closes ``finished``, the channel the consumer's exit
  waits on. Nothing the run started outlives that wait plus ``finalize``.
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
import logging
import multiprocessing
import os
import pickle
import sys
import threading
import time
import types
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from .._core.channel import CLOSED, ChannelState, check_capacity
from .._core.context import CancelContext, Context, background, with_cancel
from .._core.semaphore import SemaphoreState
from .._shells import ChannelBase

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "SKIPPED",
    "FlowPlan",
    "FlowRun",
    "Outcome",
    "PipelineStatistics",
    "Progress",
    "Stage",
    "StageStatistics",
    "plan_fan_out",
    "plan_pipeline",
    "stage",
]

T = TypeVar("T")
R = TypeVar("R")

_log = logging.getLogger("corral")

ErrorPolicy = Literal["raise", "collect", "skip"]
RunIn = Literal["task", "thread", "process"]
_POLICIES = ("raise", "collect", "skip")
_RUN_IN = ("task", "thread", "process")
RAISE, COLLECT, SKIP = 0, 1, 2
DEFAULT_BUFFER = 16


def default_buffer(workers: int) -> int:
    """The default buffer: 16, or one slot per worker when there are more workers.

    When the next stage (or the consumer) is the slower one, each time the buffer drains
    every worker parked on it with a result is woken once: with fewer slots than workers
    that is more than one wake-up per item (measured: 100 task workers of a trivial
    function, 4.1 us per item with 16 slots, 2.0 with 100, 0.7 with 1,024).
    """
    return max(DEFAULT_BUFFER, workers)


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: Stands for an item dropped by ``errors="skip"`` in ordered mode, so the reorder
#: buffer can move past it.
SKIPPED: Any = _Sentinel("SKIPPED")
MISSING: Any = _Sentinel("MISSING")


# -- what a user sees ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T, R]):
    """One item's result under ``errors="collect"``: the item, and its value or its error.

    >>> import corral
    >>> good = corral.Outcome("a", value=1)
    >>> bad = corral.Outcome("b", error=ValueError("no"))
    >>> good.ok, good.unwrap(), bad.ok
    (True, 1, False)
    """

    item: T
    value: R | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """``True`` if the item succeeded (``error`` is ``None``)."""
        return self.error is None

    def unwrap(self) -> R:
        """The value; raises the item's error if it failed."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of a pipeline; make it with :func:`stage` (the checks live there).

    ``workers`` run ``fn`` concurrently; up to ``buffer`` results wait for the next stage.

    >>> import corral
    >>> corral.stage(str.upper, workers=2).kind  # a plain function runs in threads
    'thread'
    """

    fn: Callable[..., Any]
    workers: int = 1
    buffer: int = DEFAULT_BUFFER
    run_in: RunIn | None = None
    executor: Executor | None = None
    errors: ErrorPolicy = "raise"
    name: str | None = None

    @property
    def kind(self) -> str:
        """Where ``fn`` runs: ``"task"``, ``"thread"``, ``"process"`` or ``"executor"``."""
        if self.executor is not None:
            return "executor"
        if self.run_in is not None:
            return self.run_in
        return "task" if is_async_callable(self.fn) else "thread"

    def label(self, index: int) -> str:
        """The stage's name in statistics and errors: ``name``, else the function's, else
        ``stage{index + 1}``."""
        if self.name is not None:
            return self.name
        return getattr(self.fn, "__name__", None) or f"stage{index + 1}"


def is_async_callable(fn: object) -> bool:
    """A coroutine function, a partial of one, or an object whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - we want the attribute, not callable()
    return call is not None and inspect.iscoroutinefunction(call)


def _name_arg(what: str, arg: str) -> str:
    return f"{what}: {arg}"


def check_int(value: object, what: str, arg: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{_name_arg(what, arg)} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{_name_arg(what, arg)} must be >= {minimum}, got {value}")
    return value


def check_fn(fn: object, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what}: fn must be callable, got {type(fn).__name__}")


def check_picklable(fn: object, what: str) -> None:
    """A process stage sends ``fn`` to other processes: fail now, clearly, if it cannot."""
    try:
        pickle.dumps(fn)
    except Exception as exc:
        raise TypeError(
            f"{what}: fn={fn!r} cannot be sent to a worker process ({type(exc).__name__}: "
            f"{exc}). Use a function defined at module level (not a lambda, a local "
            f"function or a bound method of an unpicklable object), or run_in='thread'."
        ) from exc


def check_ctx_arg(ctx: object, what: str) -> Context | None:
    if ctx is not None and not isinstance(ctx, Context):
        raise TypeError(f"{what}: ctx must be a corral Context or None, got {type(ctx).__name__}")
    return ctx


def stage(
    fn: Callable[..., Any],
    *,
    workers: int = 1,
    buffer: int | None = None,
    run_in: RunIn | None = None,
    executor: Executor | None = None,
    errors: ErrorPolicy = "raise",
    name: str | None = None,
) -> Stage:
    """A pipeline stage: ``workers`` concurrent calls of ``fn``, ``buffer`` results queued.

    ``buffer`` defaults to 16, or to ``workers`` if that is more.

    Where ``fn`` runs (``run_in``): coroutine functions as tasks, plain functions in
    threads (the default for each), ``"process"`` in a process pool the pipeline owns
    (``fn`` must be picklable: checked here), ``"task"`` for a plain function that never
    blocks (called inline on the event loop), or any ``concurrent.futures.Executor``
    passed as ``executor=`` (not both). ``errors``: ``"raise"`` (the first error cancels
    the pipeline), ``"skip"`` (logged as a warning, dropped), ``"collect"`` (the stage emits an
    :class:`Outcome` per item). ``name`` labels the stage in statistics.

    >>> import corral
    >>> s = corral.stage(str.upper, workers=4, buffer=8)
    >>> s.workers, s.buffer, s.kind
    (4, 8, 'thread')
    """
    what = "stage"
    check_fn(fn, what)
    check_int(workers, what, "workers", 1)
    buffer = default_buffer(workers) if buffer is None else check_int(buffer, what, "buffer", 0)
    check_run_in(run_in, executor, fn, what)
    check_errors(errors, what)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"stage: name must be a str or None, got {type(name).__name__}")
    return Stage(fn, workers, buffer, run_in, executor, errors, name)


def check_run_in(run_in: object, executor: object, fn: object, what: str) -> None:
    if run_in is not None and run_in not in _RUN_IN:
        raise ValueError(f"{what}: run_in must be one of {_RUN_IN} or None, got {run_in!r}")
    if executor is not None:
        if not isinstance(executor, Executor):
            raise TypeError(
                f"{what}: executor must be a concurrent.futures.Executor, "
                f"got {type(executor).__name__}"
            )
        if run_in is not None:
            raise ValueError(f"{what}: pass run_in or executor, not both")
    if is_async_callable(fn) and (run_in in ("thread", "process") or executor is not None):
        where = f"run_in={run_in!r}" if executor is None else "an executor"
        raise TypeError(f"{what}: fn is a coroutine function; it cannot run in {where}")
    if run_in == "process":
        check_picklable(fn, what)


def check_errors(errors: object, what: str) -> None:
    if errors not in _POLICIES:
        raise ValueError(f"{what}: errors must be one of {_POLICIES}, got {errors!r}")


def as_stage(x: object, index: int) -> Stage:
    if isinstance(x, Stage):
        return x
    if callable(x):
        return stage(x)
    raise TypeError(
        f"pipeline: stage {index + 1} must be a corral.stage(...) or a callable, "
        f"got {type(x).__name__}"
    )


def check_source(source: object, what: str, arg: str) -> None:
    if isinstance(source, ChannelBase | AsyncIterable | Iterable):
        return
    raise TypeError(
        f"{what}: {arg} must be an iterable, an async iterable or a corral Channel, "
        f"got {type(source).__name__}"
    )


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


class WorkerRecord:
    """One worker's counters. Only its worker writes them (no lock); readers may lag."""

    __slots__ = (
        "n_err",
        "n_in",
        "n_out",
        "since",
        "since_out",
        "t_end",
        "t_start",
        "wait_in",
        "wait_out",
        "waiter",
    )

    def __init__(self) -> None:
        self.n_in = 0
        self.n_out = 0
        self.n_err = 0
        self.wait_in = 0.0
        self.wait_out = 0.0
        self.since = 0.0  # while parked on the input: when the wait began, else 0
        self.since_out = 0.0  # the same, for a wait for room in the output
        self.waiter: Any = None  # what it is parked on, while parked
        self.t_start = time.perf_counter()
        self.t_end = 0.0


# -- sources ----------------------------------------------------------------------------------


class IterSource:
    """A plain iterator read directly by the first stage's workers.

    It quacks like ``ChannelState.recv`` (an item, or ``CLOSED``), so the worker loop is
    the same for a source and a channel. Thread workers share it under a lock (generators
    are not thread-safe); task workers on one loop need none. In ordered mode, each item
    is numbered under the same lock as it is taken.
    """

    __slots__ = ("_lock", "_next", "_ordered", "_seq", "exhausted", "recv")

    def __init__(self, it: Iterator[Any], locked: bool, ordered: bool) -> None:
        self._next = it.__next__
        self._lock = threading.Lock() if locked else None
        self._ordered = ordered
        self._seq = 0
        self.exhausted = False
        # The common case (task workers, any order) skips the lock and numbering checks.
        self.recv = self._recv if locked or ordered else self._recv_plain

    def _recv_plain(self, make_waiter: object) -> Any:
        if self.exhausted:
            return CLOSED
        try:
            return self._next()
        except StopIteration:
            self.exhausted = True
            return CLOSED
        except BaseException:
            self.exhausted = True
            raise

    def _recv(self, make_waiter: object) -> Any:
        lock = self._lock
        if lock is not None:
            lock.acquire()
        try:
            if self.exhausted:
                return CLOSED
            try:
                item = self._next()
            except StopIteration:
                self.exhausted = True
                return CLOSED
            except BaseException:
                self.exhausted = True
                raise
            if self._ordered:
                seq = self._seq
                self._seq = seq + 1
                return (seq, item)
            return item
        finally:
            if lock is not None:
                lock.release()


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowPlan:
    """Everything ``fan_out`` / ``pipeline`` were asked for, checked."""

    what: str
    source: object
    stages: tuple[Stage, ...]
    ordered: bool
    window: int
    ctx: Context | None
    progress: ProgressSpec
    total: int | None


def _total(items: object) -> int | None:
    if isinstance(items, ChannelBase):
        return None
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None


def _check_window(window: object, ordered: object, what: str, default: int) -> int:
    if not isinstance(ordered, bool):
        raise TypeError(f"{what}: ordered must be a bool, got {type(ordered).__name__}")
    if window is None:
        return default
    if not ordered:
        raise ValueError(f"{what}: window only applies with ordered=True")
    return check_int(window, what, "window", 1)


def plan_fan_out(
    fn: Callable[..., Any],
    items: object,
    *,
    workers: int | None,
    buffer: int | None,
    ordered: bool,
    window: int | None,
    errors: ErrorPolicy,
    run_in: RunIn | None,
    executor: Executor | None,
    ctx: Context | None,
    progress: ProgressSpec,
) -> FlowPlan:
    what = "fan_out"
    check_fn(fn, what)
    check_source(items, what, "items")
    if workers is None:
        workers = os.cpu_count() or 1
    check_int(workers, what, "workers", 1)
    if buffer is not None:
        check_int(buffer, what, "buffer", 0)
    check_errors(errors, what)
    check_run_in(run_in, executor, fn, what)
    check_ctx_arg(ctx, what)
    check_progress(progress, what)
    total = _total(items)
    if total is not None:
        workers = max(1, min(workers, total))  # no idle workers for a short list
    if buffer is None:
        buffer = default_buffer(workers)
    st = Stage(fn, workers, buffer, run_in, executor, errors, None)
    window = _check_window(window, ordered, what, workers + buffer)
    return FlowPlan(what, items, (st,), ordered, window, ctx, progress, total)


def plan_pipeline(
    source: object,
    stages: tuple[object, ...],
    *,
    ordered: bool,
    window: int | None,
    ctx: Context | None,
    progress: ProgressSpec,
) -> FlowPlan:
    what = "pipeline"
    check_source(source, what, "source")
    if not stages:
        raise ValueError("pipeline: needs at least one stage")
    sts = tuple(as_stage(s, i) for i, s in enumerate(stages))
    check_ctx_arg(ctx, what)
    check_progress(progress, what)
    window = _check_window(ordered=ordered, window=window, what=what, default=_bound(sts))
    return FlowPlan(what, source, sts, ordered, window, ctx, progress, _total(source))


def _bound(stages: tuple[Stage, ...]) -> int:
    return sum(s.workers + s.buffer for s in stages)


# -- the engine -------------------------------------------------------------------------------


class StageRun:
    """A stage while it runs: its input and output, workers, live count."""

    __slots__ = (
        "call",
        "dst",
        "gate",
        "index",
        "kind",
        "label",
        "live",
        "local_in",
        "local_out",
        "policy",
        "records",
        "samples",
        "spec",
        "src",
        "worker_kind",
    )

    def __init__(self, index: int, spec: Stage, src: Any, dst: ChannelState[Any]) -> None:
        self.index = index
        self.spec = spec
        self.label = spec.label(index)
        self.kind = spec.kind
        self.src = src  # a ChannelState or an IterSource: anything with recv(make_waiter)
        self.dst = dst
        self.gate: SemaphoreState | None = None  # ordered mode, first stage, direct source
        self.policy = _POLICIES.index(spec.errors)
        self.records: list[WorkerRecord] = []
        self.live = 0
        self.call: Callable[[Any], Any] = spec.fn
        self.worker_kind = "task"
        self.local_in = False  # see FlowRun.local_channels
        self.local_out = False
        self.samples = [0, 0, 0]  # sum of sampled buffer lengths, samples, high-water mark

    def sample(self) -> None:
        n = len(self.dst.buf)
        s = self.samples
        s[0] += n
        s[1] += 1
        if n > s[2]:
            s[2] = n

    def statistics(self, now: float, elapsed: float) -> StageStatistics:
        n_in = n_out = n_err = parked = 0
        busy = w_in = w_out = 0.0
        for r in self.records:
            w = r.waiter
            if w is not None and not w.done:  # parked, and not yet woken
                parked += 1
            n_in += r.n_in
            n_out += r.n_out
            n_err += r.n_err
            end = r.t_end or now
            alive = max(end - r.t_start, 0.0)
            wi, wo = r.wait_in, r.wait_out
            if not r.t_end:  # parked right now: count the wait so far
                if r.since:
                    wi += max(now - r.since, 0.0)
                if r.since_out:
                    wo += max(now - r.since_out, 0.0)
            w_in += wi
            w_out += wo
            busy += max(alive - wi - wo, 0.0)
        workers = self.spec.workers
        util = busy / (workers * elapsed) if elapsed > 0 else 0.0
        s = self.samples
        buf_now = len(self.dst.buf)
        return StageStatistics(
            name=self.label,
            run_in=self.kind,
            workers=workers,
            items_in=n_in,
            items_out=n_out,
            errors=n_err,
            busy=busy,
            waiting_input=w_in,
            waiting_output=w_out,
            utilization=min(util, 1.0),
            waiting_now=parked,
            buffer=self.spec.buffer,
            buffer_now=buf_now,
            buffer_mean=s[0] / s[1] if s[1] else float(buf_now),
            buffer_high=max(s[2], buf_now),
        )


class LoopThread:
    """A private event loop in its own thread, for task workers of the thread flavour."""

    def __init__(self, name: str) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()

    def _main(self) -> None:
        loop = self.loop
        try:
            loop.call_soon(self._ready.set)
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


def new_process_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool for ``run_in="process"``.

    ``fork`` starts workers in milliseconds, but forking while other threads run can
    deadlock the child (and Python 3.12+ warns). So: the platform default when this is the
    only thread, else ``forkserver`` (where available); the run starts its pools before
    any thread of its own.
    """
    ctx: Any = None
    if threading.active_count() > 1 and sys.platform != "win32":
        methods = multiprocessing.get_all_start_methods()
        if "forkserver" in methods and multiprocessing.get_start_method(True) in (None, "fork"):
            ctx = multiprocessing.get_context("forkserver")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def _noop() -> None:
    return None


class FlowRun:
    """One run of a fan-out or pipeline (see the module docstring)."""

    def __init__(
        self, plan: FlowPlan, flavour: str, loop: asyncio.AbstractEventLoop | None
    ) -> None:
        self.plan = plan
        self.flavour = flavour  # "aio" or "threads": who the consumer is
        self.loop = loop  # where task workers run (the caller's loop, for "aio")
        parent = plan.ctx if plan.ctx is not None else background()
        self.ctx: CancelContext = with_cancel(parent)
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.suppressed = 0  # errors after the first, or during a stop
        self.stopping = False
        # Set first thing by fail() and stop(), and when ctx is done: a worker looks at it
        # before each call, so no call starts after the first error (product.md: "stops
        # starting queued work"), even one whose item was handed over before the error.
        self.halted = False
        self.ctx.after_func(self._halt)
        self.live = 0
        self.finished: ChannelState[Any] = ChannelState(0)
        self.threads: list[threading.Thread] = []
        self.tasks: set[Any] = set()
        self.loop_thread: LoopThread | None = None
        self.pools: list[Executor] = []
        self.stages: list[StageRun] = []
        self.feeder_records: list[WorkerRecord] = []
        self.gate: SemaphoreState | None = SemaphoreState(plan.window) if plan.ordered else None
        self.ordered = plan.ordered
        self.out: ChannelState[Any] = ChannelState(0)
        self.out_lock: threading.Lock | None = None  # None: only this loop touches ``out``
        self.source_gen: types.GeneratorType[Any, Any, Any] | None = None
        self.iter_source: IterSource | None = None
        self.t0 = time.perf_counter()
        self.t_end = 0.0
        self.delivered = 0

    # -- errors and stopping -------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        """Record the first error and cancel the run; later ones are counted, not raised."""
        self.halted = True
        with self.lock:
            if self.error is not None or self.stopping or self.ctx.err is not None:
                self.suppressed += 1
                return
            self.error = exc
        self.ctx.cancel(exc)

    def stop(self) -> None:
        """The consumer is leaving: cancel everything; no error is recorded from now on."""
        self.halted = True
        with self.lock:
            self.stopping = True
        self.ctx.cancel()

    def _halt(self) -> None:
        self.halted = True

    def failed_count(self) -> int:
        return sum(r.n_err for sp in self.stages for r in sp.records)

    # -- starting ------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        from . import _aio, _rt_aio, _rt_threads, _threads

        plan = self.plan
        native = "task" if self.flavour == "aio" else "thread"
        # Process pools first: before this run starts any thread, fork is still safe.
        for spec in plan.stages:
            if spec.kind == "process":
                pool = new_process_pool(spec.workers)
                self.pools.append(pool)
                if threading.active_count() == 1:
                    pool.submit(_noop).result()  # fork the workers now, while we may

        first = plan.stages[0]
        first_kind = native if first.kind in ("process", "executor") else first.kind
        source = plan.source
        feeder: tuple[str, Any] | None = None
        src: Any
        if isinstance(source, ChannelBase) and not plan.ordered:
            src = source._st
        elif isinstance(source, ChannelBase | AsyncIterable):
            # A feeder hands items on through a rendezvous channel (the "+ 1").
            src = ChannelState(0)
            feeder = ("task" if isinstance(source, AsyncIterable) else native, src)
        else:
            assert isinstance(source, Iterable)
            it = iter(source)
            if isinstance(it, types.GeneratorType):
                self.source_gen = it
            src = self.iter_source = IterSource(it, first_kind == "thread", plan.ordered)

        pool_iter = iter(self.pools)
        for i, spec in enumerate(plan.stages):
            dst: ChannelState[Any] = ChannelState(check_capacity(spec.buffer))
            sp = StageRun(i, spec, src, dst)
            kind = spec.kind
            if kind in ("process", "executor"):
                ex = next(pool_iter) if kind == "process" else spec.executor
                assert ex is not None
                sp.worker_kind = native
                rt = _rt_aio if native == "task" else _rt_threads
                sp.call = rt.executor_call(ex, spec.fn, self.ctx)
            elif kind == "task":
                sp.worker_kind = "task"
                if not is_async_callable(spec.fn):
                    sp.call = _rt_aio.inline_call(spec.fn)
            else:
                sp.worker_kind = "thread"
                sp.call = no_coroutines(spec.fn)
            if i == 0 and isinstance(src, IterSource):
                sp.gate = self.gate
            self.stages.append(sp)
            src = dst
        self.out = src
        self.local_channels(feeder is not None and feeder[0] == "task")

        # Count every worker before starting any, so none can see "all done" early.
        n = sum(sp.spec.workers for sp in self.stages) + (feeder is not None)
        self.live = n
        for sp in self.stages:
            sp.live = sp.spec.workers
        # (kind, body, args, name, stage, record, channel the feeder feeds)
        todo: list[tuple[str, Any, tuple[Any, ...], str, Any, WorkerRecord, Any]] = []
        if feeder is not None:
            kind, chan = feeder
            rec = WorkerRecord()
            self.feeder_records.append(rec)
            feed = _aio.feed if kind == "task" else _threads.feed
            todo.append((kind, feed, (self, source, chan, rec), "feeder", None, rec, chan))
        for sp in self.stages:
            body = _aio.work if sp.worker_kind == "task" else _threads.work
            for j in range(sp.spec.workers):
                rec = WorkerRecord()
                sp.records.append(rec)
                todo.append(
                    (sp.worker_kind, body, (self, sp, rec), f"{sp.label}-{j}", sp, rec, None)
                )
        for i, (kind, body, args, name, sp, rec, chan) in enumerate(todo):
            try:
                self._spawn(kind, body, args, name, sp, rec, chan)
            except BaseException:
                for _, _, _, _, sp2, rec2, chan2 in todo[i:]:  # never started: count them out
                    self.worker_exit(sp2, rec2, chan2)
                raise

    def local_channels(self, task_feeder: bool) -> None:
        """Mark the channels that only tasks of the run's one loop ever touch.

        All task workers of a run share one loop (the caller's, or the private one), so a
        channel between two task stages (or between a task stage and a consumer on that
        loop) is only ever changed in that loop's thread: the workers' inlined fast paths
        may skip its lock. Cancellation from other threads only claims waiters (the owner
        unlinks them, in its own thread), and statistics only read lengths.
        """
        prev_task = task_feeder
        for i, sp in enumerate(self.stages):
            is_task = sp.worker_kind == "task"
            sp.local_in = is_task and prev_task and isinstance(sp.src, ChannelState)
            if i > 0:
                self.stages[i - 1].local_out = sp.local_in
            prev_task = is_task
        last = self.stages[-1]
        last.local_out = last.worker_kind == "task" and self.flavour == "aio"
        self.out_lock = None if last.local_out else self.out.lock

    def _spawn(
        self,
        kind: str,
        body: Callable[..., Any],
        args: tuple[Any, ...],
        name: str,
        sp: StageRun | None,
        rec: WorkerRecord,
        chan: ChannelState[Any] | None,
    ) -> None:
        """Start one worker. Its exit is counted outside its body (``worker_exit``): a task
        cancelled before its first step never runs its body's ``finally``."""
        exit_args = (sp, rec, chan)
        if kind == "thread":
            cv = contextvars.copy_context()  # contextvars reach thread workers too
            t = threading.Thread(
                target=self._thread_main,
                args=(cv, body, args, exit_args),
                name=f"corral-{name}",
                daemon=True,
            )
            self.threads.append(t)
            t.start()
            return
        loop = self.loop
        if loop is None:
            if self.loop_thread is None:
                self.loop_thread = LoopThread("corral-flow-loop")
            lt = self.loop_thread
            lt.loop.call_soon_threadsafe(self._create_task, lt.loop, body, args, exit_args)
        else:
            self._create_task(loop, body, args, exit_args)

    def _thread_main(
        self,
        cv: contextvars.Context,
        body: Callable[..., Any],
        args: tuple[Any, ...],
        exit_args: tuple[Any, WorkerRecord, Any],
    ) -> None:
        try:
            cv.run(body, *args)
        finally:
            self.worker_exit(*exit_args)

    def _create_task(
        self,
        loop: asyncio.AbstractEventLoop,
        body: Callable[..., Any],
        args: tuple[Any, ...],
        exit_args: tuple[Any, WorkerRecord, Any],
    ) -> None:
        task = loop.create_task(body(*args))
        self.tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:  # pragma: no cover
                self.fail(t.exception())  # type: ignore[arg-type]  # bodies never raise
            self.worker_exit(*exit_args)

        task.add_done_callback(done)

    # -- workers report here -------------------------------------------------------------

    def worker_exit(
        self, sp: StageRun | None, rec: WorkerRecord, chan: ChannelState[Any] | None
    ) -> None:
        """A worker (or the feeder: ``sp`` None, ``chan`` what it fed) stopped for good."""
        if not rec.t_end:
            rec.t_end = time.perf_counter()
        if chan is not None:
            chan.close()
        with self.lock:
            if sp is not None:
                sp.live -= 1
                last_of_stage = sp.live == 0
            else:
                last_of_stage = False
            self.live -= 1
            last = self.live == 0
        if last_of_stage:
            assert sp is not None
            sp.dst.close()
        if last:
            self.t_end = time.perf_counter()
            self.finished.close()

    # -- the end -------------------------------------------------------------------------

    @property
    def needs_blocking_cleanup(self) -> bool:
        return bool(self.pools) or self.loop_thread is not None

    def finalize(self) -> None:
        """After ``finished`` closed: join threads, stop the private loop, shut pools down.

        Blocking (a process pool waits for the job each process is running); the asyncio
        flavour calls it in a helper thread when ``needs_blocking_cleanup``.
        """
        for t in self.threads:
            t.join()
        if self.loop_thread is not None:
            self.loop_thread.close()
            self.loop_thread = None
        for pool in self.pools:
            pool.shutdown(wait=True, cancel_futures=True)
        self.pools = []
        gen, src = self.source_gen, self.iter_source
        if gen is not None and src is not None and not src.exhausted:
            self.source_gen = None
            gen.close()  # left early: let the generator's finally blocks run now

    def sample(self) -> None:
        for sp in self.stages:
            sp.sample()

    def statistics(self) -> PipelineStatistics:
        now = time.perf_counter()
        end = self.t_end or now
        elapsed = end - self.t0
        return PipelineStatistics(
            stages=tuple(sp.statistics(end, elapsed) for sp in self.stages),
            elapsed=elapsed,
            delivered=self.delivered,
            running=not self.t_end,
        )

    def check_ended(self) -> BaseException | None:
        """Why the output ended: the run's error, the parent's cancellation, or None."""
        if self.error is not None:
            return self.error
        if not self.stopping and self.ctx.err is not None:
            return self.ctx._fresh_error()
        return None


def no_coroutines(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap a thread stage's fn: a plain callable that returns a coroutine (a lambda around
    an ``async def``) would otherwise leave it never awaited, and pass it on as a result."""

    def call(item: Any) -> Any:
        v = fn(item)
        if v.__class__ is types.CoroutineType:
            v.close()
            raise TypeError(
                f"{fn!r} returned a coroutine: make it an `async def` function (a plain "
                "function runs in a thread, where nothing awaits what it returns)"
            )
        return v

    return call


def log_skipped(sp: StageRun, item: object, exc: BaseException) -> None:
    # A warning, not an error: skipping was asked for (the seed logs and goes on).
    _log.warning(
        "corral %s: item %r failed and was skipped (errors='skip')",
        sp.label,
        item,
        exc_info=(type(exc), exc, exc.__traceback__),
    )


def offer_dropping(out: ChannelBase[Any], item: object) -> bool:
    """tee's ``"drop"`` policy: put ``item`` in ``out`` now, dropping its oldest item if full.

    Never waits. Returns ``False`` if the consumer closed ``out`` (it has left). The
    output's buffer holds at least one item, so a full buffer always has one to drop.
    """
    st = out._st
    with st.lock:
        if st.closed:
            return False
        if not st.send_locked(item):
            st.buf.popleft()
            st.buf.append(item)
            out._dropped += 1  # type: ignore[attr-defined]
    return True
