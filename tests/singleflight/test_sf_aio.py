"""asyncio-native SingleFlight tests: written as a user would, in one event loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import corral
import corral.threads

pytestmark = pytest.mark.timeout(30)


class LoadError(Exception):
    pass


async def test_leader_timing_out_does_not_touch_followers() -> None:
    """The PyPI port (singleflight 0.1.3) returns None to followers and poisons the key
    when the leader is cancelled; aiomemoizeconcurrent cascades the cancellation."""
    sf: corral.SingleFlight[str, str] = corral.SingleFlight()
    release = asyncio.Event()
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "user"

    deadline: list[asyncio.Timeout] = []

    async def leader() -> str:
        async with asyncio.timeout(None) as cm:
            deadline.append(cm)
            return await sf.do("k", load)

    lead = asyncio.create_task(leader())
    await asyncio.sleep(0)
    followers = [asyncio.create_task(sf.do("k", load)) for _ in range(3)]
    await asyncio.sleep(0)
    assert sf.statistics().waiters == 4
    deadline[0].reschedule(asyncio.get_running_loop().time())  # the leader times out
    with pytest.raises(TimeoutError):
        await lead
    assert sf.statistics().waiters == 3
    release.set()
    assert await asyncio.gather(*followers) == ["user"] * 3
    assert calls == 1
    assert sf.statistics().in_flight == 0


async def test_every_waiter_gone_cancels_the_task_and_a_new_caller_starts_fresh() -> None:
    sf: corral.SingleFlight[str, int] = corral.SingleFlight()
    flight_cancelled = asyncio.Event()
    ended = asyncio.Event()
    n = 0

    async def load() -> int:
        nonlocal n
        n += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            flight_cancelled.set()
            raise
        finally:
            ended.set()
        return n

    callers = [asyncio.create_task(sf.do("k", load)) for _ in range(2)]
    await asyncio.sleep(0)
    for c in callers:
        c.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    await flight_cancelled.wait()
    await ended.wait()
    await asyncio.sleep(0)  # let the flight task finish its last step

    async def quick() -> int:
        return 99

    assert await sf.do("k", quick) == 99


async def test_fn_cancelling_itself_reaches_callers_as_cancelled() -> None:
    """Go's Goexit: the call ended without a result. Callers get corral.Cancelled (a
    CancelledError would look like their own cancellation)."""
    sf: corral.SingleFlight[str, None] = corral.SingleFlight()

    async def gives_up() -> None:
        raise asyncio.CancelledError

    results = await asyncio.gather(
        *(sf.do("k", gives_up) for _ in range(3)), return_exceptions=True
    )
    assert all(type(r) is corral.Cancelled for r in results)
    assert all(isinstance(r.__cause__, asyncio.CancelledError) for r in results)


async def test_do_chan_is_a_channel_received_later() -> None:
    sf: corral.SingleFlight[str, int] = corral.SingleFlight()
    release = asyncio.Event()

    async def load(x: int) -> int:
        await release.wait()
        return x * 2

    ch = sf.do_chan("k", load, 21)
    other = sf.do_chan("k", load, 0)  # joins: its function never runs
    assert isinstance(ch, corral.Channel)
    assert ch.capacity == 1
    with pytest.raises(corral.WouldBlock):
        ch.recv_nowait()
    release.set()
    assert await ch.recv() == corral.FlightResult(42, True)
    assert (await other.recv()).value == 42
    assert ch.closed
    assert [x async for x in ch] == []  # one result, then closed


async def test_do_chan_in_select_beside_a_timeout_and_another_channel() -> None:
    sf: corral.SingleFlight[str, int] = corral.SingleFlight()
    release = asyncio.Event()

    async def load() -> int:
        await release.wait()
        return 7

    ch = sf.do_chan("k", load)
    with pytest.raises(corral.DeadlineExceeded):
        await corral.select(ch.recv_case(), timeout=0.01)
    stop: corral.Channel[str] = corral.Channel(1)
    await stop.send("stop")
    s = await corral.select(ch.recv_case(), stop.recv_case())
    assert (s.index, s.value) == (1, "stop")
    release.set()
    s = await corral.select(ch.recv_case(), stop.recv_case(), timeout=10)
    assert (s.index, s.value, s.ok) == (0, corral.FlightResult(7, False), True)


async def test_do_chan_error_closes_the_channel_with_a_copy() -> None:
    sf: corral.SingleFlight[str, int] = corral.SingleFlight()

    async def fail() -> int:
        raise LoadError("nope")

    ch = sf.do_chan("k", fail)
    s = await corral.select(ch.recv_case(), timeout=10)
    assert not s.ok  # select sees the end ...
    with pytest.raises(LoadError, match="nope"):
        await ch.recv()  # ... and receiving says why


async def test_plain_fn_runs_in_a_thread_and_sees_its_context() -> None:
    sf: corral.SingleFlight[str, str] = corral.SingleFlight()
    in_thread = threading.Event()
    saw_cancel: list[bool] = []
    done = threading.Event()

    def blocking() -> str:
        try:
            in_thread.set()
            ctx = corral.SingleFlight.current_context()
            saw_cancel.append(ctx.wait_blocking(10))
            ctx.raise_if_cancelled()
            return "unreachable"
        finally:
            done.set()

    caller = asyncio.create_task(sf.do("k", blocking))
    await asyncio.to_thread(in_thread.wait)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.to_thread(done.wait)
    assert saw_cancel == [True]


async def test_sync_fn_error_raised_at_call_time() -> None:
    sf: corral.SingleFlight[str, int] = corral.SingleFlight()

    async def needs_arg(x: int) -> int:
        return x

    with pytest.raises(TypeError):
        await sf.do("k", needs_arg)  # type: ignore[call-overload]
    assert sf.statistics().in_flight == 0


async def test_bad_arguments() -> None:
    sf: corral.SingleFlight[Any, Any] = corral.SingleFlight()

    async def f() -> int:
        return 1

    with pytest.raises(TypeError, match="key must be hashable"):
        await sf.do(["unhashable"], f)
    with pytest.raises(TypeError, match="fn must be callable"):
        await sf.do("k", 3)
    coro = f()
    with pytest.raises(TypeError, match="not a coroutine object"):
        await sf.do("k", coro)  # closed for us: no "never awaited" warning
    with pytest.raises(ValueError, match="timeout"):
        await sf.do("k", f, timeout=-1)
    with pytest.raises(TypeError, match="ctx"):
        await sf.do("k", f, ctx="nope")
    with pytest.raises(TypeError, match="ctx"):
        corral.SingleFlight(ctx=1)  # type: ignore[arg-type]
    done = corral.with_cancel(corral.background())
    done.cancel()
    with pytest.raises(corral.Cancelled):
        await sf.do("k", f, ctx=done)
    assert sf.statistics().in_flight == 0


async def test_views_share_one_table() -> None:
    sf: corral.SingleFlight[str, int] = corral.SingleFlight()
    tsf = sf.as_threads()
    assert tsf.as_async() is sf
    release = threading.Event()
    calls = 0

    def load() -> int:
        nonlocal calls
        calls += 1
        release.wait(10)
        return 5

    task = asyncio.create_task(sf.do("k", load))
    await asyncio.sleep(0)
    from_thread = asyncio.create_task(asyncio.to_thread(tsf.do, "k", load))
    while sf.statistics().waiters < 2:
        await asyncio.sleep(0.001)
    release.set()
    assert await task == 5
    assert await from_thread == 5
    assert calls == 1
    assert "corral.SingleFlight" in repr(sf)
    assert "corral.threads.SingleFlight" in repr(tsf)


# --- the decorator ------------------------------------------------------------------------------


async def test_decorator_on_an_async_function() -> None:
    sf: corral.SingleFlight[Any, Any] = corral.SingleFlight()
    calls: list[int] = []
    release = asyncio.Event()

    @sf.deduplicate
    async def get_user(user_id: int) -> dict[str, int]:
        calls.append(user_id)
        await release.wait()
        return {"id": user_id}

    assert get_user.__name__ == "get_user"
    tasks = [asyncio.create_task(get_user(i % 2)) for i in range(6)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks)
    assert results == [{"id": i % 2} for i in range(6)]
    assert sorted(calls) == [0, 1]


async def test_decorator_with_a_key_and_forget() -> None:
    sf: corral.SingleFlight[Any, Any] = corral.SingleFlight()
    release = asyncio.Event()
    calls = 0

    @sf.deduplicate(key=lambda user_id, *, fresh=False: user_id)
    async def get_user(user_id: int, *, fresh: bool = False) -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    a = asyncio.create_task(get_user(1))
    b = asyncio.create_task(get_user(1, fresh=True))  # same key: joins a
    await asyncio.sleep(0)
    get_user.forget(1)
    c = asyncio.create_task(get_user(1))  # forgotten: a new call
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(a, b, c) == [2, 2, 2]  # each returns calls when released
    assert calls == 2


async def test_decorator_rejects_unhashable_arguments() -> None:
    sf: corral.SingleFlight[Any, Any] = corral.SingleFlight()

    @sf.deduplicate
    async def total(xs: list[int]) -> int:
        return sum(xs)

    with pytest.raises(TypeError, match="not hashable; pass key="):
        await total([1, 2])

    with pytest.raises(TypeError, match="key must be callable"):
        sf.deduplicate(key=3)  # type: ignore[arg-type]


def test_decorator_on_a_plain_function_blocks() -> None:
    sf = corral.threads.SingleFlight[Any, Any]()
    release = threading.Event()
    calls: list[str] = []

    @sf.deduplicate
    def load(name: str) -> str:
        calls.append(name)
        release.wait(10)
        return name.upper()

    out: list[str] = []
    threads = [threading.Thread(target=lambda: out.append(load("ann"))) for _ in range(4)]
    for t in threads:
        t.start()
    while sf.statistics().waiters < 4:
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join()
    assert out == ["ANN"] * 4
    assert calls == ["ann"]
    assert load.singleflight is sf


def test_functions_sharing_a_singleflight_do_not_share_keys() -> None:
    sf = corral.threads.SingleFlight[Any, Any]()

    @sf.deduplicate
    def a(x: int) -> str:
        return f"a{x}"

    @sf.deduplicate
    def b(x: int) -> str:
        return f"b{x}"

    assert (a(1), b(1)) == ("a1", "b1")
