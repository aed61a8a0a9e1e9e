"""Test helpers for corral and for code built on it.

Three tools that work on any asyncio or threaded code, not only on corral's:

* **Schedule exploration** — :func:`explore` runs an asyncio scenario under many different
  but reproducible interleavings. Each run gets a seed; the seed drives a task factory that
  delays task resumptions at random (so tasks overtake each other in ways plain asyncio's
  FIFO ready queue never shows), a virtual clock (``timeout=`` and ``asyncio.sleep`` take
  no real time and fire in a reproducible order), corral's ``select`` choice, and
  :attr:`Schedule.rng` for the scenario's own random data. The same seed replays the same
  schedule: :func:`run_schedule` ``(scenario, seed)`` or ``CORRAL_SEED=<seed>``.
* **Cancellation sweep** — :func:`cancel_sweep` runs a scenario once to count its
  scheduling steps, then once per step ``k``, cancelling the scenario's chosen targets just
  before step ``k``: every point where a cancellation can land is tried.
* **Thread hammering** — :func:`hammer` starts workers behind a barrier with a tiny
  ``sys.setswitchinterval``, joins every thread, and re-raises what they raised.

And the leak-check hooks the test suite uses after every test: :func:`track`,
:func:`tracked_waiters`, :func:`untrack` (no corral waiter left queued),
:func:`wait_timers_idle`, and :func:`format_task_stacks` (what every task is awaiting).

>>> import asyncio, corral, corral.testing
>>> async def scenario(sched):
...     ch = corral.Channel(1)
...     async def produce(name):
...         for i in range(3):
...             await ch.send((name, i))
...     tasks = [asyncio.create_task(produce(name)) for name in "ab"]
...     got = [await ch.recv() for _ in range(6)]
...     await asyncio.gather(*tasks)
...     assert sorted(got) == [(n, i) for n in "ab" for i in range(3)], got
>>> report = corral.testing.explore(scenario, seeds=range(20))
corral.testing.explore: scenario, seeds 0..19
>>> report.runs, report.distinct_traces > 1
(20, True)
"""

from __future__ import annotations

import asyncio
import collections.abc
import os
import random
import selectors
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Generic, TypeVar

from ._core import channel as _channel
from ._core import semaphore as _semaphore
from ._core import timer as _timer
from ._core import tracking as _tracking
from ._core.clock import ManualClock as ManualClock

__all__ = [
    "Deadlock",
    "ExploreReport",
    "ManualClock",
    "Schedule",
    "ScheduleFailure",
    "ScheduleResult",
    "SweepReport",
    "cancel_sweep",
    "explore",
    "format_task_stacks",
    "hammer",
    "run_schedule",
    "seed_select",
    "track",
    "tracked_waiters",
    "untrack",
    "wait_timers_idle",
]

T = TypeVar("T")

Scenario = Callable[["Schedule"], Awaitable[T]]

#: Environment variable that makes :func:`explore` and :func:`cancel_sweep` run one seed only.
SEED_ENV = "CORRAL_SEED"
#: Environment variable that makes :func:`cancel_sweep` try one cancellation step only.
CANCEL_AT_ENV = "CORRAL_CANCEL_AT"


# --- leak-check hooks (probed by tests/conftest.py) ------------------------------------------


@contextmanager
def track() -> Iterator[None]:
    """Track primitives created from now on (for :func:`tracked_waiters`)."""
    _tracking.start()
    try:
        yield
    finally:
        pass


def untrack() -> None:
    """Stop tracking and forget tracked primitives."""
    _tracking.stop()


def tracked_waiters() -> list[str]:
    """Descriptions of tracked primitives that still have waiters queued."""
    return _tracking.leftover_waiters()


def wait_timers_idle(timeout: float = 5.0) -> bool:
    """Wait until corral's deadline timer thread has nothing left and has exited."""
    return _timer.wait_idle(timeout)


# --- task stacks -------------------------------------------------------------------------------


def _await_chain(coro: object) -> list[FrameType]:
    """The frames of ``coro`` and of everything it is awaiting, outermost first."""
    frames: list[FrameType] = []
    for _ in range(100):  # a bound, in case of a cycle through a strange awaitable
        if coro is None:
            break
        frame = None
        for attr in ("cr_frame", "gi_frame", "ag_frame"):
            frame = getattr(coro, attr, None)
            if frame is not None:
                break
        if frame is not None:
            frames.append(frame)
        nxt = None
        for attr in ("cr_await", "gi_yieldfrom", "ag_await"):
            nxt = getattr(coro, attr, None)
            if nxt is not None:
                break
        coro = nxt
    return frames


def format_task_stacks(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """Every unfinished asyncio task with the chain of coroutines it is suspended in.

    ``loop=None`` covers every loop in the process (found through the garbage collector, so
    it also works from another thread, e.g. a watchdog that fires on a hang). Unlike
    ``Task.print_stack``, which shows only the task's outermost coroutine, this follows
    ``await`` down to the innermost frame.
    """
    if loop is not None:
        tasks: list[asyncio.Task[Any]] = list(asyncio.all_tasks(loop))
    else:
        import gc

        tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    out = []
    for task in tasks:
        try:
            coro = task.get_coro()
            inner = getattr(coro, "_coro", coro)  # see through explore()'s wrapper
            frames = _await_chain(inner)
            summary = traceback.StackSummary.extract((f, f.f_lineno) for f in frames)
            out.append(f"Task {task.get_name()!r} ({task!r}):\n" + "".join(summary.format()))
        except Exception as exc:  # a dump must never fail half-way
            out.append(f"Task {task!r}: could not format its stack ({exc!r})")
    return "\n".join(out) if out else "(no unfinished asyncio task)"


# --- select's random choice ------------------------------------------------------------------


@contextmanager
def seed_select(seed: int | str) -> Iterator[None]:
    """Make corral's ``select`` choose among ready cases reproducibly inside the block.

    ``select`` picks a ready case at random so none starves; the choice comes from one
    process-wide generator, seeded here and restored on exit. Only reproducible when one
    thread at a time selects (the order in which threads draw from it is not).
    """
    rng = _channel._rng
    saved = rng.getstate()
    rng.seed(f"corral-select-{seed}")
    try:
        yield
    finally:
        rng.setstate(saved)


# --- the exploring event loop ------------------------------------------------------------------


class Deadlock(AssertionError):
    """Every task of an explored run waited with nothing left to wake it."""


class _Clock:
    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0


class _ClockSelector(selectors.BaseSelector):
    """The loop's selector, with the wait replaced by a jump of the virtual clock.

    A loop with nothing ready sleeps in ``select(timeout)`` until the next timer. Here
    that wait advances the virtual clock by ``timeout`` instead (trio's ``autojump``): a
    ``timeout=5`` takes no real time, and timers fire in a reproducible order. I/O and
    wake-ups from other threads (``call_soon_threadsafe``) are still polled for real. With
    nothing ready and no timer, only another thread can wake the loop: it waits for real
    up to ``deadlock_timeout`` seconds, then raises :class:`Deadlock`.
    """

    def __init__(self, clock: _Clock | None, deadlock_timeout: float) -> None:
        self._inner = selectors.DefaultSelector()
        self._clock = clock
        self._deadlock_timeout = deadlock_timeout

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            events = self._inner.select(self._deadlock_timeout)
            if not events:
                raise Deadlock(
                    f"every task is waiting and nothing woke the loop for "
                    f"{self._deadlock_timeout} s (no timer pending)"
                )
            return events
        if self._clock is None or timeout <= 0:
            return self._inner.select(timeout)
        events = self._inner.select(0)
        if not events:
            self._clock.now += timeout
        return events

    def close(self) -> None:
        self._inner.close()

    def get_map(self) -> collections.abc.Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()


class _ExploringLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: _Clock | None, deadlock_timeout: float) -> None:
        super().__init__(_ClockSelector(clock, deadlock_timeout))
        self._corral_clock = clock

    def time(self) -> float:
        clock = self._corral_clock
        return super().time() if clock is None else clock.now


class _Stepper(collections.abc.Coroutine[Any, Any, Any]):
    """Wraps a task's coroutine so the :class:`Schedule` sees (and may delay) each step.

    asyncio resumes a task by ``send(None)`` (or ``throw(exc)`` for an exception); a
    coroutine that yields a bare ``None`` is simply rescheduled at the back of the ready
    queue. So delaying a step is: yield ``None`` instead of resuming, and resume on a later
    call. A delayed exception is held and thrown later; if a cancellation arrives meanwhile
    it replaces the held one, exactly as asyncio's own ``Task.__step`` does when a task is
    cancelled between its wake-up and its next step.
    """

    __slots__ = ("_coro", "_hold", "_pending", "_sched", "label")

    def __init__(self, coro: collections.abc.Coroutine[Any, Any, Any], sched: Schedule) -> None:
        self._coro = coro
        self._sched = sched
        self._hold = 0
        self._pending: BaseException | None = None
        self.label = f"t{len(sched._steppers)}"
        # No reference to the task: task -> coroutine -> task would be a cycle, and a task
        # that only the garbage collector frees reports "exception never retrieved" late.

    def send(self, value: Any) -> Any:
        return self._sched._resume(self, value, None)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is not None or tb is not None:  # the legacy 3-argument form
            exc = typ(val) if isinstance(typ, type) and not isinstance(val, BaseException) else val
            if tb is not None:
                exc = exc.with_traceback(tb)
        else:
            exc = typ() if isinstance(typ, type) else typ
        return self._sched._resume(self, None, exc)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        return self

    def __iter__(self) -> _Stepper:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    # What asyncio's reprs and stack formatting look for on a coroutine.
    @property
    def cr_frame(self) -> Any:
        return getattr(self._coro, "cr_frame", None)

    @property
    def cr_await(self) -> Any:
        return getattr(self._coro, "cr_await", None)

    @property
    def cr_code(self) -> Any:
        return getattr(self._coro, "cr_code", None)

    @property
    def cr_running(self) -> bool:
        return bool(getattr(self._coro, "cr_running", False))

    def __getattr__(self, name: str) -> Any:
        # ``__qualname__`` / ``__name__`` (for reprs): an instance has none of its own.
        if name in ("__qualname__", "__name__"):
            return getattr(self._coro, name, type(self._coro).__name__)
        raise AttributeError(name)


class _StepLimit(AssertionError):
    pass


class Schedule:
    """One reproducible asyncio schedule, driven by ``seed``; passed to a scenario.

    A scenario is ``async def scenario(sched: Schedule) -> T``. It runs as the main task of
    a fresh event loop (:meth:`new_event_loop`) whose task factory lets the schedule delay
    every task step at random. Inside it:

    * :attr:`rng` — a ``random.Random`` for the scenario's own choices (item counts,
      which worker fails), seeded from the schedule's seed;
    * :meth:`log` — add an event to :attr:`trace`, next to the task steps;
    * :meth:`cancel_target` — what :func:`cancel_sweep` cancels (a task, a Context, or any
      callable).

    Determinism holds for code that makes its choices only from the seed: no threads, no
    wall-clock reads, no iteration over sets of objects hashed by ``id()``.
    """

    def __init__(
        self,
        seed: int,
        *,
        cancel_at: int | None = None,
        virtual_clock: bool = True,
        max_steps: int = 200_000,
        deadlock_timeout: float = 10.0,
    ) -> None:
        self.seed = seed
        #: For the scenario's own random choices (its own stream: the scheduler's draws
        #: do not shift it).
        self.rng = random.Random(f"corral-scenario-{seed}")
        #: Task steps (``"t0"`` is the scenario's own task, then in creation order) and
        #: :meth:`log` entries, in order.
        self.trace: list[str] = []
        #: Task steps run so far.
        self.steps = 0
        self.cancel_at = cancel_at
        #: Whether the cancellation of a sweep run fired, and whether a target was live.
        self.cancel_fired = False
        self.cancel_landed = False
        self.max_steps = max_steps
        #: Whether the run went past ``max_steps`` (and was stopped).
        self.step_limit_hit = False
        self._rng = random.Random(f"corral-schedule-{seed}")
        # Per run, how eagerly to perturb: some runs stay close to asyncio's FIFO order,
        # others shuffle hard. Seed 0 keeps asyncio's own order exactly.
        self._p = 0.0 if seed == 0 else self._rng.choice((0.05, 0.15, 0.3, 0.5))
        self._max_hold = self._rng.choice((1, 2, 4))
        self._targets: list[object] = []
        self._steppers: list[_Stepper] = []
        self._clock = _Clock() if virtual_clock else None
        self._deadlock_timeout = deadlock_timeout

    # -- for the scenario ----------------------------------------------------------------

    def log(self, event: object) -> None:
        """Record ``event`` (its ``str``) in :attr:`trace`."""
        self.trace.append(str(event))

    def cancel_target(self, *targets: object) -> None:
        """Register what a :func:`cancel_sweep` run cancels at its chosen step.

        A target is an ``asyncio.Task`` (``task.cancel()``), anything with a ``cancel()``
        method (a ``corral.CancelContext``), or a zero-argument callable (returning
        ``False`` if it found nothing to cancel). Registering no target makes the sweep
        cancel nothing.
        """
        for t in targets:
            if not (hasattr(t, "cancel") or callable(t)):
                raise TypeError(
                    f"cancel_target: target must have a cancel() method or be callable, "
                    f"got {type(t).__name__}"
                )
        self._targets.extend(targets)
        if self.cancel_at is not None and self.steps >= self.cancel_at and not self.cancel_fired:
            self._fire()

    def label(self, task: asyncio.Task[Any]) -> str:
        """The task's name in :attr:`trace` (``"t3"``), stable across runs of one seed."""
        coro = task.get_coro()
        return coro.label if isinstance(coro, _Stepper) else task.get_name()

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """A fresh event loop driven by this schedule (usable as a Runner ``loop_factory``)."""
        loop = _ExploringLoop(self._clock, self._deadlock_timeout)
        loop.set_task_factory(self._task_factory)
        return loop

    # -- the scheduler ---------------------------------------------------------------------

    def _task_factory(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: collections.abc.Generator[Any, None, Any] | collections.abc.Coroutine[Any, Any, Any],
        **kwargs: Any,
    ) -> asyncio.Task[Any]:
        assert isinstance(coro, collections.abc.Coroutine)
        stepper = _Stepper(coro, self)
        self._steppers.append(stepper)
        return asyncio.Task(stepper, loop=loop, **kwargs)

    def _fire(self) -> None:
        self.cancel_fired = True
        for t in self._targets:
            if isinstance(t, asyncio.Future):
                if not t.done():
                    self.cancel_landed = True
                    t.cancel()
            elif hasattr(t, "cancel"):
                if t.cancel() is not False:
                    self.cancel_landed = True
            else:
                assert callable(t)
                if t() is not False:  # a callable may say it found nothing to cancel
                    self.cancel_landed = True

    def _resume(self, st: _Stepper, value: Any, exc: BaseException | None) -> Any:
        if (
            self.cancel_at is not None
            and not self.cancel_fired
            and self.steps >= self.cancel_at
            and self._targets
        ):
            current = asyncio.current_task()
            before = current.cancelling() if current is not None else 0
            self._fire()
            if exc is None and current is not None and current.cancelling() > before:
                # The task about to run was just cancelled: let the cancellation land where
                # it is suspended, as an outside cancel would, not after one more step.
                return None
        if exc is not None:
            # A cancellation arriving while an exception is held replaces it (see _Stepper).
            st._pending = None
            st._hold = 0
            if self._p and self._rng.random() < self._p:
                st._pending = exc  # thrown on the next resumption, unless cancelled first
                return None
        elif st._pending is not None:
            exc, st._pending = st._pending, None
        elif st._hold:
            st._hold -= 1
            return None
        elif self._p and self._rng.random() < self._p:
            st._hold = self._rng.randrange(self._max_hold)
            return None
        self.steps += 1
        if self.steps > self.max_steps and not self.step_limit_hit:
            # Stop the loop (other tasks may spin on) and fail this step; the limit is off
            # from now on, so the runner's cleanup (cancelling every task) can run.
            self.step_limit_hit = True
            asyncio.get_running_loop().stop()
            raise _StepLimit(f"more than {self.max_steps} steps: a livelock?")
        self.trace.append(st.label)
        if exc is None:
            return st._coro.send(value)
        return st._coro.throw(exc)


# --- running schedules -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleResult(Generic[T]):
    """What one explored run returned and how it ran."""

    seed: int
    value: T
    steps: int
    trace: tuple[str, ...]
    cancel_at: int | None = None
    cancel_fired: bool = False
    cancel_landed: bool = False


class ScheduleFailure(AssertionError):
    """An explored run failed; the message says how to replay it. The cause is the error."""

    def __init__(self, message: str, seed: int, cancel_at: int | None) -> None:
        super().__init__(message)
        self.seed = seed
        self.cancel_at = cancel_at


def _scenario_name(scenario: Callable[..., object]) -> str:
    return str(getattr(scenario, "__qualname__", None) or repr(scenario))


def _replay_hint(scenario: Callable[..., object], seed: int, cancel_at: int | None) -> str:
    extra = "" if cancel_at is None else f", cancel_at={cancel_at}"
    env = f"{SEED_ENV}={seed}" + ("" if cancel_at is None else f" {CANCEL_AT_ENV}={cancel_at}")
    return (
        f"replay: corral.testing.run_schedule({_scenario_name(scenario)}, seed={seed}{extra}), "
        f"or rerun the test with {env}"
    )


def run_schedule(
    scenario: Scenario[T],
    seed: int,
    *,
    cancel_at: int | None = None,
    virtual_clock: bool = True,
    max_steps: int = 200_000,
    deadlock_timeout: float = 10.0,
    debug: bool = False,
) -> ScheduleResult[T]:
    """Run ``scenario`` once under the schedule of ``seed``; replays a failure exactly.

    ``cancel_at=k`` cancels the targets the scenario registered with
    :meth:`Schedule.cancel_target` just before task step ``k`` (or as soon as one is
    registered, if later). ``virtual_clock=False`` keeps real time (needed when threads
    take part and a timeout must not jump ahead of them). Beyond the scenario's own
    assertions, the run fails if, when the scenario returns: another task is still
    pending, a waiter is left queued in a corral primitive created during the run, a
    corral semaphore created during the run still has permits held, the loop's exception
    handler was called ("Task exception was never retrieved", ...), or an unraisable
    exception occurred ("coroutine ... was never awaited", ...). Also after
    ``max_steps`` task steps (a livelock) or when every task waits forever
    (:class:`Deadlock`, after ``deadlock_timeout`` real seconds).

    Errors propagate unchanged, with a note naming the seed.
    """
    sched = Schedule(
        seed,
        cancel_at=cancel_at,
        virtual_clock=virtual_clock,
        max_steps=max_steps,
        deadlock_timeout=deadlock_timeout,
    )
    incidents: list[str] = []
    loop_errors: list[dict[str, Any]] = []
    leftover: list[str] = []
    result: list[T] = []

    def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # Formatted later: this may run inside a finalizer, where formatting a traceback
        # (which parses source on 3.11) is not safe.
        loop_errors.append(context)

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(on_loop_error)
        result.append(await scenario(sched))
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        if others:
            leftover.append(
                f"{len(others)} task(s) still pending when the scenario returned:\n"
                + format_task_stacks(asyncio.get_running_loop())
            )

    prev_hook = sys.unraisablehook

    def on_unraisable(args: Any) -> None:
        incidents.append(f"{args.err_msg or 'Exception ignored in'}: {args.exc_value!r}")
        prev_hook(args)

    sys.unraisablehook = on_unraisable
    try:
        with _tracking.scope() as made, seed_select(seed):
            try:
                with asyncio.Runner(debug=debug, loop_factory=sched.new_event_loop) as runner:
                    try:
                        runner.run(main())
                    except Deadlock as exc:
                        exc.add_note(format_task_stacks(runner.get_loop()))
                        raise
                    except BaseException as exc:
                        if sched.step_limit_hit:
                            stacks = format_task_stacks(runner.get_loop())
                            raise _StepLimit(
                                f"more than {max_steps} task steps: a livelock? Tasks:\n{stacks}"
                            ) from exc
                        raise
            finally:
                primitives = list(made)
        problems = leftover + incidents + [_describe_loop_error(c) for c in loop_errors]
        problems += _tracking.describe_waiters(primitives)
        problems += [
            f"{p.cur} permit(s) still held in a semaphore of size {p.size} made during the run"
            for p in primitives
            if isinstance(p, _semaphore.SemaphoreState) and p.cur
        ]
        if problems:
            raise AssertionError("\n\n".join(problems))
    except BaseException as exc:
        where = f"corral.testing: seed={seed}" + (
            "" if cancel_at is None else f" cancel_at={cancel_at}"
        )
        exc.add_note(f"{where}; {_replay_hint(scenario, seed, cancel_at)}")
        raise
    finally:
        if sys.unraisablehook is on_unraisable:
            sys.unraisablehook = prev_hook
    return ScheduleResult(
        seed=seed,
        value=result[0],
        steps=sched.steps,
        trace=tuple(sched.trace),
        cancel_at=cancel_at,
        cancel_fired=sched.cancel_fired,
        cancel_landed=sched.cancel_landed,
    )


def _describe_loop_error(context: dict[str, Any]) -> str:
    text = str(context.get("message", ""))
    exc = context.get("exception")
    if exc is not None:
        text += "\n" + "".join(traceback.format_exception(exc)).rstrip()
    return f"the event loop reported: {text}"


@dataclass(frozen=True)
class ExploreReport:
    """What :func:`explore` ran: how many schedules, and how many were distinct."""

    scenario: str
    runs: int
    distinct_traces: int
    steps: int  #: task steps over all runs
    seeds: tuple[int, ...] = field(repr=False, default=())


def _seeds_from_env(seeds: Iterable[int], what: str) -> list[int]:
    forced = os.environ.get(SEED_ENV)
    if forced:
        return [int(s) for s in forced.split(",")]
    try:
        seed_list = list(seeds)
    except TypeError:
        raise TypeError(
            f"{what}: seeds must be an iterable of ints, got {type(seeds).__name__}"
        ) from None
    for s in seed_list:
        if isinstance(s, bool) or not isinstance(s, int):
            raise TypeError(f"{what}: seeds must be ints, got {type(s).__name__}")
    return seed_list


def _describe_seeds(seeds: Sequence[int]) -> str:
    if len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}..{seeds[-1]}"
    return ",".join(map(str, seeds))


def explore(
    scenario: Scenario[object],
    seeds: Iterable[int] = range(100),
    *,
    virtual_clock: bool = True,
    max_steps: int = 200_000,
    deadlock_timeout: float = 10.0,
    debug: bool = False,
) -> ExploreReport:
    """Run ``scenario`` once per seed, each under its own reproducible schedule.

    Raises :class:`ScheduleFailure` (an ``AssertionError``) at the first failing seed, with
    the seed and how to replay it in the message and the error as its cause; see
    :func:`run_schedule` for what counts as a failure. Prints the seeds it runs (pytest
    shows that with a failure). ``CORRAL_SEED=<seed>[,<seed>...]`` in the environment
    replaces ``seeds``, to replay a failure under the same test.
    """
    seed_list = _seeds_from_env(seeds, "explore")
    name = _scenario_name(scenario)
    print(f"corral.testing.explore: {name}, seeds {_describe_seeds(seed_list)}")
    traces: set[int] = set()
    steps = 0
    for seed in seed_list:
        try:
            r = run_schedule(
                scenario,
                seed,
                virtual_clock=virtual_clock,
                max_steps=max_steps,
                deadlock_timeout=deadlock_timeout,
                debug=debug,
            )
        except Exception as exc:
            raise ScheduleFailure(
                f"{name} failed under seed {seed}: {type(exc).__name__}: {exc}\n"
                f"{_replay_hint(scenario, seed, None)}",
                seed,
                None,
            ) from exc
        traces.add(hash(r.trace))
        steps += r.steps
    return ExploreReport(name, len(seed_list), len(traces), steps, tuple(seed_list))


@dataclass(frozen=True)
class SweepReport:
    """What :func:`cancel_sweep` tried."""

    scenario: str
    runs: int  #: runs with a cancellation step (the uncancelled base runs not counted)
    landed: int  #: runs in which a target was still live when cancelled
    max_steps: int  #: the longest uncancelled run, in task steps


def cancel_sweep(
    scenario: Scenario[object],
    *,
    seeds: Iterable[int] = (0,),
    virtual_clock: bool = True,
    max_steps: int = 200_000,
    deadlock_timeout: float = 10.0,
) -> SweepReport:
    """Cancel the scenario's targets at every scheduling step, one run per step.

    For each seed: one run without cancellation counts the task steps ``n``; then runs
    ``k = 0 .. n`` cancel the targets registered with :meth:`Schedule.cancel_target` just
    before step ``k``. The scenario checks its own invariants after the cancellation (no
    item lost or duplicated, ...); each run also gets :func:`run_schedule`'s checks (no
    waiter left queued, no permit held, no task pending). Raises
    :class:`ScheduleFailure` naming the seed and step. ``CORRAL_SEED`` and
    ``CORRAL_CANCEL_AT`` in the environment narrow the sweep to one run.
    """
    name = _scenario_name(scenario)
    seed_list = _seeds_from_env(seeds, "cancel_sweep")
    forced_k = os.environ.get(CANCEL_AT_ENV)
    print(f"corral.testing.cancel_sweep: {name}, seeds {_describe_seeds(seed_list)}")
    runs = landed = longest = 0
    for seed in seed_list:
        cancel_at: int | None = None
        try:
            base = run_schedule(
                scenario,
                seed,
                virtual_clock=virtual_clock,
                max_steps=max_steps,
                deadlock_timeout=deadlock_timeout,
            )
            longest = max(longest, base.steps)
            points = [int(forced_k)] if forced_k else range(base.steps + 1)
            for cancel_at in points:
                r = run_schedule(
                    scenario,
                    seed,
                    cancel_at=cancel_at,
                    virtual_clock=virtual_clock,
                    max_steps=max_steps,
                    deadlock_timeout=deadlock_timeout,
                )
                runs += 1
                landed += r.cancel_landed
        except Exception as exc:
            at = "without cancellation" if cancel_at is None else f"cancelled at step {cancel_at}"
            raise ScheduleFailure(
                f"{name} failed under seed {seed}, {at}: {type(exc).__name__}: {exc}\n"
                f"{_replay_hint(scenario, seed, cancel_at)}",
                seed,
                cancel_at,
            ) from exc
    return SweepReport(name, runs, landed, longest)


# --- thread hammering --------------------------------------------------------------------------


def hammer(
    *workers: Callable[[], T],
    switch_interval: float = 1e-6,
    timeout: float = 60.0,
    name: str = "corral-hammer",
) -> list[T]:
    """Run each worker in its own thread, all released at once; return their results.

    The threads wait on a barrier so they start together, and run with
    ``sys.setswitchinterval(switch_interval)`` (restored afterwards) so the interpreter
    switches threads as often as it can. Every thread is joined. If one worker raised,
    its exception is re-raised; if several did, an ``ExceptionGroup`` of them. A thread
    still running after ``timeout`` seconds raises ``TimeoutError`` with the stacks of the
    stuck threads (they are daemon threads, so a hang cannot keep the process alive).

    Check invariants on the returned results, after the join: during the run only
    ``assert`` what each worker can see for itself.
    """
    if not workers:
        raise ValueError("hammer: needs at least one worker")
    for i, w in enumerate(workers):
        if not callable(w):
            raise TypeError(f"hammer: worker {i} must be callable, got {type(w).__name__}")
    n = len(workers)
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException | None] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(timeout)
        except threading.BrokenBarrierError as exc:  # another thread failed to start
            errors[i] = exc
            return
        try:
            results[i] = workers[i]()
        except BaseException as exc:
            errors[i] = exc

    threads = [
        threading.Thread(target=run, args=(i,), name=f"{name}-{i}", daemon=True) for i in range(n)
    ]
    saved = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval)
    started: list[threading.Thread] = []
    try:
        try:
            for t in threads:
                t.start()
                started.append(t)
        except BaseException:
            barrier.abort()  # release the started ones, then report the failed start
            for t in started:
                t.join()
            raise
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    finally:
        sys.setswitchinterval(saved)
    stuck = [t for t in threads if t.is_alive()]
    if stuck:
        frames = sys._current_frames()
        stacks = []
        for t in stuck:
            frame = frames.get(t.ident) if t.ident is not None else None
            stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
            stacks.append(f"thread {t.name!r} is at:\n{stack}")
        raise TimeoutError(
            f"hammer: {len(stuck)} of {n} worker thread(s) still running after {timeout} s\n"
            + "\n".join(stacks)
        )
    real = [e for e in errors if e is not None]
    if len(real) == 1:
        raise real[0]
    if real:
        raise BaseExceptionGroup(f"hammer: {len(real)} of {n} workers failed", real)
    return results
