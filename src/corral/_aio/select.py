"""``corral.select`` for asyncio tasks."""

from __future__ import annotations

from typing import Literal, overload

from .._core.channel import Case, select_poll_or_park
from .._core.context import Context
from .._core.waiter import AsyncWaiter
from .._select import Selected, check_select, selected
from .channel import new_waiter
from .wait import owed, park, pay_owed

__all__ = ["select"]


@overload
async def select(
    *cases: Case,
    default: Literal[False] = False,
    timeout: float | None = ...,
    ctx: Context | None = ...,
) -> Selected: ...
@overload
async def select(*cases: Case, default: Literal[True]) -> Selected | None: ...
@overload
async def select(
    *cases: Case, default: bool = False, timeout: float | None = ..., ctx: Context | None = ...
) -> Selected | None: ...


async def select(
    *cases: Case, default: bool = False, timeout: float | None = None, ctx: Context | None = None
) -> Selected | None:
    """Wait until exactly one of ``cases`` can proceed, do it, and say which.

    Cases come from ``channel.recv_case()`` and ``channel.send_case(item)``, on channels
    of either flavour. When several are ready one is chosen at random, so none starves.
    Exactly one case takes effect; the others are untouched. ``default=True`` returns
    ``None`` at once if none is ready. ``timeout`` raises ``DeadlineExceeded``; a done
    ``ctx`` raises ``Cancelled``. A send case on a closed channel raises ``ChannelClosed``.

    >>> import asyncio, corral
    >>> async def main():
    ...     a, b = corral.Channel(1), corral.Channel(1)
    ...     await b.send("hi")
    ...     s = await corral.select(a.recv_case(), b.recv_case())
    ...     return s.index, s.value
    >>> asyncio.run(main())
    (1, 'hi')
    """
    if owed:
        pay_owed()
    check_select(cases, default, timeout, ctx)
    r = select_poll_or_park(cases, None if default else new_waiter)
    if r is None:
        return None
    if isinstance(r, tuple):
        return selected(cases, *r)
    assert isinstance(r, AsyncWaiter)
    try:
        await park(r, timeout, ctx)
    finally:
        r.unlink()  # the cases that did not fire
    return selected(cases, r.index, r.value)
