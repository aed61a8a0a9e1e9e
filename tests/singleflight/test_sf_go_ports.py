"""golang.org/x/sync/singleflight's singleflight_test.go (and Go's internal singleflight's
ForgetUnshared tests), ported, for every mix of callers and functions.

Where corral differs on purpose the test says so: each caller gets its own copy of an
exception (Go shares one error value; raising one object from many threads corrupts its
traceback), and a cancellation of the call itself reaches callers as ``Cancelled``.
"""

from __future__ import annotations

import threading

import pytest

import corral

from .conftest import Counter, World

pytestmark = pytest.mark.timeout(60)


class SomeError(Exception):
    pass


def test_do(world: World) -> None:
    c = world.call("key", world.fn(result="bar"))
    assert c.result() == "bar"


def test_do_err(world: World) -> None:
    some_err = SomeError("Some error")
    c = world.call("key", world.fn(error=some_err))
    err = c.exception()
    assert type(err) is SomeError
    assert str(err) == "Some error"
    assert err is not some_err  # corral: a copy per caller


def test_do_dup_suppress(world: World, gate: corral.CancelContext) -> None:
    """10 callers, the call held until all have joined: exactly one execution."""
    calls = Counter()
    fn = world.fn(result="bar", calls=calls, gate=gate)
    n = 10
    callers = [world.call("key", fn) for _ in range(n)]
    world.waiting(n)
    gate.cancel()
    assert [c.result() for c in callers] == ["bar"] * n
    assert calls.n == 1


def test_forget(world: World, gate: corral.CancelContext) -> None:
    """golang/go#31420: after Forget, a new call starts; a third call joins the second."""
    first_started = threading.Event()
    first_finished = threading.Event()
    unblock_first = corral.with_cancel(corral.background())
    unblock_second = corral.with_cancel(corral.background())

    first = world.call(
        "key", world.fn(started=first_started, gate=unblock_first, finished=first_finished)
    )
    assert first_started.wait(10)
    world.sf.forget("key")

    second = world.call("key", world.fn(result=2, gate=unblock_second), method="do_chan")
    world.waiting(1)  # the second call is in the table (the first was forgotten)

    unblock_first.cancel()
    assert first_finished.wait(10)
    assert first.result() is None

    third = world.call("key", world.fn(result=3), method="do_chan")
    world.waiting(2)
    unblock_second.cancel()
    assert second.result().value == 2
    assert third.result().value == 2, "the third call must get the second call's result"
    assert third.result().shared


def test_do_chan(world: World) -> None:
    c = world.call("key", world.fn(result="bar"), method="do_chan")
    r = c.result()
    assert r == corral.FlightResult("bar", False)
    assert (r.value, r.shared) == ("bar", False)


def test_do_chan_shared(world: World, gate: corral.CancelContext) -> None:
    fn = world.fn(result="bar", gate=gate)
    a = world.call("key", fn, method="do_chan")
    b = world.call("key", fn, method="do_chan")
    world.waiting(2)
    gate.cancel()
    assert a.result() == corral.FlightResult("bar", True)
    assert b.result() == corral.FlightResult("bar", True)


def test_panic_do(world: World, gate: corral.CancelContext) -> None:
    """golang/go#41133: an exception reaches all 5 callers; none hangs; the key is free."""
    fn = world.fn(error=SomeError("invalid memory address or nil pointer dereference"), gate=gate)
    callers = [world.call("key", fn) for _ in range(5)]
    world.waiting(5)
    gate.cancel()
    errs = [c.exception() for c in callers]
    assert all(type(e) is SomeError for e in errs)
    assert len({id(e) for e in errs}) == 5, "each caller raises its own copy"
    assert world.sf.statistics().in_flight == 0
    assert world.call("key", world.fn(result="next")).result() == "next"


class Goexit(BaseException):
    """Go's runtime.Goexit stands for 'the call ended without a result'."""


def test_goexit_do(world: World, gate: corral.CancelContext) -> None:
    """Go: Goexit in fn ends every waiter's goroutine, none hangs. Here a BaseException in
    fn reaches every caller (and a CancelledError becomes Cancelled: see the aio tests)."""
    fn = world.fn(error=Goexit(), gate=gate)
    callers = [world.call("key", fn) for _ in range(5)]
    world.waiting(5)
    gate.cancel()
    assert all(type(c.exception()) is Goexit for c in callers)
    assert world.sf.statistics().in_flight == 0


def test_panic_do_shared_by_do_chan(world: World, gate: corral.CancelContext) -> None:
    """Go crashes the program; corral hands the exception to the do_chan caller too."""
    started = threading.Event()
    blocked = world.call(
        "", world.fn(started=started, gate=gate, error=SomeError("Panicking in Do"))
    )
    assert started.wait(10)
    calls = Counter()
    chan = world.call("", world.fn(calls=calls), method="do_chan")
    world.waiting(2)
    gate.cancel()
    assert str(blocked.exception()) == "Panicking in Do"
    assert str(chan.exception()) == "Panicking in Do"
    assert calls.n == 0, "DoChan unexpectedly executed callback"


def test_forget_unshared(world: World) -> None:
    first_started = threading.Event()
    first_finished = threading.Event()
    unblock_first = corral.with_cancel(corral.background())
    unblock_second = corral.with_cancel(corral.background())
    second_started = threading.Event()
    key = "key"

    first = world.call(
        key, world.fn(started=first_started, gate=unblock_first, finished=first_finished)
    )
    assert first_started.wait(10)
    assert world.sf.forget_unshared(key)  # from now on no two calls of key run at once

    second = world.call(key, world.fn(started=second_started, gate=unblock_second, result=2))
    assert second_started.wait(10)
    third_calls = Counter()
    third = world.call(key, world.fn(calls=third_calls), method="do_chan")
    world.waiting(2)

    assert not world.sf.forget_unshared(key), "shared before the first call finished"
    unblock_first.cancel()
    assert first_finished.wait(10)
    first.result()
    assert not world.sf.forget_unshared(key), "still shared after the first call finished"

    unblock_second.cancel()
    assert second.result() == 2
    assert third.result().value == 2, "the third call must get the second call's result"
    assert third_calls.n == 0, "third must not be started"


def test_do_and_forget_unshared_race(world: World, gate: corral.CancelContext) -> None:
    """1,000 callers share one call; each calls forget_unshared as soon as its own call
    returned, racing the others' wake-ups: always True (the key left the table before
    anyone was woken). Go's test retries with longer sleeps until every Do joins one call;
    here the call is held until all have joined."""
    n = 1000 if world.callers == "task" else 200  # a thread per caller otherwise
    calls = Counter()
    fn = world.fn(calls=calls, gate=gate)
    callers = [
        world.call("key", fn, then=lambda _: world.sf.forget_unshared("key")) for _ in range(n)
    ]
    world.waiting(n)
    gate.cancel()
    results = [c.result() for c in callers]
    assert calls.n == 1
    shared = results.count(False)
    assert shared == 0, f"after a single shared call, forget_unshared was False {shared} times"
