"""What every mix of callers promises: the call outlives its first caller, a caller that
leaves starts no duplicate, the last one to leave cancels the call, every caller gets the
value or its own usable copy of the exception, and no key is ever stuck."""

from __future__ import annotations

import contextvars
import threading
import traceback
from typing import Any

import pytest

import corral

from .conftest import WAIT, Counter, World

pytestmark = pytest.mark.timeout(60)


class LoadError(Exception):
    pass


def test_cancelling_the_leader_does_not_fail_or_cancel_followers(
    world: World, gate: corral.CancelContext
) -> None:
    calls, cancelled = Counter(), threading.Event()
    fn = world.fn(result="user", calls=calls, gate=gate, cancelled=cancelled)
    leader = world.call("k", fn)
    world.waiting(1)
    followers = [world.call("k", fn) for _ in range(3)]
    world.waiting(4)
    world.leave(leader)
    assert world.left(leader)
    world.waiting(3)
    gate.cancel()
    assert [f.result() for f in followers] == ["user"] * 3
    assert calls.n == 1
    assert not cancelled.is_set()


def test_a_caller_that_left_makes_no_duplicate(world: World, gate: corral.CancelContext) -> None:
    calls = Counter()
    fn = world.fn(result=1, calls=calls, gate=gate)
    a = world.call("k", fn)
    b = world.call("k", fn)
    world.waiting(2)
    world.leave(a)
    assert world.left(a)
    c = world.call("k", fn)  # must join the running call, not start another
    world.waiting(2)
    gate.cancel()
    assert (b.result(), c.result()) == (1, 1)
    assert calls.n == 1


def test_last_caller_leaving_cancels_the_call_and_frees_the_key(world: World) -> None:
    calls, cancelled, finished = Counter(), threading.Event(), threading.Event()
    never = corral.with_cancel(corral.background())
    a = world.call("k", world.fn(calls=calls, gate=never, cancelled=cancelled, finished=finished))
    world.waiting(1)  # a leads (b's own function would return at once)
    b = world.call("k", world.fn(calls=calls))
    world.waiting(2)
    world.leave(a)
    world.leave(b)
    assert world.left(a)
    assert world.left(b)
    assert cancelled.wait(10), "the call must see its cancellation"
    assert finished.wait(10)
    # A new arrival starts a fresh call.
    assert world.call("k", world.fn(calls=calls, result="fresh")).result() == "fresh"
    assert calls.n == 2
    never.cancel()


def test_new_arrival_does_not_join_a_call_being_cancelled(world: World) -> None:
    """tailscale#18919: once the last waiter left, the old call may still be running (a
    thread notices its cancellation only when it looks); new callers start afresh."""
    started, release = threading.Event(), threading.Event()
    calls = Counter()

    def stubborn(*_: Any) -> str:  # a plain function that looks at its Context late
        calls.add()
        started.set()
        release.wait(10)
        return "stale"

    a = world.call("k", stubborn)
    assert started.wait(10)
    world.leave(a)
    assert world.left(a)
    assert world.sf.statistics().in_flight == 0
    fresh = world.call("k", world.fn(result="fresh", calls=calls))
    assert fresh.result() == "fresh"
    assert calls.n == 2
    release.set()


def test_timeout_leaves_only_that_caller(world: World, gate: corral.CancelContext) -> None:
    fn = world.fn(result="v", gate=gate)
    patient = world.call("k", fn)
    world.waiting(1)
    hasty = world.call("k", fn, timeout=0)
    with pytest.raises(corral.DeadlineExceeded):
        hasty.result()
    gate.cancel()
    assert patient.result() == "v"


def test_each_caller_gets_a_usable_copy_of_the_exception(
    world: World, gate: corral.CancelContext
) -> None:
    def failing_load() -> None:
        raise LoadError("db down", 503)

    def shared_fn_error() -> LoadError:
        try:
            failing_load()
        except LoadError as e:
            e.add_note("while loading user 7")
            return e
        raise AssertionError

    err = shared_fn_error()
    fn = world.fn(error=err, gate=gate)
    callers = [world.call("k", fn) for _ in range(4)]
    world.waiting(4)
    gate.cancel()
    errs = [c.exception() for c in callers]
    for e in errs:
        assert type(e) is LoadError
        assert e.args == ("db down", 503)
        assert e.__notes__ == ["while loading user 7"]
        assert e is not err
        frames = [f.name for f in traceback.extract_tb(e.__traceback__)]
        assert "failing_load" in frames, "the traceback starts where fn failed"
    assert len({id(e) for e in errs}) == 4
    assert len({id(e.__notes__) for e in errs}) == 4


def test_base_exception_reaches_everyone_and_frees_the_key(
    world: World, gate: corral.CancelContext
) -> None:
    class Fatal(BaseException):
        pass

    fn = world.fn(error=Fatal("stop"), gate=gate)
    callers = [world.call("k", fn) for _ in range(3)]
    world.waiting(3)
    gate.cancel()
    assert all(type(c.exception()) is Fatal for c in callers)
    assert world.sf.statistics() == corral.SingleFlightStatistics(0, 0, 1, 2)
    assert world.call("k", world.fn(result=1)).result() == 1


def test_do_shared_flag(world: World, gate: corral.CancelContext) -> None:
    assert world.call("solo", world.fn(result=1), method="do_shared").result() == (1, False)
    fn = world.fn(result=2, gate=gate)
    a = world.call("k", fn, method="do_shared")
    b = world.call("k", fn, method="do_shared")
    world.waiting(2)
    gate.cancel()
    assert a.result() == corral.FlightResult(2, True)
    assert b.result() == corral.FlightResult(2, True)


def test_keys_are_independent(world: World, gate: corral.CancelContext) -> None:
    calls = Counter()
    fn = world.fn(calls=calls, gate=gate, result="x")
    cs = [world.call(k, fn) for k in ("a", "b", "a", "b")]
    world.waiting(4)
    assert world.sf.statistics().in_flight == 2
    gate.cancel()
    assert [c.result() for c in cs] == ["x"] * 4
    assert calls.n == 2


def test_statistics(world: World, gate: corral.CancelContext) -> None:
    fn = world.fn(gate=gate)
    cs = [world.call("k", fn) for _ in range(3)]
    world.waiting(3)
    assert world.sf.statistics() == corral.SingleFlightStatistics(
        in_flight=1, waiters=3, started=1, joined=2
    )
    gate.cancel()
    for c in cs:
        c.result()
    assert world.sf.statistics().in_flight == 0


def test_do_chan_is_a_channel_usable_in_select_beside_a_timeout(
    world: World, gate: corral.CancelContext
) -> None:
    # Go's DoChan exists for select: wait for the result *or* something else.
    fn = world.fn(result=5, gate=gate)
    stay = world.call("k", fn)
    world.waiting(1)
    ch = world.tsf.do_chan("k", fn)
    world.waiting(2)
    other: corral.threads.Channel[str] = corral.threads.Channel(1)
    other.send("first")
    s = corral.threads.select(ch.recv_case(), other.recv_case())
    assert (s.index, s.value) == (1, "first")  # the flight is still running
    with pytest.raises(corral.DeadlineExceeded):
        corral.threads.select(ch.recv_case(), timeout=0.01)
    gate.cancel()
    s = corral.threads.select(ch.recv_case(), other.recv_case(), timeout=WAIT)
    assert (s.index, s.value) == (0, corral.FlightResult(5, True))
    assert s.ok
    assert stay.result() == 5
    with pytest.raises(corral.EndOfChannel):
        ch.recv_nowait()  # one result, then closed


def test_current_context_outside_a_call_is_background() -> None:
    assert corral.SingleFlight.current_context() is corral.background()
    assert corral.threads.SingleFlight.current_context() is corral.background()


def test_contextvars_of_the_starting_caller_reach_fn(world: World) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    seen: list[str] = []

    def record() -> str:
        seen.append(var.get("unset"))
        return "ok"

    c = world.call("k", world.fn(result_fn=record), before=lambda: var.set("r-1"))
    assert c.result() == "ok"
    assert seen == ["r-1"]


def test_parent_context_cancels_calls(world: World) -> None:
    parent = corral.with_cancel(corral.background())
    world.sf = corral.SingleFlight(ctx=parent)
    world.tsf = world.sf.as_threads()
    cancelled = threading.Event()
    never = corral.with_cancel(corral.background())
    c = world.call("k", world.fn(gate=never, cancelled=cancelled))
    world.waiting(1)
    parent.cancel()
    assert cancelled.wait(10)
    assert isinstance(c.exception(), corral.Cancelled)
    never.cancel()
