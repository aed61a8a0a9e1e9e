"""The channel's inlined copies against the rules they copy, on generated sequences.

* ``corral.Channel.send`` / ``recv`` / ``__anext__`` inline ``ChannelState.send`` /
  ``recv`` and, for a plain wait, ``corral._aio.wait.park``. The reference below is the
  plain composition of the originals (``ChannelState.send(item, new_waiter)`` then
  ``await park(w, timeout, None)``). Each generated sequence (sends, receives, ``async
  for`` steps, closes, task cancellations, also racing a completion, and ``timeout=0``
  waits) runs once per implementation, each in its own event loop, and the traces must be
  equal: every operation's outcome (result, error, cancellation, an owed cancellation
  re-delivered after a completed operation) and the channel's state after every step
  (buffer contents, statistics, the items of queued senders).
* ``ChannelState.send`` / ``recv`` inline the buffered case of ``send_locked`` /
  ``recv_locked``: the same sequences against ``send_or_park_locked`` /
  ``recv_or_park_locked`` called under the lock.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

import corral
from corral._aio.channel import new_waiter
from corral._aio.wait import owed, park, pay_owed
from corral._core.channel import CLOSED, EMPTY, ChannelState
from corral._core.waiter import AsyncWaiter, ThreadWaiter

pytestmark = pytest.mark.timeout(120)

SEQUENCES = 150
STEPS = 40


class Copy:
    """corral.Channel: the inlined copies."""

    def __init__(self, cap: int) -> None:
        self.ch: corral.Channel[int] = corral.Channel(cap)
        self.st = self.ch._st

    def send(self, item: int, timeout: float | None) -> Any:
        return self.ch.send(item, timeout=timeout)

    def recv(self, timeout: float | None) -> Any:
        return self.ch.recv(timeout=timeout)

    def anext(self) -> Any:
        return self.ch.__anext__()


class Original:
    """The same operations composed from the originals, nothing inlined."""

    def __init__(self, cap: int) -> None:
        self.ch: corral.Channel[int] = corral.Channel(cap)
        self.st = self.ch._st

    async def send(self, item: int, timeout: float | None) -> None:
        if owed:
            pay_owed()
        w = self.st.send(item, new_waiter)
        if w is not None:
            assert isinstance(w, AsyncWaiter)
            await park(w, timeout, None)
            if w.value is CLOSED:
                raise corral.ChannelClosed("channel closed while the send was waiting")

    async def recv(self, timeout: float | None) -> Any:
        if owed:
            pay_owed()
        r = self.st.recv(new_waiter)
        if isinstance(r, AsyncWaiter):
            await park(r, timeout, None)
            r = r.value
        if r is CLOSED:
            raise corral.EndOfChannel("channel is closed and drained")
        return r

    async def anext(self) -> Any:
        try:
            return await self.recv(None)
        except corral.EndOfChannel:
            raise StopAsyncIteration from None


def _state(st: ChannelState[Any]) -> tuple[Any, ...]:
    s = st.statistics()
    senders = [e.item for e in st.sendq if not e.waiter.done]
    return (list(st.buf), s.buffered, s.waiting_senders, s.waiting_receivers, s.closed, senders)


def _ops(seed: int) -> tuple[int, list[tuple[Any, ...]]]:
    rng = random.Random(seed)
    cap = rng.choice([0, 0, 1, 2, 4])
    ops: list[tuple[Any, ...]] = []
    for i in range(STEPS):
        k = rng.random()
        if k < 0.28:
            ops.append(("send", i, rng.choice([None, None, None, 0.0])))
        elif k < 0.50:
            ops.append(("recv", rng.choice([None, None, None, 0.0])))
        elif k < 0.62:
            ops.append(("anext",))
        elif k < 0.80:
            ops.append(("cancel", rng.randrange(1 << 16)))
        elif k < 0.97:
            ops.append(("step", rng.randint(1, 3)))
        else:
            ops.append(("close",))
    return cap, ops


async def _drive(impl: Callable[[int], Any], cap: int, ops: list[tuple[Any, ...]]) -> list[Any]:
    ch = impl(cap)
    trace: list[Any] = []
    tasks: list[asyncio.Task[None]] = []

    async def run(i: int, start: Callable[[], Any]) -> None:
        try:
            r = await start()
        except asyncio.CancelledError:
            trace.append((i, "cancelled"))
            return
        except (Exception, StopAsyncIteration) as e:
            trace.append((i, type(e).__name__))
            return
        trace.append((i, "ok", r))
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            trace.append((i, "cancellation re-delivered"))

    for n, op in enumerate(ops):
        kind = op[0]
        if kind == "send":
            _, item, timeout = op
            tasks.append(asyncio.create_task(run(n, lambda it=item, t=timeout: ch.send(it, t))))
        elif kind == "recv":
            tasks.append(asyncio.create_task(run(n, lambda t=op[1]: ch.recv(t))))
        elif kind == "anext":
            tasks.append(asyncio.create_task(run(n, ch.anext)))
        elif kind == "cancel":
            live = [t for t in tasks if not t.done()]
            if live:
                live[op[1] % len(live)].cancel()
        elif kind == "step":
            for _ in range(op[1]):
                await asyncio.sleep(0)
        else:
            ch.ch.close()
        trace.append((n, _state(ch.st)))
    ch.ch.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    trace.append(("end", _state(ch.st)))
    return trace


@pytest.mark.parametrize("block", range(3))
def test_the_asyncio_channel_matches_the_original_rules(block: int) -> None:
    for seed in range(block * SEQUENCES, (block + 1) * SEQUENCES):
        cap, ops = _ops(seed)
        copy = asyncio.run(_drive(Copy, cap, ops))
        original = asyncio.run(_drive(Original, cap, ops))
        assert copy == original, f"seed {seed}: capacity {cap}, ops {ops}"


def _state_ops(
    st: ChannelState[Any], op: tuple[Any, ...], fast: bool, parked: list[ThreadWaiter]
) -> Any:
    kind = op[0]

    def make() -> ThreadWaiter:
        w = ThreadWaiter()
        parked.append(w)
        return w

    try:
        if kind == "send":
            if fast:
                r = st.send(op[1], make)
            else:
                with st.lock:
                    r = st.send_or_park_locked(op[1], make)
            return "parked" if r is not None else None
        if kind == "recv":
            if fast:
                r = st.recv(make)
            else:
                with st.lock:
                    r = st.recv_or_park_locked(make)
            return "parked" if isinstance(r, ThreadWaiter) else r
        if kind == "abort":
            live = [w for w in parked if not w.done]
            if live:
                w = live[op[1] % len(live)]
                w.abort(corral.Cancelled(), wake=False)
                w.unlink()
            return None
        st.close()
        return None
    except corral.ChannelClosed:
        return "ChannelClosed"


def test_the_state_fast_paths_match_the_locked_rules() -> None:
    for seed in range(400):
        rng = random.Random(seed)
        cap = rng.choice([0, 1, 2, 3])
        ops: list[tuple[Any, ...]] = []
        for i in range(STEPS):
            k = rng.random()
            if k < 0.45:
                ops.append(("send", i))
            elif k < 0.85:
                ops.append(("recv",))
            elif k < 0.97:
                ops.append(("abort", rng.randrange(1 << 16)))
            else:
                ops.append(("close",))
        traces = []
        for fast in (True, False):
            st: ChannelState[int] = ChannelState(cap)
            parked: list[ThreadWaiter] = []
            trace = []
            for op in ops:
                r = _state_ops(st, op, fast, parked)
                trace.append((r if r is not EMPTY else "EMPTY", _state(st)))
            trace.append([(w.done, w.value if w.value is not CLOSED else "CLOSED") for w in parked])
            traces.append(trace)
        assert traces[0] == traces[1], f"seed {seed}: capacity {cap}, ops {ops}"
