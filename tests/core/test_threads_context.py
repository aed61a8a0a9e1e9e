"""Threads corral starts: which contextvars they see, and what a failed start does.

The policy (``corral._core.threads``, docs/design.md "Threads and contextvars"): work a
caller submitted runs in a copy of the caller's context taken at submission; corral's own
infrastructure threads run in an empty context; the same on GIL builds and on builds where
new threads inherit their creator's context (``-X thread_inherit_context=1``, free-threaded
3.14). These tests print nothing about the build: run them under both, they must pass the
same (``sys.flags.thread_inherit_context`` says which one ran).

A thread that cannot start raises ``ThreadStartError`` at the call that wanted it, and
leaves nothing half-started (the leak check after each test looks for threads).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import corral
import corral.threads
from corral._core import timer
from corral._core.threads import start_thread

pytestmark = pytest.mark.timeout(60)

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("onerule_var", default="unset")


def _seen() -> str:
    return VAR.get()


async def _seen_async() -> str:
    return VAR.get()


# -- the helper itself ---------------------------------------------------------------------


def _run_in_thread(context: contextvars.Context | None) -> str:
    out: list[str] = []
    t = start_thread(lambda: out.append(VAR.get()), name="t", what="test", context=context)
    t.join()
    return out[0]


def test_an_infrastructure_thread_starts_empty_whoever_starts_it() -> None:
    token = VAR.set("caller")
    try:
        assert _run_in_thread(None) == "unset"
        assert _run_in_thread(contextvars.copy_context()) == "caller"
    finally:
        VAR.reset(token)


def test_threads_are_named_corral_and_daemon() -> None:
    seen: list[threading.Thread] = []
    t = start_thread(
        lambda: seen.append(threading.current_thread()), name="x", what="t", context=None
    )
    t.join()
    assert seen[0].name == "corral-x"
    assert seen[0].daemon


# -- submitted work sees the caller's contextvars ------------------------------------------


def test_threads_group_go_sees_the_callers_var() -> None:
    VAR.set("group")  # the test runs in its own context copy (pytest runs each test fresh)
    with corral.threads.Group() as g:
        fut = g.go(_seen)
    assert fut.result() == "group"


async def test_async_group_go_of_a_plain_function_sees_the_callers_var() -> None:
    VAR.set("agroup")
    async with corral.Group() as g:
        t = g.go(_seen)
        if not isinstance(t, asyncio.Task | asyncio.Future):
            t = await t
    assert t.result() == "agroup"


@pytest.mark.parametrize("fn", [_seen, _seen_async], ids=["thread-worker", "task-worker"])
def test_threads_fan_out_workers_see_the_callers_var(fn: Callable[[Any], Any]) -> None:
    # A task worker of the thread flavour runs on a private loop in a thread of its own:
    # before the policy it saw that thread's context (empty on GIL builds).
    VAR.set("fan")
    res = corral.threads.fan_out(_wrap(fn), range(4), workers=2).collect()
    assert res == ["fan"] * 4


def _wrap(fn: Callable[[], Any]) -> Callable[[Any], Any]:
    if fn is _seen_async:

        async def a(_: Any) -> str:
            return await _seen_async()

        return a
    return lambda _: _seen()


async def test_async_fan_out_thread_workers_see_the_callers_var() -> None:
    VAR.set("afan")
    res = await corral.fan_out(lambda _: _seen(), range(4), workers=2).collect()
    assert res == ["afan"] * 4


def test_threads_pipeline_stages_see_the_callers_var() -> None:
    VAR.set("pipe")

    async def stage2(x: str) -> str:
        return x + "/" + VAR.get()

    with corral.threads.pipeline(
        range(3), corral.stage(lambda _: VAR.get(), workers=2), corral.stage(stage2)
    ) as out:
        assert list(out) == ["pipe/pipe"] * 3


def test_threads_singleflight_call_sees_the_leaders_var() -> None:
    VAR.set("sf")
    assert corral.threads.SingleFlight().do("k", _seen) == "sf"


async def test_async_singleflight_thread_call_sees_the_leaders_var() -> None:
    VAR.set("asf")
    assert await corral.SingleFlight().do("k", _seen) == "asf"


def test_a_fan_in_relay_reads_the_callers_generator_in_its_context() -> None:
    VAR.set("relay")

    def gen() -> Iterator[str]:
        yield VAR.get()

    with corral.threads.fan_in(gen(), gen()) as merged:
        assert list(merged) == ["relay", "relay"]


# -- infrastructure threads never leak a caller's var --------------------------------------


def test_a_deadline_callback_does_not_see_the_var_of_whoever_started_the_timer() -> None:
    assert timer.wait_idle(5.0)  # the timer thread is started by this test's deadline
    VAR.set("leak")
    seen: list[str] = []
    done = threading.Event()
    with corral.with_timeout(corral.background(), 0.01) as ctx:
        ctx.after_func(lambda: (seen.append(VAR.get()), done.set()))
        assert done.wait(10)
    assert seen == ["unset"]


# -- a thread that cannot start ------------------------------------------------------------


@pytest.fixture
def no_threads(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """``fail_after(n)``: let ``n`` more corral threads start, then refuse every one."""
    real_start = threading.Thread.start
    budget = {"left": 10**9}

    def start(self: threading.Thread) -> None:
        if self.name.startswith("corral-") and not self.name.startswith("corral-timer"):
            if budget["left"] <= 0:
                raise RuntimeError("can't start new thread")
            budget["left"] -= 1
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)

    def fail_after(n: int) -> None:
        budget["left"] = n

    return fail_after


def test_start_thread_raises_a_typed_error_naming_the_call(no_threads: Any) -> None:
    no_threads(0)
    with pytest.raises(corral.ThreadStartError, match=r"^Group\.go: could not start") as info:
        start_thread(lambda: None, name="x", what="Group.go", context=None)
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_threads_group_go_that_cannot_start_a_thread_raises_and_runs_nothing(
    no_threads: Any,
) -> None:
    ran: list[int] = []
    with corral.threads.Group() as g:
        no_threads(0)
        with pytest.raises(corral.ThreadStartError, match=r"Group\.go"):
            g.go(ran.append, 1)
        no_threads(10**9)
        g.go(ran.append, 2).result()  # the group goes on
    assert ran == [2]
    assert g.statistics().running == 0


@pytest.mark.parametrize("started", [0, 1, 2])
def test_threads_fan_out_that_cannot_start_every_worker_stops_the_ones_it_started(
    no_threads: Any, started: int
) -> None:
    no_threads(started)
    flow = corral.threads.fan_out(lambda x: x, range(10), workers=3)
    with pytest.raises(corral.ThreadStartError, match=r"^fan_out: could not start"):
        flow.__enter__()
    assert not flow.statistics().running  # every worker that started was stopped and joined


@pytest.mark.parametrize("started", [0, 1])
async def test_async_fan_out_that_cannot_start_a_thread_worker_stops_the_rest(
    no_threads: Any, started: int
) -> None:
    no_threads(started)
    with pytest.raises(corral.ThreadStartError, match=r"^fan_out"):
        async with corral.fan_out(lambda x: x, range(10), workers=2) as out:
            [x async for x in out]  # pragma: no cover - never reached


def test_a_deadline_that_cannot_start_the_timer_leaves_no_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert timer.wait_idle(5.0)

    def refuse(*a: Any, **k: Any) -> Any:
        raise corral.ThreadStartError("a deadline: could not start a thread")

    monkeypatch.setattr("corral._core.timer.start_thread", refuse)
    with corral.with_cancel(corral.background()) as parent:
        with pytest.raises(corral.ThreadStartError):
            corral.with_timeout(parent, 5)
        assert not parent._governor._children  # type: ignore[union-attr]
    assert timer.wait_idle(5.0)


def test_a_singleflight_call_that_cannot_start_fails_every_waiter_and_frees_the_key(
    no_threads: Any,
) -> None:
    sf: corral.threads.SingleFlight[str, int] = corral.threads.SingleFlight()
    no_threads(0)
    with pytest.raises(corral.ThreadStartError, match=r"SingleFlight\.do"):
        sf.do("k", lambda: 1)
    no_threads(10**9)
    assert sf.do("k", lambda: 2) == 2


def test_a_fan_in_that_cannot_start_every_relay_stops_the_ones_it_started(
    no_threads: Any,
) -> None:
    no_threads(1)
    ch: corral.threads.Channel[int] = corral.threads.Channel(0)
    with (
        pytest.raises(corral.ThreadStartError, match=r"^fan_in"),
        corral.threads.fan_in(ch, range(3)),
    ):
        pass
    # The relay that started was cancelled: it left ch (no receiver stays parked on it).
    for _ in range(200):
        if not ch.statistics().waiting_receivers:
            break
        threading.Event().wait(0.01)
    assert not ch.statistics().waiting_receivers
