"""The exploring event loop: a seeded schedule, a virtual clock, and ``select``'s seed.

:class:`Schedule` is what a scenario gets; its task factory wraps every task in a stepper
that the seed delays at random, so tasks overtake each other in reproducible ways.
"""

from __future__ import annotations

import asyncio
import collections.abc
import random
import selectors
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

from .._core import channel as _channel

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


class StepLimit(AssertionError):
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
            raise StepLimit(f"more than {self.max_steps} steps: a livelock?")
        self.trace.append(st.label)
        if exc is None:
            return st._coro.send(value)
        return st._coro.throw(exc)
