"""How one failure becomes one exception per caller (``_core.singleflight.fresh_copy``).

Raising one exception object from many tasks or threads splices their tracebacks and
``__context__`` together (the PyPI port does this: every caller raises the same object).
Each caller gets a copy: same type, args, attributes, notes and cause; its traceback
starts with the frames where ``fn`` failed.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import traceback
from typing import Any

import pytest

import corral
import corral.threads
from corral._core.singleflight import fresh_copy

pytestmark = pytest.mark.timeout(30)


class CodeError(Exception):
    """A common shape: __init__ takes other arguments than it passes to Exception."""

    made = 0

    def __init__(self, code: int) -> None:
        CodeError.made += 1
        super().__init__(f"error {code}")
        self.code = code


class Unpicklable(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("no")


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as e:
        return e


def test_copy_keeps_type_args_attributes_and_does_not_rerun_init() -> None:
    err = raised(CodeError(503))
    made = CodeError.made
    c = fresh_copy(err)
    assert c is not err
    assert type(c) is CodeError
    assert c.args == ("error 503",)
    assert c.code == 503
    assert CodeError.made == made, "__init__ must not run again"
    assert c.__traceback__ is err.__traceback__


def test_copy_of_os_error_keeps_errno_and_filename() -> None:
    err = raised(FileNotFoundError(2, "No such file", "/etc/nope"))
    c = fresh_copy(err)
    assert type(c) is FileNotFoundError
    assert (c.errno, c.strerror, c.filename) == (2, "No such file", "/etc/nope")


def test_copy_of_import_error_keeps_name_and_path() -> None:
    c = fresh_copy(raised(ImportError("gone", name="mod", path="/x.py")))
    assert (c.msg, c.name, c.path) == ("gone", "mod", "/x.py")


def test_copy_keeps_cause_context_and_notes() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ValueError("outer") from inner
    except ValueError as e:
        e.add_note("note 1")
        err = e
    c = fresh_copy(err)
    assert isinstance(c.__cause__, KeyError)
    assert c.__suppress_context__
    assert c.__notes__ == ["note 1"]
    c.add_note("only mine")
    assert err.__notes__ == ["note 1"]


def test_copy_of_an_exception_group() -> None:
    eg = raised(ExceptionGroup("many", [ValueError(1), KeyError(2)]))
    c = fresh_copy(eg)
    assert type(c) is ExceptionGroup
    assert [type(e) for e in c.exceptions] == [ValueError, KeyError]


def test_uncopyable_exception_is_shared_rather_than_lost() -> None:
    err = raised(Unpicklable("x"))
    assert fresh_copy(err) is err


def test_base_exceptions_are_copied_too() -> None:
    k = raised(KeyboardInterrupt())
    assert type(fresh_copy(k)) is KeyboardInterrupt
    s = fresh_copy(raised(SystemExit(3)))
    assert type(s) is SystemExit
    assert s.code == 3


def test_copies_pickle_like_the_original() -> None:
    err = raised(FileNotFoundError(2, "No such file", "/x"))
    c = fresh_copy(err)
    assert pickle.loads(pickle.dumps(c)).filename == pickle.loads(pickle.dumps(err)).filename


def test_tracebacks_of_concurrent_callers_do_not_mix() -> None:
    """Many threads raise the shared failure at once; each traceback shows the failing
    function and that caller's own frames, and no other caller's."""
    sf = corral.threads.SingleFlight[str, None]()
    barrier = threading.Barrier(8)
    release = threading.Event()

    def failing_call() -> None:
        release.wait(10)
        raise CodeError(500)

    tbs: dict[int, list[str]] = {}

    def caller(i: int) -> None:
        def frame_of_caller_marker() -> None:
            sf.do("k", failing_call)

        barrier.wait()
        try:
            frame_of_caller_marker()
        except CodeError as e:
            tbs[i] = [f.name for f in traceback.extract_tb(e.__traceback__)]

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    while sf.statistics().waiters < 8:
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join()
    assert len(tbs) == 8
    for names in tbs.values():
        assert names.count("frame_of_caller_marker") == 1
        assert names.count("failing_call") == 1


async def test_tasks_handling_the_error_concurrently_keep_their_own_context() -> None:
    sf: corral.SingleFlight[str, None] = corral.SingleFlight()
    release = asyncio.Event()

    async def failing() -> None:
        await release.wait()
        raise CodeError(1)

    seen: list[BaseException | None] = []

    async def caller(i: int) -> None:
        try:
            raise RuntimeError(f"caller {i} was handling this")
        except RuntimeError:
            try:
                await sf.do("k", failing)
            except CodeError as e:
                await asyncio.sleep(0)  # let the others raise theirs meanwhile
                seen.append(e.__context__)

    tasks = [asyncio.create_task(caller(i)) for i in range(4)]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)
    assert sorted(str(c) for c in seen) == [f"caller {i} was handling this" for i in range(4)]


def test_keyboard_interrupt_in_a_thread_call_reaches_every_caller() -> None:
    sf = corral.threads.SingleFlight[str, None]()
    release = threading.Event()

    def interrupted() -> None:
        release.wait(10)
        raise KeyboardInterrupt

    got: list[type] = []

    def caller() -> None:
        try:
            sf.do("k", interrupted)
        except KeyboardInterrupt as e:
            got.append(type(e))

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
    while sf.statistics().waiters < 3:
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join()
    assert got == [KeyboardInterrupt] * 3
    assert sf.do("k", lambda: None) is None  # the key is free
