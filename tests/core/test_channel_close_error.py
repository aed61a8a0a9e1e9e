"""``ch.close(error=exc)``: receivers get the buffered items, then ``exc`` (one rule, in
``ChannelState``, shared with the relays' RelayChannel and ``SingleFlight.do_chan``)."""

from __future__ import annotations

import pytest

import corral
import corral.threads


async def test_aio_receivers_get_the_buffer_then_the_error() -> None:
    ch: corral.Channel[int] = corral.Channel(3)
    for i in range(2):
        await ch.send(i)
    assert ch.close(error=OSError("producer failed"))
    assert not ch.close(error=ValueError("too late"))  # closed already: no effect
    assert await ch.recv() == 0
    assert ch.recv_nowait() == 1
    with pytest.raises(OSError, match="producer failed") as first:
        await ch.recv()
    with pytest.raises(OSError, match="producer failed") as again:
        ch.recv_nowait()
    assert again.value.__cause__ is first.value  # a copy, chained to the original


async def test_aio_iteration_raises_the_error_instead_of_ending() -> None:
    ch: corral.Channel[str] = corral.Channel(1)
    await ch.send("a")
    ch.close(OSError("bad"))
    got = []
    with pytest.raises(OSError, match="bad"):
        async for x in ch:
            got.append(x)  # noqa: PERF401 - keep what came before the error
    assert got == ["a"]


def test_thread_receivers_and_the_other_flavours_view_get_the_error() -> None:
    ch: corral.threads.Channel[int] = corral.threads.Channel(2)
    ch.send(7)
    ch.close(error=KeyError("k"))
    got = []
    with pytest.raises(KeyError):
        for x in ch:
            got.append(x)  # noqa: PERF402 - keep what came before the error
    assert got == [7]
    with pytest.raises(KeyError):
        ch.as_async().recv_nowait()  # the failure lives in the shared state


async def test_a_waiting_receiver_gets_the_error_and_select_sees_the_end() -> None:
    ch: corral.Channel[int] = corral.Channel()
    other: corral.Channel[int] = corral.Channel()

    async def close_later() -> None:
        ch.close(error=RuntimeError("stopped"))

    async with corral.Group() as g:
        await g.go(close_later)
        s = await corral.select(ch.recv_case(), other.recv_case())
    assert (s.index, s.ok) == (0, False)  # select sees the end, as for a plain close ...
    with pytest.raises(RuntimeError, match="stopped"):
        await ch.recv()  # ... and receiving says why


def test_close_error_must_be_an_exception() -> None:
    for ch in (corral.Channel(0), corral.threads.Channel(0)):
        with pytest.raises(TypeError, match=r"Channel.close: error must be an exception"):
            ch.close(error="bad")  # type: ignore[arg-type]
        assert not ch.closed
