"""What ``fan_out``, ``pipeline`` and ``stage()`` were asked for, checked: the plan.

Flavour-neutral, once for both flavours: the stage spec (:class:`Stage`, :func:`stage`),
the per-item error policies, :class:`Outcome`, every argument check (each raises a typed
error naming the argument), and :class:`FlowPlan`, what the engine (``_engine``) runs.
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import pickle
import sys
import threading
import types
from collections.abc import AsyncIterable, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeAlias, TypeVar

from .._core.channel import _Sentinel
from .._core.context import Context, check_ctx_arg
from .._core.group import check_fn, is_async_callable
from .._shells import ChannelBase
from ._rate import check_rate
from ._stats import ProgressSpec, check_progress

if TYPE_CHECKING:
    from ._dask import DaskExecutor

__all__ = ["SKIPPED", "FlowPlan", "Outcome", "Stage", "plan_fan_out", "plan_pipeline", "stage"]

T = TypeVar("T")
R = TypeVar("R")


class DaskClientLike(Protocol):
    """How a ``distributed.Client`` looks to a type checker (corral never imports it)."""

    def map(self, *args: Any, **kwargs: Any) -> Any: ...
    def gather(self, *args: Any, **kwargs: Any) -> Any: ...
    def scheduler_info(self, *args: Any, **kwargs: Any) -> Any: ...


#: What ``executor=`` takes: a ``concurrent.futures.Executor``, a Dask ``Client``, or a
#: ``corral.dask.DaskExecutor`` (a client with per-task options).
ExecutorArg: TypeAlias = "Executor | DaskClientLike | DaskExecutor"

ErrorPolicy = Literal["raise", "collect", "skip"]
RunIn = Literal["task", "thread", "process", "interpreter"]
POLICIES = ("raise", "collect", "skip")
_RUN_IN = ("task", "thread", "process", "interpreter")
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
    executor: ExecutorArg | None = None
    errors: ErrorPolicy = "raise"
    name: str | None = None
    #: a RateLimit or Limits each call acquires first, and the item's cost there
    rate: Any = None
    cost: Callable[[Any], Any] | None = None

    @property
    def kind(self) -> str:
        """Where ``fn`` runs: ``"task"``, ``"thread"``, ``"process"``, ``"interpreter"``,
        ``"executor"`` or ``"dask"`` (the executor is a Dask client)."""
        if self.executor is not None:
            return "dask" if is_dask(self.executor) else "executor"
        if self.run_in is not None:
            return self.run_in
        return "task" if is_async_callable(self.fn) else "thread"

    def label(self, index: int) -> str:
        """The stage's name in statistics and errors: ``name``, else the function's, else
        ``stage{index + 1}``."""
        if self.name is not None:
            return self.name
        return getattr(self.fn, "__name__", None) or f"stage{index + 1}"


def _name_arg(what: str, arg: str) -> str:
    return f"{what}: {arg}"


def check_int(value: object, what: str, arg: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{_name_arg(what, arg)} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{_name_arg(what, arg)} must be >= {minimum}, got {value}")
    return value


def fn_label(fn: object) -> str:
    """``fn`` named for a message: its qualified name and module, else its repr."""
    name = getattr(fn, "__qualname__", None)
    module = getattr(fn, "__module__", None)
    if isinstance(name, str):
        return f"{module}.{name}" if isinstance(module, str) else name
    return repr(fn)


def process_start_method() -> tuple[str, bool]:
    """The start method a ``run_in="process"`` pool started now uses, and whether corral
    chose it (``forkserver`` instead of ``fork``) rather than the platform's default or
    the program's ``multiprocessing.set_start_method``.

    ``fork`` starts workers in milliseconds, but forking while other threads run can
    deadlock the child (and Python 3.12+ warns); so, when other threads run, ``fork``
    (chosen or the default) becomes ``forkserver`` where available. Python 3.14 made
    ``forkserver`` the default on Linux (it was ``fork``).
    """
    chosen = multiprocessing.get_start_method(allow_none=True)
    methods = multiprocessing.get_all_start_methods()
    if (
        threading.active_count() > 1
        and sys.platform != "win32"
        and "forkserver" in methods
        and chosen in (None, "fork")
    ):
        return "forkserver", True
    return chosen or methods[0], False  # the first is the platform's default


def check_picklable(fn: object, what: str) -> None:
    """A process stage sends ``fn`` to other processes: fail now, clearly, if it cannot.

    Every start method pickles ``fn`` (``fork`` too: ``ProcessPoolExecutor`` sends each
    call through a queue). Under ``forkserver`` and ``spawn`` (3.14's default on Linux) a
    child also imports ``fn`` by name: a function of a ``__main__`` that has no file (the
    REPL, ``python -c``, stdin) pickles but cannot be found there, and the pool breaks
    with a ``ConnectionResetError``; that is refused here too.
    """
    try:
        pickle.dumps(fn)
    except Exception as exc:
        raise TypeError(
            f"{what}: fn={fn_label(fn)} cannot be sent to a worker process "
            f"({type(exc).__name__}: {exc}). Use a function defined at module level (not a "
            f"lambda, a local function or a bound method of an unpicklable object), or "
            f"run_in='thread'."
        ) from exc
    main = sys.modules.get("__main__")
    if getattr(fn, "__module__", None) == "__main__" and not getattr(main, "__file__", None):
        method, _ = process_start_method()
        if method != "fork":
            raise TypeError(
                f"{what}: fn={fn_label(fn)} is defined in a __main__ without a file (the "
                f"REPL, python -c or stdin); worker processes started with {method!r} "
                f"import it by name and cannot find it. Define it in a module or a script "
                f"file, or use run_in='thread'."
            )


def check_interpreter_fn(fn: object, what: str) -> None:
    """``run_in="interpreter"``: 3.14+, and ``fn`` must cross to another interpreter.

    ``InterpreterPoolExecutor`` sends a plain function without its closure (its code and
    name), anything else pickled: a closure (a local function using its enclosing
    function's variables) cannot cross, nor an unpicklable callable.
    """
    if sys.version_info < (3, 14):
        v = sys.version_info
        raise ValueError(
            f"{what}: run_in='interpreter' needs Python 3.14+ "
            f"(concurrent.futures.InterpreterPoolExecutor, PEP 734); this is "
            f"{v.major}.{v.minor}. Use run_in='process' or 'thread'."
        )
    if isinstance(fn, types.FunctionType):
        if fn.__closure__:
            free = ", ".join(fn.__code__.co_freevars)
            raise TypeError(
                f"{what}: fn={fn_label(fn)} cannot be sent to another interpreter: it is a "
                f"closure (it uses {free} of its enclosing function). Pass the values as "
                f"items or use a module-level function, or run_in='thread'."
            )
        return
    try:
        pickle.dumps(fn)
    except Exception as exc:
        raise TypeError(
            f"{what}: fn={fn_label(fn)} cannot be sent to another interpreter "
            f"({type(exc).__name__}: {exc}). Use a module-level function, or run_in='thread'."
        ) from exc


def stage(
    fn: Callable[..., Any],
    *,
    workers: int = 1,
    buffer: int | None = None,
    run_in: RunIn | None = None,
    executor: ExecutorArg | None = None,
    errors: ErrorPolicy = "raise",
    name: str | None = None,
    rate: Any = None,
    cost: Callable[[Any], Any] | None = None,
) -> Stage:
    """A pipeline stage: ``workers`` concurrent calls of ``fn``, ``buffer`` results queued.

    ``buffer`` defaults to 16, or to ``workers`` if that is more.

    Where ``fn`` runs (``run_in``): coroutine functions as tasks, plain functions in
    threads (the default for each), ``"process"`` in a process pool the pipeline owns
    (``fn`` must be picklable: checked here), ``"interpreter"`` (Python 3.14+) in a pool
    of subinterpreters it owns (``concurrent.futures.InterpreterPoolExecutor``: one
    process, one GIL per interpreter; ``fn`` must not be a closure), ``"task"`` for a
    plain function that never blocks (called inline on the event loop), or any
    ``concurrent.futures.Executor`` passed as ``executor=`` (not both), or a Dask
    ``distributed.Client`` there (see ``corral.dask``: ``workers`` items in flight on the
    cluster). ``errors``:
    ``"raise"`` (the first error cancels the pipeline), ``"skip"`` (logged as a warning,
    dropped), ``"collect"`` (the stage emits an :class:`Outcome` per item). ``name``
    labels the stage in statistics.

    ``rate``: a :class:`corral.RateLimit` or :class:`corral.Limits` (either flavour) that
    every call acquires first, ``cost(item)`` of it (default 1; for ``Limits``, a mapping
    of limiter to cost, as ``Limits.acquire`` takes). A ``Limits``' semaphores are held
    for the call. Waiting for it counts as busy time in the statistics.

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
    check_rate(rate, cost, what)
    return Stage(fn, workers, buffer, run_in, executor, errors, name, rate, cost)


def check_run_in(run_in: object, executor: object, fn: object, what: str) -> None:
    if run_in is not None and run_in not in _RUN_IN:
        raise ValueError(f"{what}: run_in must be one of {_RUN_IN} or None, got {run_in!r}")
    if executor is not None:
        if is_dask(executor):
            from . import _dask  # only now: a Dask client was passed

            _dask.check_dask(executor, what)
        elif not isinstance(executor, Executor):
            raise TypeError(
                f"{what}: executor must be a concurrent.futures.Executor or a Dask Client, "
                f"got {type(executor).__name__}"
            )
        if run_in is not None:
            raise ValueError(f"{what}: pass run_in or executor, not both")
    if is_async_callable(fn) and (
        run_in in ("thread", "process", "interpreter") or executor is not None
    ):
        where = f"run_in={run_in!r}" if executor is None else "an executor"
        raise TypeError(f"{what}: fn is a coroutine function; it cannot run in {where}")
    if run_in == "process":
        check_picklable(fn, what)
    elif run_in == "interpreter":
        check_interpreter_fn(fn, what)


def is_dask(executor: object) -> bool:
    """A Dask ``Client`` (or ``corral.dask.DaskExecutor``), importing neither: while no
    ``distributed`` module is loaded, nothing can be a Client."""
    if "distributed" not in sys.modules:
        return False
    from . import _dask

    return _dask.is_dask(executor)


def check_errors(errors: object, what: str) -> None:
    if errors not in POLICIES:
        raise ValueError(f"{what}: errors must be one of {POLICIES}, got {errors!r}")


def as_stage(x: object, index: int) -> Stage:
    if isinstance(x, Stage):
        return x
    if callable(x) or inspect.iscoroutine(x):
        return stage(x)  # type: ignore[arg-type]  # check_fn names a coroutine object passed by mistake
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
    executor: ExecutorArg | None,
    ctx: Context | None,
    progress: ProgressSpec,
    rate: Any = None,
    cost: Callable[[Any], Any] | None = None,
) -> FlowPlan:
    what = "fan_out"
    check_fn(fn, what)
    check_source(items, what, "items")
    if workers is None and executor is not None and is_dask(executor):
        from . import _dask

        workers = _dask.default_workers(executor)  # sized to the cluster, not to this host
    elif workers is None:
        workers = os.cpu_count() or 1
    check_int(workers, what, "workers", 1)
    if buffer is not None:
        check_int(buffer, what, "buffer", 0)
    check_errors(errors, what)
    check_run_in(run_in, executor, fn, what)
    check_ctx_arg(ctx, what, optional=True)
    check_progress(progress, what)
    check_rate(rate, cost, what)
    total = _total(items)
    if total is not None:
        workers = max(1, min(workers, total))  # no idle workers for a short list
    if buffer is None:
        buffer = default_buffer(workers)
    st = Stage(fn, workers, buffer, run_in, executor, errors, None, rate, cost)
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
    check_ctx_arg(ctx, what, optional=True)
    check_progress(progress, what)
    window = _check_window(ordered=ordered, window=window, what=what, default=_bound(sts))
    return FlowPlan(what, source, sts, ordered, window, ctx, progress, _total(source))


def _bound(stages: tuple[Stage, ...]) -> int:
    return sum(s.workers + s.buffer for s in stages)
