"""corral's test harness: async tests without a plugin, and a leak check after every test.

Every test under tests/ gets, with no opt-in:

* ``async def`` tests run in a fresh event loop, ``asyncio.Runner(debug=True)``, with their
  fixtures passed as usual. Async fixtures are not supported: set up inside the test.
  ``CORRAL_LOOP=uvloop`` makes that loop uvloop's; ``CORRAL_TASK_FACTORY=eager`` gives it
  ``asyncio.eager_task_factory`` (3.12+). Both through ``loop_factory``, never a policy.
* When an async test's coroutine returns, no other task may still be pending in its loop
  (checked inside the loop, before the runner closes and cancels them).
* After every test, once its function-scoped fixtures are torn down (reported as an error at
  teardown, with the details):

  - no thread started during the test is still alive; threads that are finishing get
    ``THREAD_GRACE_SECONDS`` in total to end;
  - nothing went wrong out of band during the test (setup, call or teardown): an unraisable
    exception (``sys.unraisablehook``: an exception in ``__del__``, or "coroutine ... was never
    awaited", which ``-W error`` turns into one), an exception that ended a thread
    (``threading.excepthook``), or an error logged by asyncio ("Task exception was never
    retrieved", "Exception in callback ..."), or by corral (a failing ``after_func`` or context
    callback, which has no caller to raise to). ``gc.collect()`` runs first, so garbage made by
    this test is finalized, and blamed, here and not in a later test;
  - no waiter is left queued in a corral primitive, when ``corral.testing`` offers tracking.

Hooks the library may offer, probed only when the session has already imported ``corral`` (so
this file works, and tests/test_harness.py passes, before the library exists). A missing module
or name turns its check off; a module that exists but fails to import is an error, not a skip.

* ``corral._core.timer.wait_idle(timeout: float) -> bool``: block until the shared timer thread
  has nothing scheduled; False if it still has entries after ``timeout``. When present it is
  called before the thread check, a False result fails the test, and threads named
  ``corral-timer*`` are not counted as leaks (the timer thread outlives tests by design).
* ``corral.testing.track()``, ``corral.testing.untrack()``,
  ``corral.testing.tracked_waiters() -> list[object]``: ``track()`` is called before the test,
  so primitives created afterwards register themselves; ``tracked_waiters()`` after the test
  describes every waiter still queued in one of them (``str()`` of each goes in the report);
  then ``untrack()`` if it exists. If ``track()`` returns a context manager, it is entered
  before the test and exited after ``tracked_waiters()``, before ``untrack()``. Import corral at
  the top of a test module, so the probe sees it before the first test runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import importlib.util
import inspect
import io
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Generator, Iterator
from types import ModuleType
from typing import Any

import pytest

pytest_plugins = ["pytester"]

# Total time granted to threads started by a test to finish after it, before they count as leaks.
THREAD_GRACE_SECONDS = 2.0
# Threads that are never a test's leak: pytest-timeout's watchdog (timeout_method = "thread").
IGNORED_THREAD_PREFIXES: tuple[str, ...] = ("pytest_timeout",)
# corral's shared timer thread; ignored only when corral._core.timer.wait_idle exists.
CORRAL_TIMER_THREAD_PREFIX = "corral-timer"
STACK_FRAMES_SHOWN = 12
# Loggers whose ERROR records fail the test that caused them.
LOGGERS_WATCHED = ("asyncio", "corral")

_INCIDENTS = pytest.StashKey[list[str]]()


# --- async tests ---------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test in a fresh debug-mode loop; fail it if it leaves tasks pending."""
    test_fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test_fn):
        return None  # pytest's own implementation runs plain tests
    funcargs = pyfuncitem.funcargs
    kwargs = {name: funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    leftover: list[str] = []

    async def run_test() -> None:
        await test_fn(**kwargs)
        # Only reached when the test passed: a failing test's own error is the story, and the
        # runner cancels whatever it left behind either way.
        current = asyncio.current_task()
        leftover.extend(_describe_task(t) for t in asyncio.all_tasks() if t is not current)

    with asyncio.Runner(debug=True, loop_factory=_new_loop) as runner:
        runner.run(run_test())
    if leftover:
        pytest.fail(
            f"{len(leftover)} task(s) still pending when the test returned:\n\n"
            + "\n\n".join(leftover),
            pytrace=False,
        )
    return True


def _new_loop() -> asyncio.AbstractEventLoop:
    """A loop as ``CORRAL_LOOP`` / ``CORRAL_TASK_FACTORY`` ask (checked at session start)."""
    if os.environ.get("CORRAL_LOOP", "asyncio") == "uvloop":
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    if os.environ.get("CORRAL_TASK_FACTORY", "default") == "eager":
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    return loop


def _loop_settings_problem() -> str | None:
    loop = os.environ.get("CORRAL_LOOP", "asyncio")
    factory = os.environ.get("CORRAL_TASK_FACTORY", "default")
    if loop not in ("asyncio", "uvloop"):
        return f"CORRAL_LOOP={loop!r}: use 'asyncio' or 'uvloop'"
    if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        return "CORRAL_LOOP=uvloop, but uvloop is not installed"
    if factory not in ("default", "eager"):
        return f"CORRAL_TASK_FACTORY={factory!r}: use 'default' or 'eager'"
    if factory == "eager" and loop == "uvloop":
        return "CORRAL_TASK_FACTORY=eager does not run on uvloop (create_task passes eager_start)"
    if factory == "eager" and not hasattr(asyncio, "eager_task_factory"):
        return "CORRAL_TASK_FACTORY=eager needs Python 3.12+ (asyncio.eager_task_factory)"
    return None


def pytest_report_header(config: pytest.Config) -> str:
    loop = os.environ.get("CORRAL_LOOP", "asyncio")
    factory = os.environ.get("CORRAL_TASK_FACTORY", "default")
    return f"corral: async tests on {loop}, task factory {factory}"


def _describe_task(task: asyncio.Task[Any]) -> str:
    out = io.StringIO()
    task.print_stack(limit=STACK_FRAMES_SHOWN, file=out)  # "Stack for <Task ...>:" and frames
    return out.getvalue().rstrip()


# --- hang dump: every asyncio task's stack next to every thread's ----------------------------
#
# pytest-timeout (timeout_method = "thread") prints every thread's stack before it kills a hung
# run. A hung async test shows only the loop's thread, asleep in select(): what each *task* is
# waiting for is the useful part. So its dump also prints every unfinished task (found through
# the garbage collector, on any loop) with its chain of awaits down to the innermost frame.


def pytest_configure(config: pytest.Config) -> None:
    try:
        import pytest_timeout
    except ImportError:  # pragma: no cover - a test dependency
        return
    dump_threads = pytest_timeout.dump_stacks
    if getattr(dump_threads, "with_asyncio_tasks", False):
        return

    def dump_stacks(terminal: Any) -> None:
        dump_threads(terminal)
        terminal.sep("~", title="asyncio tasks")
        terminal.write(_all_task_stacks() + "\n")

    dump_stacks.with_asyncio_tasks = True  # type: ignore[attr-defined]
    pytest_timeout.dump_stacks = dump_stacks


def _all_task_stacks() -> str:
    tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    out = []
    for task in tasks:
        try:
            coro: Any = task.get_coro()
            coro = getattr(coro, "_coro", coro)  # corral.testing's explorer wraps coroutines
            frames = []
            while coro is not None and len(frames) < 100:
                frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                if frame is not None:
                    frames.append((frame, frame.f_lineno))
                coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
            stack = "".join(traceback.StackSummary.extract(frames).format())
            out.append(f"Stack of {task!r} (innermost last):\n{stack}")
        except Exception as exc:  # the dump must not stop half-way
            out.append(f"{task!r}: no stack ({exc!r})")
    return "\n".join(out) if out else "(no unfinished asyncio task)"


# --- out-of-band errors: unraisable, thread exceptions, asyncio's error log ----------------
#
# pytest installs its own sys.unraisablehook / threading.excepthook (session-wide in pytest 9,
# per phase in older releases, restoring the previous hook at the end of each phase). Installing
# ours in a fixture would be undone by those restores, so ours go in the innermost wrapper of each
# runtest phase and record into the item's stash; the leak-check fixture reports them.


class _AsyncioErrorLog(logging.Handler):
    """Records ERROR records of the ``asyncio`` logger: how any loop's default exception handler
    reports "Task exception was never retrieved", "Exception in callback", and the like. Also
    attached to the ``corral`` logger, where callbacks run by a cancelling thread report."""

    def __init__(self, record: Callable[[str], object]) -> None:
        super().__init__(level=logging.ERROR)
        self._record = record

    def emit(self, record: logging.LogRecord) -> None:
        text = _trim_source_traceback(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        self._record(f"{record.name} logged an error: {text}")


def _trim_source_traceback(text: str) -> str:
    """Keep the innermost frames of debug mode's "Object created at" trace: the outer ones are
    pytest's own machinery, identical for every test."""
    head, marker, trace = text.partition("source_traceback: Object created at")
    if not marker:
        return text
    title, _, frames = trace.partition("\n")
    lines = frames.splitlines()
    keep = 2 * STACK_FRAMES_SHOWN  # a frame is a "File ..." line and a source line
    if len(lines) > keep:
        lines = ["  ...", *lines[-keep:]]
    return head + marker + title + "\n" + "\n".join(lines)


@contextlib.contextmanager
def _capturing_incidents(incidents: list[str]) -> Iterator[None]:
    def on_unraisable(args: Any) -> None:
        try:
            culprit = repr(args.object)
        except Exception as exc:
            culprit = f"<repr() failed: {exc!r}>"
        tb = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        incidents.append(f"{args.err_msg or 'Exception ignored in'}: {culprit}\n{tb.rstrip()}")

    def on_thread_exception(args: Any) -> None:
        if args.exc_type is SystemExit:  # the default hook ignores it too
            return
        name = args.thread.name if args.thread is not None else "<unknown thread>"
        tb = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        incidents.append(f"exception ended thread {name!r}:\n{tb.rstrip()}")

    logs = [logging.getLogger(name) for name in LOGGERS_WATCHED]
    handler = _AsyncioErrorLog(incidents.append)
    saved = sys.unraisablehook, threading.excepthook
    sys.unraisablehook = on_unraisable
    threading.excepthook = on_thread_exception
    for log in logs:
        log.addHandler(handler)
    try:
        yield
    finally:
        for log in logs:
            log.removeHandler(handler)
        sys.unraisablehook, threading.excepthook = saved


def _in_capture(item: pytest.Item) -> Generator[None, object, object]:
    incidents = item.stash.setdefault(_INCIDENTS, [])
    with _capturing_incidents(incidents):
        return (yield)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    incidents = item.stash.setdefault(_INCIDENTS, [])
    with _capturing_incidents(incidents):
        _freeze_at_module_start(item)
        return (yield)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _in_capture(item))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    result = yield from _in_capture(item)
    # Backstop for anything recorded after the leak-check fixture reported (it clears the list).
    late = item.stash.get(_INCIDENTS, [])
    if late:
        messages = list(late)
        late.clear()
        pytest.fail(_report("after the leak check", messages), pytrace=False)
    return result


# --- the leak check's gc.collect(), made cheap ---------------------------------------------
#
# A full collection walks every object the collector tracks, and after collecting the suite
# (2,000+ items, hypothesis, Dask and redis-py imported) plus what earlier tests left (pytest's
# reports, caches) that took 0.1-0.3 s per test on a 2-core machine: a third of `make test`'s
# pytest time, before anything was tested. So everything alive is collected once and then
# frozen (gc.freeze: moved where collections no longer look) when collection ends, and again
# when a module's first test starts, before its fixtures are set up. What is alive then is the
# suite and whatever outlives modules; what a test makes is made later, so its garbage is still
# collected, finalized and blamed on it by its own check. Garbage of the previous module's
# fixtures is finalized by that module-start collection, inside the first test's setup, where
# its incidents are recorded.
#
# What it gives up: an object that outlived its module and later becomes garbage in a cycle is
# not finalized before the session ends (today it would be blamed on whichever later test
# happened to collect it). And gc.get_referrers() does not see frozen referrers. Hypothesis
# relies on it, once per process, when it registers a Random (its entry points', trio's when
# installed, at import; its own global one on the first @given): with the referrer frozen it
# warns, an error here. So both happen before the first freeze, which is at the end of
# collection, outside any test's timeout (the import takes a second on a loaded machine); and
# the session's end, where plugins import more, runs unfrozen again.

_module_frozen: list[object] = [None]  # the path of the module whose start froze the heap last


def _freeze() -> None:
    gc.collect()
    gc.freeze()


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    if gc.get_freeze_count():  # once per process: an in-process inner session finds it done
        return
    try:
        from hypothesis.internal.entropy import deterministic_PRNG
    except ImportError:
        pass
    else:
        with deterministic_PRNG():  # makes and registers hypothesis' global Random
            pass
    _freeze()


def _freeze_at_module_start(item: pytest.Item) -> None:
    if _module_frozen[0] != item.path:
        _module_frozen[0] = item.path
        _freeze()


# --- probes of corral's own test hooks ------------------------------------------------------


def _corral_module(name: str) -> ModuleType | None:
    """``import name`` if the session already imported corral and the module exists, else None.

    Never the first to import corral: the harness must not depend on the library importing.
    """
    if "corral" not in sys.modules:
        return None
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            return None  # the module (or a parent package) does not exist yet
        raise  # it exists but imports something missing: a real error


class _WaiterTracking:
    """Waiter tracking through ``corral.testing``, if it offers it (see the module docstring)."""

    def __init__(self, testing: ModuleType, context: Any) -> None:
        self._testing = testing
        self._context = context

    @classmethod
    def start(cls) -> _WaiterTracking | None:
        testing = _corral_module("corral.testing")
        if testing is None or not (
            hasattr(testing, "track") and hasattr(testing, "tracked_waiters")
        ):
            return None
        started = testing.track()
        context = (
            started if hasattr(started, "__enter__") and hasattr(started, "__exit__") else None
        )
        if context is not None:
            context.__enter__()
        return cls(testing, context)

    def stop(self) -> list[str]:
        """Stop tracking; describe each waiter still queued."""
        try:
            left = [str(w) for w in self._testing.tracked_waiters()]
        finally:
            try:
                if self._context is not None:
                    self._context.__exit__(None, None, None)
            finally:
                # Called even after a context: track()'s exit need not stop tracking.
                if hasattr(self._testing, "untrack"):
                    self._testing.untrack()
        return [f"waiter still queued after the test: {w}" for w in left]


def _wait_corral_timer_idle() -> bool | None:
    """None if corral has no timer hook; else whether its timer became idle in time."""
    timer = _corral_module("corral._core.timer")
    wait_idle = getattr(timer, "wait_idle", None)
    if wait_idle is None:
        return None
    return wait_idle(THREAD_GRACE_SECONDS) is not False


# --- the leak check --------------------------------------------------------------------------


def _leaked_threads(before: set[threading.Thread], ignored: tuple[str, ...]) -> list[str]:
    """Threads started since ``before`` still alive after the grace period, with their stacks."""
    deadline = time.monotonic() + THREAD_GRACE_SECONDS
    while True:
        # Enumerate again each round: a finishing thread may start another one.
        alive = [
            t
            for t in threading.enumerate()
            if t not in before
            and t is not threading.current_thread()
            and not t.name.startswith(ignored)
            and t.is_alive()
        ]
        remaining = deadline - time.monotonic()
        if not alive or remaining <= 0:
            break
        try:
            alive[0].join(min(remaining, 0.1))
        except (RuntimeError, AssertionError):  # a dummy (foreign) thread cannot be joined
            time.sleep(min(remaining, 0.01))
    frames = sys._current_frames()
    reports = []
    for t in alive:
        frame = frames.get(t.ident) if t.ident is not None else None
        stack = "".join(traceback.format_stack(frame)[-STACK_FRAMES_SHOWN:]) if frame else ""
        reports.append(
            f"thread {t.name!r} (daemon={t.daemon}) still alive {THREAD_GRACE_SECONDS} s "
            f"after the test; it is at:\n{stack.rstrip()}"
        )
    return reports


def _report(when: str, problems: list[str]) -> str:
    return f"leak check failed {when} ({len(problems)} problem(s)):\n\n" + "\n\n".join(problems)


@pytest.fixture(autouse=True)
def _leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """No thread, task, waiter or out-of-band error outlives the test (see the module docstring).

    Autouse fixtures from this conftest are set up before the test's own fixtures, so this
    teardown runs after theirs: a fixture that stops a worker thread is not blamed for it.
    """
    threads_before = set(threading.enumerate())
    waiters = _WaiterTracking.start()

    yield

    problems: list[str] = []
    ignored = IGNORED_THREAD_PREFIXES
    timer_idle = _wait_corral_timer_idle()
    if timer_idle is not None:
        ignored += (CORRAL_TIMER_THREAD_PREFIX,)
        if not timer_idle:
            problems.append(
                f"corral's timer still had scheduled entries {THREAD_GRACE_SECONDS} s "
                "after the test"
            )
    problems += _leaked_threads(threads_before, ignored)
    gc.collect()  # finalize this test's garbage now, so its warnings land on this test
    incidents = request.node.stash.get(_INCIDENTS, [])
    problems += incidents
    incidents.clear()
    if waiters is not None:
        problems += waiters.stop()
    if problems:
        pytest.fail(_report("after the test", problems), pytrace=False)


# --- free-threaded builds: the GIL must stay off ---------------------------------------------
#
# On a free-threaded interpreter (3.13t) importing an extension module that does not declare
# itself free-threading safe re-enables the GIL for the whole process (with only a
# RuntimeWarning), and PYTHON_GIL=1 forces it on. Either would make the run pass without
# testing what it is meant to, so it fails instead: checked when the session starts (the
# plugins are imported) and again when it ends (test modules and tests import more).


def _gil_turned_on() -> str | None:
    import sysconfig

    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        return None  # a GIL build: nothing to check
    if not sys._is_gil_enabled():
        return None
    return (
        "this free-threaded Python is running with the GIL enabled (PYTHON_GIL=1, -X gil=1, or "
        "an imported extension module re-enabled it: look for 'The global interpreter lock "
        "(GIL) has been enabled' above); the suite must run with the GIL off here"
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    problem = _loop_settings_problem() or _gil_turned_on()
    if problem is not None:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    gc.unfreeze()  # frozen since collection; the summary and its imports come after
    problem = _gil_turned_on()
    if problem is not None:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"ERROR: {problem}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
