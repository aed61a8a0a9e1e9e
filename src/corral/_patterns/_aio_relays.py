"""The asyncio flavour's relays: ``or_done``, ``tee``, ``fan_in``, their RelayChannel and Relay.

Each returns a :class:`Relay`, a context manager: entering it starts one relay worker per
input that moves items into :class:`RelayChannel` outputs until the ctx is done, an input
ends, or every consumer has left; leaving it stops them and waits for them (one lifecycle
with ``fan_out`` and ``pipeline``: nothing detached).

``_threads_relays.py`` is generated from ``_aio_relays.py`` by ``scripts/unasync_patterns.py``
(coroutines become functions, awaits go, ``_rt_aio`` becomes ``_rt_threads``, ``_aio_*``
modules become ``_threads_*``, ...): edit the ``_aio_*`` files only, with constructs the
rewrite understands, and put what truly differs between the flavours in ``_rt_aio`` /
``_rt_threads``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from typing import Any, Generic, Literal, TypeVar

from .._core.channel import CLOSED, ChannelState
from .._core.context import CancelContext, Context, background, check_ctx_arg, with_cancel
from .._errors import ChannelClosed
from .._shells import ChannelBase
from . import _rt_aio as rt
from ._aio_workers import InputEnded, Pull, is_failure
from ._plan import check_int
from ._stage_run import offer_dropping

__all__ = ["Relay", "RelayChannel", "fan_in", "or_done", "tee"]

T = TypeVar("T")
R = TypeVar("R")

# -- or_done, tee, fan_in: channels fed by a relay worker ---------------------------------


class RelayChannel(rt.Channel[T]):
    """A corral Channel fed by a relay worker (``or_done``, ``tee``, ``fan_in``).

    A plain channel with three additions: once the relay's ctx is done, receiving ends at
    once (what is still buffered is dropped, as Go's ``select`` may pick ``ctx.Done()``);
    when the worker stops because an input *raised*, receivers get that error once the
    buffered items are drained (instead of a normal end); and ``dropped`` counts the items
    a ``tee(policy="drop")`` dropped for this output. Closing it tells the worker this
    consumer has left. (``select`` on it sees a plain channel.) Leaving the :class:`Relay`
    block closes it.

    >>> import asyncio, corral
    >>> async def main():
    ...     async with corral.or_done(["a", "b"], ctx=corral.background()) as out:
    ...         return [x async for x in out], out.dropped, out.closed
    >>> asyncio.run(main())
    (['a', 'b'], 0, True)
    """

    __slots__ = ("_ctx", "_dropped")

    def __init__(self, capacity: float = 0, *, ctx: Context | None = None) -> None:
        super().__init__(capacity)
        self._ctx = ctx
        self._dropped = 0

    @property
    def dropped(self) -> int:
        """How many items were dropped for this output because it was full (tee "drop")."""
        return self._dropped

    def _ctx_done(self) -> bool:
        ctx = self._ctx
        return ctx is not None and ctx.err is not None

    async def recv(self, *, timeout: float | None = None, ctx: Context | None = None) -> T:
        """The next item, as :meth:`Channel.recv`; ends at once when the relay's ctx is done,
        and raises an input's error once the buffer is drained."""
        if not self._ctx_done():
            return await super().recv(timeout=timeout, ctx=ctx)
        raise self._st.ended("the relay's ctx is done")

    def __aiter__(self) -> RelayChannel[T]:
        return self

    async def __anext__(self) -> T:
        if rt.owed:
            rt.pay_owed()
        st = self._st
        if self._ctx_done():
            r: Any = CLOSED
        else:
            r = st.recv(rt.new_waiter)
            if r.__class__ is rt.Waiter:
                await rt.park(r, None, None)
                r = r.value
        if r is CLOSED:
            if st.failure is not None:
                raise st.ended()
            raise StopAsyncIteration
        return r  # type: ignore[no-any-return]


class Relay(Generic[R]):
    """What :func:`or_done`, :func:`tee` and :func:`fan_in` return: a context manager that
    runs their relay workers for the length of a block (trio's ``as_safe_channel``).

    Entering starts the relays and gives their output (one :class:`RelayChannel`, or
    ``tee``'s tuple of them). Leaving stops them and waits until they have stopped, so
    nothing outlives the block (as :class:`Flow`): the outputs are closed, what they still
    buffer can be read, and an input's error that no receiver got is raised at the block's
    end (a receiver that reads to the error gets it as before, and it leaves the block).
    Enter it once.

    >>> import asyncio, corral
    >>> async def main():
    ...     async with corral.fan_in(range(2), range(10, 12)) as merged:
    ...         return sorted([x async for x in merged])
    >>> asyncio.run(main())
    [0, 1, 10, 11]
    """

    __slots__ = ("_args", "_body", "_ctx", "_outs", "_run", "_value", "_what")

    def __init__(
        self,
        what: str,
        *,
        ctx: Context,
        outs: tuple[RelayChannel[Any], ...],
        value: R,
        body: Callable[..., Any],
        args: list[tuple[Any, ...]],
    ) -> None:
        self._what = what
        self._ctx = ctx
        self._outs = outs
        self._value = value
        self._body = body
        self._args = args
        self._run: _Run | None = None

    def __iter__(self) -> Iterator[Any]:
        # `a, b = tee(...)` or `for x in or_done(...)`: the 0.1 call form, now a block.
        raise TypeError(
            f"{self._what} returns a context manager, not a channel: "
            f"use `async with {rt.PUBLIC}.{self._what}(...) as out:`"
        )

    async def __aenter__(self) -> R:
        if self._run is not None:
            raise RuntimeError(f"{self._what}: enter it once (it was entered already)")
        inner = with_cancel(self._ctx)
        self._run = run = _Run(inner, len(self._args), self._outs)
        for i, args in enumerate(self._args):
            try:
                run.handles.append(rt.spawn(self._body, (inner, run, *args), self._what))
            except BaseException:  # no relay could start (ThreadStartError): undo the others
                inner.cancel()  # the relays started stop at their next step
                for _ in self._args[i:]:
                    run.exit()  # and the ones never started are counted out
                await rt.wait_closed(run.done)
                await rt.reap(run.handles)
                raise
        if not self._args:
            run.done.close()
            for o in self._outs:
                o.close()
        return self._value

    async def __aexit__(self, et: object, exc: BaseException | None, tb: object) -> None:
        run = self._run
        assert run is not None
        run.ctx.cancel()  # the relays stop at their next step ...
        for o in self._outs:
            o.close()  # ... and the consumers have left
        await rt.wait_closed(run.done)  # waits even if cancelled meanwhile (then re-raises)
        await rt.reap(run.handles)
        err = self._outs[0]._st.failure if self._outs else None
        if err is not None and exc is None and not any(o._st.failure_raised for o in self._outs):
            raise err  # no receiver got it: the block does


class _Run:
    """The relays of one :class:`Relay` block: their ctx and how many are still running.

    The outputs close only when the last relay has exited, also after a failure (Go's
    merge closes its channel after ``wg.Wait()``): a consumer that gets the error, or the
    end, has no relay of this block still running behind it. A failure cancels the other
    relays at once, so they exit at their next step.
    """

    __slots__ = ("ctx", "done", "handles", "live", "lock", "outs")

    def __init__(self, ctx: CancelContext, live: int, outs: tuple[RelayChannel[Any], ...]) -> None:
        self.ctx = ctx
        self.live = live
        self.lock = threading.Lock()
        self.outs = outs
        self.done: ChannelState[None] = ChannelState(0)  # closed when the last relay exits
        self.handles: list[Any] = []

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            first = self.outs[0]._st.failure is None
            if first:
                for o in self.outs:
                    o._st.fail(exc)  # raised by receivers once drained (Channel.close's rule)
        if first:
            self.ctx.cancel(exc)  # stop the other relays now; the last one out closes

    def exit(self) -> None:
        with self.lock:
            self.live -= 1
            last = self.live == 0
        if last:
            for o in self.outs:
                o.close()
            self.ctx.cancel()  # release the inner ctx from its parent
            self.done.close()


def _check_channel(channel: object, what: str) -> None:
    if isinstance(channel, Context):  # the 0.1 form or_done(ctx, ch) / tee(ctx, ch)
        raise TypeError(f"{what}: ctx is keyword-only: {what}(channel, ctx=ctx)")


async def _or_done_body(ctx: Context, run: _Run, src: Pull, out: RelayChannel[Any]) -> None:
    pctx = rt.park_ctx(ctx)
    try:
        async with rt.cancel_scope(ctx):
            while True:
                ctx.raise_if_cancelled()
                item = await src.next(pctx)
                await out.send(item, ctx=pctx)
    except (InputEnded, ChannelClosed):
        pass
    except BaseException as exc:
        if is_failure(ctx, exc):
            run.fail(exc)
            if rt.must_reraise(exc):
                raise
    finally:
        try:
            await src.close_early()
        finally:
            run.exit()


def or_done(
    channel: ChannelBase[T] | AsyncIterable[T] | Iterable[T],
    *,
    ctx: Context,
    buffer: int = 0,
) -> Relay[RelayChannel[T]]:
    """A channel carrying ``channel``'s items until it ends or ``ctx`` is done (Go's orDone).

    Reading the result never blocks past ``ctx``: once it is done, reading it ends at once
    (iteration just stops, as in Go; check ``ctx.err`` to tell why). ``channel`` may be a
    corral Channel of either flavour or an (async) iterable; if an iterable raises, the
    result's receivers get that error. ``buffer`` is the result's capacity.

    It returns a :class:`Relay`: the relay worker (a task in ``corral``, a thread in
    ``corral.threads``) runs for the length of the ``async with`` block; it ends when the
    input ends, when ``ctx`` is done, or when the block is left, and then closes the result.

    >>> import asyncio, corral
    >>> async def main():
    ...     ch = corral.Channel(3)
    ...     for i in range(3):
    ...         await ch.send(i)
    ...     ch.close()
    ...     with corral.with_cancel(corral.background()) as ctx:
    ...         async with corral.or_done(ch, ctx=ctx) as out:
    ...             return [x async for x in out]
    >>> asyncio.run(main())
    [0, 1, 2]
    """
    what = "or_done"
    _check_channel(channel, what)
    check_ctx_arg(ctx, what)
    check_int(buffer, what, "buffer", 0)
    src = Pull(channel, what, "channel")
    out: RelayChannel[T] = RelayChannel(buffer, ctx=ctx)
    return Relay(what, ctx=ctx, outs=(out,), value=out, body=_or_done_body, args=[(src, out)])


TeePolicy = Literal["lockstep", "buffer", "drop"]
_TEE_POLICIES = ("lockstep", "buffer", "drop")


async def _tee_body(
    ctx: Context, run: _Run, src: Pull, outs: tuple[RelayChannel[Any], ...], policy: str
) -> None:
    pctx = rt.park_ctx(ctx)
    live = list(outs)
    try:
        async with rt.cancel_scope(ctx):
            while live:
                ctx.raise_if_cancelled()
                item = await src.next(pctx)
                if policy == "drop":
                    live = [o for o in live if offer_dropping(o, item)]
                    continue
                # Every live output gets the item before the next one is read: whichever
                # consumer is ready first is served first (Go's tee, with select).
                pending = list(live)
                while pending:
                    try:
                        if len(pending) == 1:
                            await pending[0].send(item, ctx=pctx)
                            break
                        cases = [o.send_case(item) for o in pending]
                        s = await rt.select(*cases, ctx=pctx)
                    except ChannelClosed:  # a consumer closed its output: it has left
                        gone = [o for o in pending if o.closed]
                        pending = [o for o in pending if not o.closed]
                        live = [o for o in live if o not in gone]
                        continue
                    del pending[s.index]
    except InputEnded:
        pass
    except BaseException as exc:
        if is_failure(ctx, exc):
            run.fail(exc)
            if rt.must_reraise(exc):
                raise
    finally:
        try:
            await src.close_early()
        finally:
            run.exit()


def tee(
    channel: ChannelBase[T] | AsyncIterable[T] | Iterable[T],
    n: int = 2,
    *,
    ctx: Context | None = None,
    policy: TeePolicy = "lockstep",
    buffer: int | None = None,
) -> Relay[tuple[RelayChannel[T], ...]]:
    """Copy every item of ``channel`` to ``n`` output channels, with an explicit policy
    for a slow consumer.

    * ``"lockstep"`` (default, Go's tee): unbuffered outputs; each item reaches every
      output before the next is read, so all consumers advance together at the pace of
      the slowest. Use it when consumers run at similar speeds, or must stay in step.
    * ``"buffer"``: each output buffers up to ``buffer`` items (default 16), so a
      consumer may run that far ahead of the slowest before it is held back. Use it to
      absorb bursts and jitter without losing anything.
    * ``"drop"``: never wait; an output whose ``buffer`` (default 16) is full drops its
      *oldest* item and counts it in ``out.dropped`` (like tokio's broadcast ``Lagged``).
      Use it for live data where fresh beats complete (metrics, UI updates), so a stalled
      consumer can never stall the source or the others.

    A consumer that leaves should close its output: the others then go on without it.
    It returns a :class:`Relay` whose block gives the ``n`` outputs; the relay ends with
    the input, with ``ctx`` (default: never cancelled), when every output is closed, or
    when the block is left, and closes all outputs.

    >>> import asyncio, corral
    >>> async def main():
    ...     async with corral.tee(range(3), policy="buffer", buffer=3) as (a, b):
    ...         return [x async for x in a], [x async for x in b]
    >>> asyncio.run(main())
    ([0, 1, 2], [0, 1, 2])
    """
    what = "tee"
    _check_channel(channel, what)
    if ctx is None:
        ctx = background()
    check_ctx_arg(ctx, what)
    check_int(n, what, "n", 1)
    if policy not in _TEE_POLICIES:
        raise ValueError(f"tee: policy must be one of {_TEE_POLICIES}, got {policy!r}")
    if policy == "lockstep":
        if buffer not in (None, 0):
            raise ValueError("tee: policy='lockstep' has no buffer; use policy='buffer'")
        size = 0
    else:
        size = 16 if buffer is None else check_int(buffer, what, "buffer", 1)
    src = Pull(channel, what, "channel")
    outs: tuple[RelayChannel[T], ...] = tuple(RelayChannel(size, ctx=ctx) for _ in range(n))
    return Relay(what, ctx=ctx, outs=outs, value=outs, body=_tee_body, args=[(src, outs, policy)])


async def _fan_in_body(ctx: Context, run: _Run, src: Pull) -> None:
    pctx = rt.park_ctx(ctx)
    out = run.outs[0]
    try:
        async with rt.cancel_scope(ctx):
            while True:
                ctx.raise_if_cancelled()
                item = await src.next(pctx)
                await out.send(item, ctx=pctx)
    except (InputEnded, ChannelClosed):
        pass
    except BaseException as exc:
        if is_failure(ctx, exc):
            run.fail(exc)
            if rt.must_reraise(exc):
                raise
    finally:
        try:
            await src.close_early()
        finally:
            run.exit()


def fan_in(
    *inputs: ChannelBase[T] | AsyncIterable[T] | Iterable[T],
    ctx: Context | None = None,
    buffer: int = 0,
) -> Relay[RelayChannel[T]]:
    """Merge ``inputs`` into one channel that ends when every input has ended.

    Inputs are corral Channels (either flavour) or (async) iterables, such as another
    fan-out's results; each gets its own relay worker. If an input raises, the merge
    stops (the other relays are cancelled) and the result's receivers get that error
    after the items already buffered, once every relay has stopped (Go's merge closes
    its channel after ``wg.Wait()`` too). ``ctx`` (default: never cancelled) bounds the
    relays' lifetime as in :func:`or_done`: when it is done the result simply ends. It
    returns a :class:`Relay`: the relays run for the length of its block.

    >>> import asyncio, corral
    >>> async def main():
    ...     async with corral.fan_in(range(3), range(10, 13)) as merged:
    ...         return sorted([x async for x in merged])
    >>> asyncio.run(main())
    [0, 1, 2, 10, 11, 12]
    """
    what = "fan_in"
    if ctx is None:
        ctx = background()
    check_ctx_arg(ctx, what)
    check_int(buffer, what, "buffer", 0)
    pulls = [Pull(x, what, "inputs") for x in inputs]
    out: RelayChannel[T] = RelayChannel(buffer, ctx=ctx)  # the caller's ctx, not the inner one
    args = [(p,) for p in pulls]
    return Relay(what, ctx=ctx, outs=(out,), value=out, body=_fan_in_body, args=args)
