"""or_done, tee, fan_in: channels fed by a relay worker whose lifetime the ctx bounds.

Each test ends with every relay finished (the harness checks no task or thread is left):
a relay ends when its input ends, when its ctx is done, or when its consumers have
closed their outputs; it then closes its outputs, which is what the tests wait for.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import corral
import corral.threads

from .helpers import Flavour, relays_running, until


def _chan(flavour: Flavour, capacity: float, items: list[Any], close: bool = True) -> Any:
    """A channel of *the other* flavour, prefilled: relays read either flavour's channels."""
    ch = (corral.threads.Channel if flavour.name == "aio" else corral.Channel)(capacity)
    for x in items:
        ch.send_nowait(x)
    if close:
        ch.close()
    return ch


# -- or_done ----------------------------------------------------------------------------------


async def test_or_done_forwards_until_the_input_ends(flavour: Flavour) -> None:
    with corral.with_cancel(corral.background()) as ctx:
        out = flavour.or_done(ctx, _chan(flavour, 5, [1, 2, 3]))
        assert isinstance(out, flavour.Channel)
        assert await flavour.items(out) == [1, 2, 3]


async def test_or_done_ends_when_ctx_is_done_even_if_the_input_is_idle(flavour: Flavour) -> None:
    idle = _chan(flavour, 0, [], close=False)  # nobody ever sends on it
    ctx = corral.with_cancel(corral.background())
    out = flavour.or_done(ctx, idle)
    await until(lambda: idle.statistics().waiting_receivers == 1, "the relay to wait on input")
    ctx.cancel()
    assert await flavour.items(out) == []  # ends at once, as in Go; ctx.err says why
    await until(lambda: relays_running() == 0, "the relay to end")
    assert idle.statistics().waiting_receivers == 0


async def test_or_done_stops_when_its_consumer_closes_the_output(flavour: Flavour) -> None:
    inp = corral.Channel(0)
    ctx = corral.background()
    out = flavour.or_done(ctx, inp)
    out.close()  # the consumer leaves
    await until(lambda: inp.statistics().waiting_receivers == 1, "the relay to wait on input")
    inp.send_nowait("last")  # the relay takes it, cannot pass it on, and ends
    await until(lambda: relays_running() == 0, "the relay to end")
    with pytest.raises(corral.WouldBlock):
        inp.send_nowait("nobody reads this")


async def test_or_done_raises_the_error_of_an_iterable_input(flavour: Flavour) -> None:
    def items() -> Any:
        yield 1
        yield 2
        raise OSError("disk gone")

    out = flavour.or_done(corral.background(), items(), buffer=1)
    assert await flavour.recv(out) == 1
    assert await flavour.recv(out) == 2
    with pytest.raises(OSError, match="disk gone"):
        await flavour.recv(out)
    # A second receiver at the end gets a copy, chained to the original error.
    with pytest.raises(OSError, match="disk gone") as again:
        await flavour.recv(out)
    assert isinstance(again.value.__cause__, OSError)


async def test_or_done_reads_an_async_iterable() -> None:
    async def agen() -> Any:
        for i in range(4):
            yield i

    out = corral.or_done(corral.background(), agen())
    assert [x async for x in out] == [0, 1, 2, 3]


def test_thread_relays_refuse_async_iterables() -> None:
    async def agen() -> Any:
        yield 1

    gen = agen()
    with pytest.raises(TypeError, match="channel must be corral Channels or iterables"):
        corral.threads.or_done(corral.background(), gen)
    asyncio.run(gen.aclose())


def test_aio_relays_need_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="call it from a coroutine"):
        corral.or_done(corral.background(), [1, 2])
    with pytest.raises(RuntimeError, match="call it from a coroutine"):
        corral.fan_in([1, 2])


# -- tee --------------------------------------------------------------------------------------


async def test_tee_lockstep_gives_every_output_each_value_before_reading_the_next(
    flavour: Flavour,
) -> None:
    inp = _chan(flavour, 10, list(range(10)))
    a, b = flavour.tee(corral.background(), inp)
    assert await flavour.recv(a) == 0
    # The relay now holds 0 for b, and has not read 1.
    await until(lambda: b.statistics().waiting_senders == 1, "the tee to wait on b")
    assert len(inp) == 9
    with pytest.raises(corral.WouldBlock):
        a.recv_nowait()
    assert await flavour.recv(b) == 0
    got_a: list[int] = []
    got_b: list[int] = []
    for _ in range(9):
        got_a.append(await flavour.recv(a))
        got_b.append(await flavour.recv(b))
    assert got_a == got_b == list(range(1, 10))
    assert await flavour.items(a) == await flavour.items(b) == []


async def test_tee_buffer_policy_lets_a_consumer_run_ahead_by_the_buffer(
    flavour: Flavour,
) -> None:
    inp = _chan(flavour, 20, list(range(20)))
    a, b = flavour.tee(corral.background(), inp, policy="buffer", buffer=3)
    got = [await flavour.recv(a) for _ in range(4)]  # b's buffer holds 0-2, the tee holds 3
    assert got == [0, 1, 2, 3]
    await until(lambda: b.statistics().waiting_senders == 1, "the tee to wait on b")
    with pytest.raises(corral.WouldBlock):
        a.recv_nowait()
    assert len(b) == 3
    rest_b, rest_a = await flavour.drain_together(b, a)
    assert rest_b == list(range(20))
    assert rest_a == list(range(4, 20))


async def test_tee_drop_policy_never_waits_and_counts_what_a_slow_output_lost(
    flavour: Flavour,
) -> None:
    a, b = flavour.tee(corral.background(), range(100), policy="drop", buffer=5)
    await until(lambda: a.closed and b.closed, "the tee to finish without waiting")
    for out in (a, b):  # nobody read: each output kept the newest five
        assert await flavour.items(out) == [95, 96, 97, 98, 99]
        assert out.dropped == 95


async def test_tee_drop_policy_with_a_live_reader_loses_only_what_it_counts(
    flavour: Flavour,
) -> None:
    (a,) = flavour.tee(corral.background(), range(1000), 1, policy="drop", buffer=8)
    got = await flavour.items(a)
    assert len(got) + a.dropped == 1000
    assert got == sorted(got)
    assert got[-1] == 999


async def test_tee_goes_on_without_a_consumer_that_closed_its_output(flavour: Flavour) -> None:
    inp = _chan(flavour, 10, list(range(10)))
    a, b, c = flavour.tee(corral.background(), inp, 3)
    a.close()
    got = [(await flavour.recv(b), await flavour.recv(c)) for _ in range(10)]  # in step
    assert got == [(i, i) for i in range(10)]
    assert await flavour.items(b) == await flavour.items(c) == []


async def test_tee_ends_every_output_when_ctx_is_done(flavour: Flavour) -> None:
    idle = _chan(flavour, 0, [], close=False)
    ctx = corral.with_cancel(corral.background())
    outs = flavour.tee(ctx, idle, 2)
    await until(lambda: idle.statistics().waiting_receivers == 1, "the tee to wait on input")
    ctx.cancel()
    for out in outs:
        assert await flavour.items(out) == []
    await until(lambda: relays_running() == 0, "the relay to end")


async def test_tee_raises_an_input_error_on_every_output(flavour: Flavour) -> None:
    def items() -> Any:
        yield "x"
        raise ValueError("bad input")

    a, b = flavour.tee(corral.background(), items(), policy="buffer", buffer=2)
    for out in (a, b):
        assert await flavour.recv(out) == "x"
        with pytest.raises(ValueError, match="bad input"):
            await flavour.recv(out)


def test_tee_bad_arguments_name_the_argument() -> None:
    bg = corral.background()
    for mod in (corral, corral.threads):
        with pytest.raises(ValueError, match=r"tee: n must be >= 1"):
            mod.tee(bg, [1], 0)
        with pytest.raises(ValueError, match="tee: policy must be one of"):
            mod.tee(bg, [1], policy="newest")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="tee: policy='lockstep' has no buffer"):
            mod.tee(bg, [1], buffer=4)
        with pytest.raises(ValueError, match="tee: buffer must be >= 1"):
            mod.tee(bg, [1], policy="drop", buffer=0)
        with pytest.raises(TypeError, match="tee: ctx must be a corral Context"):
            mod.tee(None, [1])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="tee: channel must be"):
            mod.tee(bg, 5)  # type: ignore[arg-type]


# -- fan_in -----------------------------------------------------------------------------------


async def test_fan_in_merges_inputs_and_ends_when_all_have_ended(flavour: Flavour) -> None:
    merged = flavour.fan_in(
        _chan(flavour, 50, list(range(50))),
        _chan(flavour, 3, [100, 101, 102]),
        range(200, 210),
        buffer=4,
    )
    got = await flavour.items(merged)
    assert sorted(got) == [*range(50), 100, 101, 102, *range(200, 210)]


async def test_fan_in_of_nothing_is_an_ended_channel(flavour: Flavour) -> None:
    assert await flavour.items(flavour.fan_in()) == []


async def test_fan_in_raises_an_input_error_and_stops_the_other_relays(
    flavour: Flavour,
) -> None:
    def broken() -> Any:
        yield 1
        raise ArithmeticError("input 2 failed")

    idle = _chan(flavour, 0, [], close=False)  # would keep its relay forever
    merged = flavour.fan_in(idle, broken())
    with pytest.raises(ArithmeticError, match="input 2 failed"):
        await flavour.items(merged)
    await until(lambda: relays_running() == 0, "every relay to end")
    assert idle.statistics().waiting_receivers == 0


async def test_fan_in_error_comes_after_every_relay_has_stopped() -> None:
    # Go's merge closes its output after wg.Wait(): when the error reaches the consumer, no
    # relay of the merge is still running, even one whose input takes a while to clean up.
    cleaned: list[str] = []

    async def slow_to_stop() -> Any:
        try:
            await asyncio.Event().wait()  # never set: waits until the relay is cancelled
            yield 0
        finally:
            await asyncio.sleep(0)  # clean-up that needs a step of the loop
            cleaned.append("done")

    def broken() -> Any:
        raise ArithmeticError("input 2 failed")
        yield  # a generator

    merged = corral.fan_in(slow_to_stop(), broken())
    with pytest.raises(ArithmeticError, match="input 2 failed"):
        async for _ in merged:
            pass
    assert cleaned == ["done"]
    assert relays_running() == 0


async def test_fan_in_ends_when_ctx_is_done(flavour: Flavour) -> None:
    ctx = corral.with_cancel(corral.background())
    idle = [_chan(flavour, 0, [], close=False) for _ in range(3)]
    merged = flavour.fan_in(*idle, ctx=ctx)
    await until(lambda: all(c.statistics().waiting_receivers == 1 for c in idle))
    ctx.cancel()
    assert await flavour.items(merged) == []
    await until(lambda: relays_running() == 0, "the relays to end")


async def test_fan_in_merges_the_results_of_two_fan_outs() -> None:
    async def square(x: int) -> int:
        return x * x

    def cube(x: int) -> int:
        return x**3

    async with (
        corral.fan_out(square, range(10), workers=2) as squares,
        corral.fan_out(cube, range(10), workers=2) as cubes,
    ):
        got = [x async for x in corral.fan_in(squares, cubes)]
    assert sorted(got) == sorted([x * x for x in range(10)] + [x**3 for x in range(10)])


async def test_fan_in_passes_on_a_fan_out_error() -> None:
    async def boom(x: int) -> int:
        if x == 3:
            raise KeyError("three")
        return x

    async with corral.fan_out(boom, range(10), workers=1) as results:
        merged = corral.fan_in(results, range(5))
        with pytest.raises(KeyError, match="three"):
            async for _ in merged:
                pass


def test_fan_in_bad_arguments_name_the_argument() -> None:
    for mod in (corral, corral.threads):
        with pytest.raises(TypeError, match="fan_in: inputs must be"):
            mod.fan_in(3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="fan_in: ctx must be a corral Context"):
            mod.fan_in([1], ctx="ctx")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="fan_in: buffer must be >= 0"):
            mod.fan_in([1], buffer=-1)
