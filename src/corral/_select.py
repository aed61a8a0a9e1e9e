"""What both flavours' ``select`` share: argument checks and turning a fired case into
a :class:`Selected`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._core.channel import CLOSED, Case, SendCase
from ._core.context import Context, _check_timeout
from ._errors import ChannelClosed
from ._shells import check_ctx

__all__ = ["Selected", "check_select", "selected"]


@dataclass(frozen=True, slots=True)
class Selected:
    """The case that fired in a ``select``.

    ``index`` is its position in the arguments; ``value`` the item a receive case got
    (``None`` for a send case); ``ok`` is ``False`` when a receive case fired because its
    channel is closed and drained (Go's ``v, ok := <-ch``).
    """

    index: int
    value: Any
    ok: bool
    case: Case


def check_select(
    cases: Sequence[object], default: object, timeout: float | None, ctx: Context | None
) -> None:
    from ._core.channel import check_cases

    check_cases(cases)
    if not isinstance(default, bool):
        raise TypeError(f"select: default must be a bool, got {type(default).__name__}")
    if default and (timeout is not None or ctx is not None):
        raise ValueError("select: default=True never waits, so timeout and ctx make no sense")
    if timeout is not None:
        _check_timeout(timeout)
    if ctx is not None:
        check_ctx(ctx, "select")


def selected(cases: Sequence[Case], index: int, value: Any) -> Selected:
    case = cases[index]
    if isinstance(case, SendCase):
        if value is CLOSED:
            raise ChannelClosed(f"select: case {index} sends on a channel that was closed")
        return Selected(index, None, True, case)
    if value is CLOSED:
        return Selected(index, None, False, case)
    return Selected(index, value, True, case)
