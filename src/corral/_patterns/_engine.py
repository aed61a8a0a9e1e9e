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
import multiprocessing
import threading
import time
import types
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._core.channel import ChannelState, check_capacity
from .._core.context import CancelContext, background, with_cancel
from .._core.group import is_async_callable
from .._core.semaphore import SemaphoreState
from .._core.threads import start_thread
from .._shells import ChannelBase
from ._plan import FlowPlan, process_start_method
from ._rate import rate_limited
from ._stage_run import IterSource, StageRun, WorkerRecord, no_coroutines
from ._stats import PipelineStatistics

if TYPE_CHECKING:
    import asyncio

__all__ = ["FlowRun", "WorkerBodies"]


@dataclass(frozen=True, slots=True)
class WorkerBodies:
    """The worker loops of one kind of worker (``task`` or ``thread``), handed to a run.

    The loops live in the flavour modules (``_aio_workers`` for tasks, the generated
    ``_threads_workers`` for threads), which import this engine: passing them in (see
    ``_workers.worker_bodies``) keeps the engine free of an import back up to them.
    """

    work: Callable[..., Any]  # work(run, stage_run, record): one worker of one stage
    feed: Callable[..., Any]  # feed(run, source, channel, record): the feeder


class LoopThread:
    """A private event loop in its own thread, for task workers of the thread flavour."""

    def __init__(self, name: str, what: str) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        try:  # infrastructure: an empty context (each task gets its caller's, see _spawn)
            self.thread = start_thread(self._main, name=name, what=what, context=None)
        except BaseException:
            self.loop.close()
            raise
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
    """A process pool for ``run_in="process"``, started as ``process_start_method`` says
    (the run starts its pools before any thread of its own, so ``fork`` stays usable)."""
    method, ours = process_start_method()
    ctx: Any = multiprocessing.get_context(method) if ours else None
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def new_interpreter_pool(workers: int) -> Executor:
    """A pool of subinterpreters for ``run_in="interpreter"`` (3.14+, checked by the plan)."""
    import concurrent.futures

    pool_type: Any = concurrent.futures.InterpreterPoolExecutor  # type: ignore[attr-defined,unused-ignore]
    pool: Executor = pool_type(max_workers=workers)
    return pool


def _noop() -> None:
    return None


class FlowRun:
    """One run of a fan-out or pipeline (see the module docstring)."""

    def __init__(
        self,
        plan: FlowPlan,
        flavour: str,
        loop: asyncio.AbstractEventLoop | None,
        workers: Mapping[str, WorkerBodies],
    ) -> None:
        self.plan = plan
        self.workers = workers  # by worker kind: "task" and "thread"
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
            if self.live == 0:
                # It failed before counting any worker (say, a rate= limiter of the other
                # flavour, refused while the stages were built): no worker will ever close
                # `finished`, which the consumer's exit waits on, so close it here.
                self.t_end = time.perf_counter()
                self.finished.close()
            raise

    def _start(self) -> None:
        # Lazily, as before the split: `import corral` must not load the thread flavour.
        from . import _rt_aio, _rt_threads

        plan = self.plan
        native = "task" if self.flavour == "aio" else "thread"
        # Process pools first: before this run starts any thread, fork is still safe.
        for spec in plan.stages:
            if spec.kind == "process":
                pool = new_process_pool(spec.workers)
                self.pools.append(pool)
                if threading.active_count() == 1:
                    pool.submit(_noop).result()  # fork the workers now, while we may
            elif spec.kind == "interpreter":
                self.pools.append(new_interpreter_pool(spec.workers))

        first = plan.stages[0]
        pooled = ("process", "interpreter", "executor", "dask")
        first_kind = native if first.kind in pooled else first.kind
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

        pool_iter = iter(list(self.pools))  # the process pools (Dask stages add theirs)
        for i, spec in enumerate(plan.stages):
            dst: ChannelState[Any] = ChannelState(check_capacity(spec.buffer))
            sp = StageRun(i, spec, src, dst)
            kind = spec.kind
            if kind in ("process", "interpreter", "executor", "dask"):
                ex: Any
                if kind in ("process", "interpreter"):
                    ex = next(pool_iter)
                elif kind == "dask":  # one connection per stage, shut down with the pools
                    from . import _dask

                    ex = _dask.stage_on_dask(spec.executor, spec.fn, sp.label, self.flavour)
                    self.pools.append(ex)
                else:
                    ex = spec.executor
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
            if spec.rate is not None:
                sp.call = rate_limited(
                    sp.call, spec.rate, spec.cost, sp.worker_kind == "task", self.ctx
                )
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
            feed = self.workers[kind].feed
            todo.append((kind, feed, (self, source, chan, rec), "feeder", None, rec, chan))
        for sp in self.stages:
            body = self.workers[sp.worker_kind].work
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
        # Every worker runs in a copy of the context of the caller that started the run
        # (taken here, in its thread): a thread worker explicitly, a task worker by
        # create_task (on the caller's loop, or on the private loop, whose thread's own
        # context is empty).
        cv = contextvars.copy_context()
        what = self.plan.what
        if kind == "thread":
            t = start_thread(
                self._thread_main, body, args, exit_args, name=name, what=what, context=cv
            )
            self.threads.append(t)  # only once started: joining an unstarted thread raises
            return
        loop = self.loop
        if loop is None:
            if self.loop_thread is None:
                self.loop_thread = LoopThread("corral-flow-loop", what)
            lt = self.loop_thread
            lt.loop.call_soon_threadsafe(self._create_task, lt.loop, body, args, exit_args, cv)
        else:
            self._create_task(loop, body, args, exit_args, cv)

    def _thread_main(
        self,
        body: Callable[..., Any],
        args: tuple[Any, ...],
        exit_args: tuple[Any, WorkerRecord, Any],
    ) -> None:
        try:
            body(*args)
        finally:
            self.worker_exit(*exit_args)

    def _create_task(
        self,
        loop: asyncio.AbstractEventLoop,
        body: Callable[..., Any],
        args: tuple[Any, ...],
        exit_args: tuple[Any, WorkerRecord, Any],
        cv: contextvars.Context,
    ) -> None:
        task = loop.create_task(body(*args), context=cv)
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
