"""or_done, tee, fan_in: channels fed by relay workers that run for the length of a block.

Each test ends with every relay finished (the harness checks no task or thread is left):
a relay ends when its input ends, when its ctx is done, when its consumers have closed
their outputs, or when its block is left; it then closes its outputs.
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
        relay = flavour.or_done(_chan(flavour, 5, [1, 2, 3]), ctx=ctx)
        assert isinstance(relay, flavour.Relay)
        async with flavour.open(relay) as out:
            assert isinstance(out, flavour.RelayChannel)
            assert await flavour.items(out) == [1, 2, 3]


async def test_or_done_ends_when_ctx_is_done_even_if_the_input_is_idle(flavour: Flavour) -> None:
    idle = _chan(flavour, 0, [], close=False)  # nobody ever sends on it
    ctx = corral.with_cancel(corral.background())
    async with flavour.open(flavour.or_done(idle, ctx=ctx)) as out:
        await until(lambda: idle.statistics().waiting_receivers == 1, "the relay to wait")
        ctx.cancel()
        assert await flavour.items(out) == []  # ends at once, as in Go; ctx.err says why
        await until(lambda: relays_running() == 0, "the relay to end")
    assert idle.statistics().waiting_receivers == 0


async def test_or_done_stops_when_its_consumer_closes_the_output(flavour: Flavour) -> None:
    inp = corral.Channel(0)
    async with flavour.open(flavour.or_done(inp, ctx=corral.background())) as out:
        out.close()  # the consumer leaves
        await until(lambda: inp.statistics().waiting_receivers == 1, "the relay to wait")
        inp.send_nowait("last")  # the relay takes it, cannot pass it on, and ends
        await until(lambda: relays_running() == 0, "the relay to end")
    with pytest.raises(corral.WouldBlock):
        inp.send_nowait("nobody reads this")


async def test_or_done_raises_the_error_of_an_iterable_input(flavour: Flavour) -> None:
    def items() -> Any:
        yield 1
        yield 2
        raise OSError("disk gone")

    async with flavour.open(flavour.or_done(items(), ctx=corral.background(), buffer=1)) as out:
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

    async with corral.or_done(agen(), ctx=corral.background()) as out:
        assert [x async for x in out] == [0, 1, 2, 3]


def test_thread_relays_refuse_async_iterables() -> None:
    async def agen() -> Any:
        yield 1

    gen = agen()
    with pytest.raises(TypeError, match="channel must be corral Channels or iterables"):
        corral.threads.or_done(gen, ctx=corral.background())
    asyncio.run(gen.aclose())


def test_relays_refuse_the_old_positional_ctx_and_the_old_call_form() -> None:
    bg = corral.background()
    for mod in (corral, corral.threads):
        with pytest.raises(TypeError, match=r"or_done\(\) takes 1 positional argument"):
            mod.or_done(bg, [1])  # type: ignore[call-arg, misc]
        with pytest.raises(TypeError, match=r"tee: ctx is keyword-only"):
            mod.tee(bg, [1])
        with pytest.raises(TypeError, match=rf"use `(async )?with {mod.__name__}.tee"):
            _a, _b = mod.tee([1])  # type: ignore[misc]


# -- tee --------------------------------------------------------------------------------------


async def test_tee_lockstep_gives_every_output_each_value_before_reading_the_next(
    flavour: Flavour,
) -> None:
    inp = _chan(flavour, 10, list(range(10)))
    async with flavour.open(flavour.tee(inp)) as (a, b):
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
    async with flavour.open(flavour.tee(inp, policy="buffer", buffer=3)) as (a, b):
        got = [await flavour.recv(a) for _ in range(4)]  # b's buffer holds 0-2, the tee 3
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
    async with flavour.open(flavour.tee(range(100), policy="drop", buffer=5)) as (a, b):
        await until(lambda: a.closed and b.closed, "the tee to finish without waiting")
        for out in (a, b):  # nobody read: each output kept the newest five
            assert await flavour.items(out) == [95, 96, 97, 98, 99]
            assert out.dropped == 95


async def test_tee_drop_policy_with_a_live_reader_loses_only_what_it_counts(
    flavour: Flavour,
) -> None:
    async with flavour.open(flavour.tee(range(1000), 1, policy="drop", buffer=8)) as (a,):
        got = await flavour.items(a)
    assert len(got) + a.dropped == 1000
    assert got == sorted(got)
    assert got[-1] == 999


async def test_tee_goes_on_without_a_consumer_that_closed_its_output(flavour: Flavour) -> None:
    inp = _chan(flavour, 10, list(range(10)))
    async with flavour.open(flavour.tee(inp, 3)) as (a, b, c):
        a.close()
        got = [(await flavour.recv(b), await flavour.recv(c)) for _ in range(10)]  # in step
        assert got == [(i, i) for i in range(10)]
        assert await flavour.items(b) == await flavour.items(c) == []


async def test_tee_ends_every_output_when_ctx_is_done(flavour: Flavour) -> None:
    idle = _chan(flavour, 0, [], close=False)
    ctx = corral.with_cancel(corral.background())
    async with flavour.open(flavour.tee(idle, 2, ctx=ctx)) as outs:
        await until(lambda: idle.statistics().waiting_receivers == 1, "the tee to wait")
        ctx.cancel()
        for out in outs:
            assert await flavour.items(out) == []
        await until(lambda: relays_running() == 0, "the relay to end")


async def test_tee_raises_an_input_error_on_every_output(flavour: Flavour) -> None:
    def items() -> Any:
        yield "x"
        raise ValueError("bad input")

    async with flavour.open(flavour.tee(items(), policy="buffer", buffer=2)) as (a, b):
        for out in (a, b):
            assert await flavour.recv(out) == "x"
            with pytest.raises(ValueError, match="bad input"):
                await flavour.recv(out)


def test_tee_bad_arguments_name_the_argument() -> None:
    for mod in (corral, corral.threads):
        with pytest.raises(ValueError, match=r"tee: n must be >= 1"):
            mod.tee([1], 0)
        with pytest.raises(ValueError, match="tee: policy must be one of"):
            mod.tee([1], policy="newest")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="tee: policy='lockstep' has no buffer"):
            mod.tee([1], buffer=4)
        with pytest.raises(ValueError, match="tee: buffer must be >= 1"):
            mod.tee([1], policy="drop", buffer=0)
        with pytest.raises(TypeError, match="tee: ctx must be a corral Context"):
            mod.tee([1], ctx="ctx")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="tee: channel must be"):
            mod.tee(5)  # type: ignore[arg-type]


# -- fan_in -----------------------------------------------------------------------------------


async def test_fan_in_merges_inputs_and_ends_when_all_have_ended(flavour: Flavour) -> None:
    relay = flavour.fan_in(
        _chan(flavour, 50, list(range(50))),
        _chan(flavour, 3, [100, 101, 102]),
        range(200, 210),
        buffer=4,
    )
    async with flavour.open(relay) as merged:
        got = await flavour.items(merged)
    assert sorted(got) == [*range(50), 100, 101, 102, *range(200, 210)]


async def test_fan_in_of_nothing_is_an_ended_channel(flavour: Flavour) -> None:
    async with flavour.open(flavour.fan_in()) as merged:
        assert await flavour.items(merged) == []


async def test_fan_in_raises_an_input_error_and_stops_the_other_relays(
    flavour: Flavour,
) -> None:
    def broken() -> Any:
        yield 1
        raise ArithmeticError("input 2 failed")

    idle = _chan(flavour, 0, [], close=False)  # would keep its relay forever
    with pytest.raises(ArithmeticError, match="input 2 failed"):
        async with flavour.open(flavour.fan_in(idle, broken())) as merged:
            await flavour.items(merged)
    assert relays_running() == 0
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

    async with corral.fan_in(slow_to_stop(), broken()) as merged:
        with pytest.raises(ArithmeticError, match="input 2 failed"):
            async for _ in merged:
                pass
        assert cleaned == ["done"]
        assert relays_running() == 0


async def test_fan_in_ends_when_ctx_is_done(flavour: Flavour) -> None:
    ctx = corral.with_cancel(corral.background())
    idle = [_chan(flavour, 0, [], close=False) for _ in range(3)]
    async with flavour.open(flavour.fan_in(*idle, ctx=ctx)) as merged:
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
        corral.fan_in(squares, cubes) as merged,
    ):
        got = [x async for x in merged]
    assert sorted(got) == sorted([x * x for x in range(10)] + [x**3 for x in range(10)])


async def test_fan_in_passes_on_a_fan_out_error() -> None:
    async def boom(x: int) -> int:
        if x == 3:
            raise KeyError("three")
        return x

    with pytest.raises(KeyError, match="three"):
        async with (
            corral.fan_out(boom, range(10), workers=1) as results,
            corral.fan_in(results, range(5)) as merged,
        ):
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


# -- one lifecycle: nothing outlives the block --------------------------------------------------


def _relays(flavour: Flavour, idle: Any) -> list[Any]:
    """One of each relay, each on an input that never ends."""
    return [
        flavour.or_done(idle, ctx=corral.background()),
        flavour.tee(idle, 2),
        flavour.fan_in(idle, range(3)),
    ]


async def test_leaving_the_block_stops_every_relay_on_an_idle_input(flavour: Flavour) -> None:
    idle = _chan(flavour, 0, [], close=False)
    for relay in _relays(flavour, idle):
        async with flavour.open(relay):
            await until(lambda: idle.statistics().waiting_receivers == 1, "the relay to wait")
        # Left early, with the relay parked on its input: it stopped, and was waited for.
        assert relays_running() == 0
        assert idle.statistics().waiting_receivers == 0


async def test_leaving_the_block_early_stops_a_relay_feeding_a_slow_consumer(
    flavour: Flavour,
) -> None:
    async with flavour.open(flavour.tee(range(10**9), 2)) as (a, _b):
        assert await flavour.recv(a) == 0  # the relay now waits on b, which nobody reads
    assert relays_running() == 0
    assert a.closed


async def test_an_input_error_nobody_received_reaches_the_block(flavour: Flavour) -> None:
    def items() -> Any:
        yield 1
        raise LookupError("lost line")

    for make in (
        lambda: flavour.or_done(items(), ctx=corral.background(), buffer=4),
        lambda: flavour.tee(items(), 1, policy="buffer", buffer=4),
        lambda: flavour.fan_in(items(), buffer=4),
    ):
        with pytest.raises(LookupError, match="lost line"):
            async with flavour.open(make()) as out:
                await until(lambda: (out[0] if isinstance(out, tuple) else out).closed)
        assert relays_running() == 0


async def test_an_error_a_receiver_handled_is_not_raised_again(flavour: Flavour) -> None:
    def items() -> Any:
        raise LookupError("handled")
        yield

    async with flavour.open(flavour.or_done(items(), ctx=corral.background())) as out:
        with pytest.raises(LookupError, match="handled"):
            await flavour.recv(out)  # the consumer got it and chose to go on


async def test_a_relay_block_is_entered_once(flavour: Flavour) -> None:
    relay = flavour.fan_in(range(2))
    async with flavour.open(relay) as merged:
        assert sorted(await flavour.items(merged)) == [0, 1]
    with pytest.raises(RuntimeError, match="fan_in: enter it once"):
        async with flavour.open(relay):
            pass
