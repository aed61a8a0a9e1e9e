"""Self-tests of tests/conftest.py: the async runner and the leak check catch what they claim.

Nothing here imports corral: these pass with an empty ``src/corral/__init__.py``. The leak cases
run in a pytest subprocess over a copy of the real conftest, so a deliberate leak cannot spill
into this session.
"""

from __future__ import annotations

import asyncio
import re
import textwrap
import threading
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
INNER_TIMEOUT = 120


# --- the async runner, in this session ---------------------------------------------------------


async def test_async_test_runs_in_a_debug_loop() -> None:
    loop = asyncio.get_running_loop()
    assert loop.get_debug()
    assert await asyncio.create_task(asyncio.sleep(0, result="done")) == "done"


@pytest.fixture
def answer() -> int:
    return 42


async def test_async_test_receives_fixtures(answer: int, tmp_path: Path) -> None:
    assert answer == 42
    assert isinstance(tmp_path, Path)


_loops: list[asyncio.AbstractEventLoop] = []


@pytest.mark.parametrize("nth", [1, 2])
async def test_each_async_test_gets_a_fresh_loop(nth: int) -> None:
    _loops.append(asyncio.get_running_loop())
    if nth == 2:
        first, second = _loops[-2:]
        assert first is not second
        assert first.is_closed()


class TestAsyncMethods:
    async def test_async_method_runs(self, answer: int) -> None:
        await asyncio.sleep(0)
        assert answer == 42


def test_joined_thread_is_not_a_leak() -> None:
    worker = threading.Thread(target=lambda: None)
    worker.start()
    worker.join()


# --- the leak check, in a subprocess ------------------------------------------------------------


def _run_inner(
    pytester: pytest.Pytester, cases: str, *args: str
) -> tuple[pytest.RunResult, dict[str, set[str]]]:
    """Run ``cases`` under a copy of the real conftest, with pytest's extra ``args``; return the
    result and each test's statuses from the ``-rA`` summary (a test that passes and errors at
    teardown has both)."""
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini(
        """
        [pytest]
        filterwarnings = error
        addopts = -p no:cacheprovider
        """
    )
    pytester.makepyfile(test_cases=textwrap.dedent(cases))
    result = pytester.runpytest_subprocess("-rA", *args, timeout=INNER_TIMEOUT)
    statuses: dict[str, set[str]] = {}
    for line in result.outlines:
        match = re.match(r"^(PASSED|FAILED|ERROR) test_cases\.py::(\w+)", line)
        if match:
            statuses.setdefault(match[2], set()).add(match[1])
    return result, statuses


def _check(statuses: dict[str, set[str]], clean: list[str], leaky: list[str]) -> None:
    assert set(statuses) == set(clean) | set(leaky), statuses
    for name in clean:
        assert statuses[name] == {"PASSED"}, f"{name} should pass: {statuses[name]}"
    for name in leaky:
        assert statuses[name] & {"FAILED", "ERROR"}, f"{name} should fail: {statuses[name]}"


LEAK_CASES = """
    import asyncio
    import threading
    import time

    _release = threading.Event()


    def test_clean_sync():
        pass


    async def test_clean_async():
        await asyncio.create_task(asyncio.sleep(0))


    def test_thread_finishing_within_grace_is_not_a_leak():
        threading.Thread(target=time.sleep, args=(0.2,), name="short-lived").start()


    def test_leaked_thread():
        threading.Thread(target=_release.wait, name="leaky-worker", daemon=True).start()


    def test_thread_leaked_by_an_earlier_test_is_not_blamed_here():
        _release.set()


    async def test_leaked_task():
        asyncio.get_running_loop().create_task(asyncio.sleep(3600), name="leaky-task")


    def test_unraisable_exception():
        class Boom:
            def __del__(self):
                raise RuntimeError("boom in __del__")

        Boom()


    def test_cyclic_garbage_is_finalized_in_its_own_test():
        class Boom:
            def __del__(self):
                raise RuntimeError("boom in cyclic garbage")

        boom = Boom()
        boom.me = boom


    def test_coroutine_never_awaited():
        async def forgotten():
            pass

        forgotten()


    def test_exception_in_thread():
        def crash():
            raise ValueError("boom in thread")

        worker = threading.Thread(target=crash, name="crashing-worker")
        worker.start()
        worker.join()


    async def test_task_exception_never_retrieved():
        async def fail():
            raise KeyError("never retrieved")

        task = asyncio.create_task(fail())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert task.done()
        del task


    def test_clean_after_all_that():
        pass
"""


LEAK_CLEAN = [
    "test_clean_sync",
    "test_clean_async",
    "test_thread_finishing_within_grace_is_not_a_leak",
    "test_thread_leaked_by_an_earlier_test_is_not_blamed_here",
    "test_clean_after_all_that",
]
LEAK_LEAKY = [
    "test_leaked_thread",
    "test_leaked_task",
    "test_unraisable_exception",
    "test_cyclic_garbage_is_finalized_in_its_own_test",
    "test_coroutine_never_awaited",
    "test_exception_in_thread",
    "test_task_exception_never_retrieved",
]


def test_leak_check_flags_each_kind_of_leak(pytester: pytest.Pytester) -> None:
    result, statuses = _run_inner(pytester, LEAK_CASES)
    _check(statuses, clean=LEAK_CLEAN, leaky=LEAK_LEAKY)
    # The leaked task fails the call itself; the rest are reported at teardown.
    assert statuses["test_leaked_task"] == {"FAILED"}
    result.stdout.fnmatch_lines_random(
        [
            "*thread 'leaky-worker' (daemon=True) still alive*",
            "*1 task(s) still pending when the test returned*",
            "*<Task pending name='leaky-task'*",
            "*RuntimeError: boom in __del__*",
            "*RuntimeError: boom in cyclic garbage*",
            "*coroutine*forgotten*was never awaited*",
            "*exception ended thread 'crashing-worker'*",
            "*ValueError: boom in thread*",
            "*Task exception was never retrieved*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_leak_check_flags_each_kind_of_leak_under_xdist(pytester: pytest.Pytester) -> None:
    # `make check` runs the suite with pytest-xdist (-n auto). Each worker is a process of its
    # own, and every thing the harness checks lives in that process (threads, the test's loop,
    # the unraisable/thread hooks, the watched loggers), so the same verdicts must come out
    # whichever worker runs which test.
    pytest.importorskip("xdist")
    result, statuses = _run_inner(pytester, LEAK_CASES, "-n", "2")
    assert "2 workers" in result.stdout.str(), result.stdout.str()[-2000:]
    _check(statuses, clean=LEAK_CLEAN, leaky=LEAK_LEAKY)


# A stand-in for the hooks the library will offer (see the conftest docstring).
FAKE_TESTING = """
    import contextlib

    tracking = False
    untrack_calls = 0
    _queued = []


    @contextlib.contextmanager
    def track():
        global tracking
        tracking = True
        _queued.clear()
        yield  # leaving the block does not stop tracking: untrack() does


    def untrack():
        global tracking, untrack_calls
        tracking = False
        untrack_calls += 1
        _queued.clear()


    def tracked_waiters():
        return list(_queued)


    def leave_waiter(description):
        if tracking:
            _queued.append(description)
"""

FAKE_TIMER = """
    import threading

    busy = False
    calls = []


    def wait_idle(timeout):
        calls.append(timeout)
        return not busy


    def start_timer_thread(stop):
        threading.Thread(target=stop.wait, name="corral-timer", daemon=True).start()
"""

PROBE_CASES = """
    import threading

    import corral.testing
    from corral._core import timer

    _stop_timer = threading.Event()


    def test_tracking_is_on_during_a_test():
        assert corral.testing.tracking


    def test_untrack_was_called_after_the_previous_test():
        assert corral.testing.untrack_calls == 1


    def test_waiter_left_queued():
        corral.testing.leave_waiter("Channel(capacity=0).receive() waiter")


    def test_timer_thread_is_not_a_leak():
        timer.start_timer_thread(_stop_timer)


    def test_wait_idle_was_called_after_each_test():
        assert timer.calls
        assert timer.calls[-1] == 2.0


    def test_busy_timer():
        timer.busy = True


    def test_idle_timer_again():
        timer.busy = False
        _stop_timer.set()
"""


def test_leak_check_uses_corral_hooks_when_present(pytester: pytest.Pytester) -> None:
    package = pytester.path / "corral"
    (package / "_core").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "testing.py").write_text(textwrap.dedent(FAKE_TESTING))
    (package / "_core" / "__init__.py").write_text("")
    (package / "_core" / "timer.py").write_text(textwrap.dedent(FAKE_TIMER))
    result, statuses = _run_inner(pytester, PROBE_CASES)
    _check(
        statuses,
        clean=[
            "test_tracking_is_on_during_a_test",
            "test_untrack_was_called_after_the_previous_test",
            "test_timer_thread_is_not_a_leak",
            "test_wait_idle_was_called_after_each_test",
            "test_idle_timer_again",
        ],
        leaky=["test_waiter_left_queued", "test_busy_timer"],
    )
    result.stdout.fnmatch_lines_random(
        [
            "*waiter still queued after the test: Channel(capacity=0).receive() waiter*",
            "*corral's timer still had scheduled entries*",
        ]
    )


def test_leak_check_works_without_corral(pytester: pytest.Pytester) -> None:
    """A session that never imports corral runs no probe (and needs no corral at all)."""
    result, statuses = _run_inner(
        pytester,
        """
        import sys


        def test_corral_not_imported():
            assert "corral" not in sys.modules
        """,
    )
    _check(statuses, clean=["test_corral_not_imported"], leaky=[])
    assert result.ret == pytest.ExitCode.OK


def test_a_free_threaded_run_that_turns_the_gil_on_fails(pytester: pytest.Pytester) -> None:
    """On a free-threaded build, a GIL switched on during the run (an extension module that
    re-enables it) fails the session even though every test passed. Simulated here so that it
    runs on any build: the test makes the interpreter look free-threaded with the GIL on."""
    result, statuses = _run_inner(
        pytester,
        """
        import sys
        import sysconfig


        def test_imports_an_extension_that_turns_the_gil_on():
            real = sysconfig.get_config_var
            sysconfig.get_config_var = lambda name: 1 if name == "Py_GIL_DISABLED" else real(name)
            sys._is_gil_enabled = lambda: True
        """,
    )
    _check(statuses, clean=["test_imports_an_extension_that_turns_the_gil_on"], leaky=[])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*running with the GIL enabled*"])
