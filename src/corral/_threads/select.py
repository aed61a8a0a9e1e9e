"""``corral.threads.select`` for threads."""

from __future__ import annotations

from typing import Literal, overload

from .._core.channel import Case, select_poll_or_park
from .._core.context import Context
from .._core.waiter import ThreadWaiter
from .._select import Selected, check_select, selected
from .wait import park

__all__ = ["select"]


@overload
def select(
    *cases: Case,
    default: Literal[False] = False,
    timeout: float | None = ...,
    ctx: Context | None = ...,
) -> Selected: ...
@overload
def select(*cases: Case, default: Literal[True]) -> Selected | None: ...
@overload
def select(
    *cases: Case, default: bool = False, timeout: float | None = ..., ctx: Context | None = ...
) -> Selected | None: ...


def select(
    *cases: Case, default: bool = False, timeout: float | None = None, ctx: Context | None = None
) -> Selected | None:
    """Block until exactly one of ``cases`` can proceed (see ``corral.select``)."""
    check_select(cases, default, timeout, ctx)
    r = select_poll_or_park(cases, None if default else ThreadWaiter)
    if r is None:
        return None
    if isinstance(r, tuple):
        return selected(cases, *r)
    assert isinstance(r, ThreadWaiter)
    try:
        park(r, timeout, ctx)
    finally:
        r.unlink()
    return selected(cases, r.index, r.value)
