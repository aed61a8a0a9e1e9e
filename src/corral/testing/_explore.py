"""Running schedules: :func:`run_schedule` (one seed, replayable) and :func:`explore`."""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .._core import semaphore as _semaphore
from .._core import tracking as _tracking
from ._leaks import format_task_stacks
from ._schedule import Deadlock, Schedule, StepLimit, seed_select

T = TypeVar("T")

#: What explore, run_schedule and cancel_sweep run: ``async def scenario(sched) -> T``.
Scenario = Callable[[Schedule], Awaitable[T]]

#: Environment variable that makes :func:`explore` and :func:`cancel_sweep` run one seed only.
SEED_ENV = "CORRAL_SEED"
#: Environment variable that makes :func:`cancel_sweep` try one cancellation step only.
CANCEL_AT_ENV = "CORRAL_CANCEL_AT"


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


def scenario_name(scenario: Callable[..., object]) -> str:
    return str(getattr(scenario, "__qualname__", None) or repr(scenario))


def replay_hint(scenario: Callable[..., object], seed: int, cancel_at: int | None) -> str:
    extra = "" if cancel_at is None else f", cancel_at={cancel_at}"
    env = f"{SEED_ENV}={seed}" + ("" if cancel_at is None else f" {CANCEL_AT_ENV}={cancel_at}")
    return (
        f"replay: corral.testing.run_schedule({scenario_name(scenario)}, seed={seed}{extra}), "
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
                            raise StepLimit(
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
        exc.add_note(f"{where}; {replay_hint(scenario, seed, cancel_at)}")
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


def seeds_from_env(seeds: Iterable[int], what: str) -> list[int]:
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


def describe_seeds(seeds: Sequence[int]) -> str:
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
    seed_list = seeds_from_env(seeds, "explore")
    name = scenario_name(scenario)
    print(f"corral.testing.explore: {name}, seeds {describe_seeds(seed_list)}")
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
                f"{replay_hint(scenario, seed, None)}",
                seed,
                None,
            ) from exc
        traces.add(hash(r.trace))
        steps += r.steps
    return ExploreReport(name, len(seed_list), len(traces), steps, tuple(seed_list))
