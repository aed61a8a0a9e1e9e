"""The whole library's misuse table: every wrong call raises a documented error naming the
argument (or, for a wrong state, saying what is wrong), and nothing is corrupted.

The core's rows (channels, select, semaphore, Context) live in tests/core/test_misuse.py and
are counted here too; this file adds Group, SingleFlight, the patterns (fan_out, stage,
pipeline, tee, or_done, fan_in) and corral.testing. A row: (id, call, exception type,
regex the message must match). A call may return an awaitable: it is awaited (asyncio
checks some arguments when the coroutine runs).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

import corral
import corral.testing as ct
import corral.threads

from . import figures

try:  # the core's table, written by its own suite
    from core.test_misuse import MISUSE as CORE_MISUSE
except ImportError:  # pragma: no cover - run from another directory layout
    CORE_MISUSE = []

A, T = corral, corral.threads
bg = corral.background


async def _f(x: Any) -> Any:
    return x


def _g(x: Any) -> Any:
    return x


async def _f0() -> int:
    return 0


def _g0() -> int:
    return 0


async def _in_group(call: Callable[[corral.Group], Any]) -> None:
    async with corral.Group() as g:
        r = call(g)
        if inspect.isawaitable(r):
            await r


async def _after_group(call: Callable[[corral.Group], Any]) -> None:
    g = corral.Group()
    await g.wait()
    r = call(g)
    if inspect.isawaitable(r):
        await r


async def _enter_twice() -> None:
    g = corral.Group()
    async with g:
        pass
    async with g:
        pass


async def _set_limit_while_running() -> None:
    ch: corral.Channel[int] = corral.Channel()
    async with corral.Group() as g:
        await g.go(ch.recv)
        try:
            g.set_limit(1)
        finally:
            ch.close()


def _thread_group_go_after_finish() -> None:
    g = T.Group()
    g.wait()
    g.go(_g, 1)


Row = tuple[str, Callable[[], Any], type[BaseException], str]

LIBRARY_MISUSE: list[Row] = [
    # Group
    ("group-limit-negative", lambda: A.Group(limit=-1), ValueError, r"\blimit\b"),
    ("group-limit-str", lambda: A.Group(limit="2"), TypeError, r"\blimit\b"),
    ("group-limit-bool-threads", lambda: T.Group(limit=True), TypeError, r"\blimit\b"),
    ("group-ctx", lambda: A.Group(ctx="ctx"), TypeError, r"\bctx\b"),
    ("group-report", lambda: T.Group(report="some"), ValueError, r"\breport\b"),
    ("group-go-not-callable", lambda: _in_group(lambda g: g.go(5)), TypeError, r"\bfn\b"),
    ("group-go-not-callable-threads", lambda: T.Group().go(5), TypeError, r"\bfn\b"),
    (
        "group-go-after-finish",
        lambda: _after_group(lambda g: g.go(_f, 1)),
        corral.GroupError,
        r"finished",
    ),
    (
        "group-try-go-after-finish",
        lambda: _after_group(lambda g: g.try_go(_f, 1)),
        corral.GroupError,
        r"finished",
    ),
    (
        "group-go-after-finish-threads",
        _thread_group_go_after_finish,
        corral.GroupError,
        r"finished",
    ),
    (
        "group-set-limit-negative",
        lambda: _in_group(lambda g: g.set_limit(-3)),
        ValueError,
        r"\blimit\b",
    ),
    ("group-set-limit-threads", lambda: T.Group().set_limit("1"), TypeError, r"\blimit\b"),
    (
        "group-set-limit-while-running",
        _set_limit_while_running,
        corral.GroupError,
        r"set_limit",
    ),
    ("group-entered-twice", _enter_twice, corral.GroupError, r"entered only once"),
    # SingleFlight
    ("singleflight-ctx", lambda: A.SingleFlight(ctx="x"), TypeError, r"\bctx\b"),
    ("singleflight-key", lambda: A.SingleFlight().do([], _f0), TypeError, r"\bkey\b"),
    ("singleflight-key-threads", lambda: T.SingleFlight().do({}, _g0), TypeError, r"\bkey\b"),
    (
        "singleflight-shared-key",
        lambda: A.SingleFlight().do_shared(set(), _f0),
        TypeError,
        r"\bkey\b",
    ),
    ("singleflight-fn", lambda: A.SingleFlight().do("k", 5), TypeError, r"\bfn\b"),
    ("singleflight-chan-fn", lambda: A.SingleFlight().do_chan("k", None), TypeError, r"\bfn\b"),
    (
        "singleflight-timeout",
        lambda: A.SingleFlight().do("k", _f0, timeout=-1),
        ValueError,
        r"\btimeout\b",
    ),
    (
        "singleflight-ctx-threads",
        lambda: T.SingleFlight().do("k", _g0, ctx="x"),
        TypeError,
        r"\bctx\b",
    ),
    ("singleflight-dedup-key", lambda: A.SingleFlight().deduplicate(key=5), TypeError, r"\bkey\b"),
    ("singleflight-dedup-fn", lambda: T.SingleFlight().deduplicate(5), TypeError, r"\bfn\b"),
    # fan_out
    ("fan-out-workers-zero", lambda: A.fan_out(_f, [1], workers=0), ValueError, r"\bworkers\b"),
    ("fan-out-workers-str", lambda: T.fan_out(_g, [1], workers="2"), TypeError, r"\bworkers\b"),
    ("fan-out-buffer", lambda: A.fan_out(_f, [1], buffer=-1), ValueError, r"\bbuffer\b"),
    ("fan-out-errors", lambda: A.fan_out(_f, [1], errors="ignore"), ValueError, r"\berrors\b"),
    ("fan-out-fn", lambda: T.fan_out(3, [1]), TypeError, r"\bfn\b"),
    ("fan-out-items", lambda: A.fan_out(_f, 5), TypeError, r"\bitems\b"),
    (
        "fan-out-window",
        lambda: A.fan_out(_f, [1], ordered=True, window=0),
        ValueError,
        r"\bwindow\b",
    ),
    ("fan-out-run-in", lambda: A.fan_out(_f, [1], run_in="gpu"), ValueError, r"\brun_in\b"),
    ("fan-out-ctx", lambda: T.fan_out(_g, [1], ctx="x"), TypeError, r"\bctx\b"),
    ("fan-out-progress", lambda: A.fan_out(_f, [1], progress=5), TypeError, r"\bprogress\b"),
    # stage / pipeline
    ("stage-workers", lambda: A.stage(_f, workers=0), ValueError, r"\bworkers\b"),
    ("stage-fn", lambda: A.stage("f"), TypeError, r"\bfn\b"),
    ("stage-run-in-threads", lambda: T.stage(_g, run_in="gpu"), ValueError, r"\brun_in\b"),
    ("stage-buffer", lambda: A.stage(_f, buffer=-2), ValueError, r"\bbuffer\b"),
    ("stage-errors", lambda: A.stage(_f, errors="maybe"), ValueError, r"\berrors\b"),
    ("pipeline-no-stage", lambda: A.pipeline([1]), ValueError, r"\bstage\b"),
    ("pipeline-stage-not-callable", lambda: T.pipeline([1], 5), TypeError, r"\bstage 1\b"),
    ("pipeline-source", lambda: A.pipeline(7, A.stage(_f)), TypeError, r"\bsource\b"),
    ("pipeline-ctx", lambda: A.pipeline([1], A.stage(_f), ctx=3), TypeError, r"\bctx\b"),
    # tee / or_done / fan_in
    ("tee-n-zero", lambda: A.tee([1], 0), ValueError, r"\bn\b"),
    ("tee-policy", lambda: T.tee([1], policy="fast"), ValueError, r"\bpolicy\b"),
    (
        "tee-lockstep-with-buffer",
        lambda: A.tee([1], policy="lockstep", buffer=2),
        ValueError,
        r"\bbuffer\b",
    ),
    ("tee-buffer-zero", lambda: A.tee([1], policy="buffer", buffer=0), ValueError, r"buffer"),
    ("tee-ctx", lambda: T.tee([1], ctx="ctx"), TypeError, r"\bctx\b"),
    ("tee-source", lambda: A.tee(5), TypeError, r"\bchannel\b"),
    ("or-done-ctx", lambda: A.or_done([1], ctx=None), TypeError, r"\bctx\b"),
    ("or-done-buffer", lambda: T.or_done([1], ctx=bg(), buffer=-1), ValueError, r"\bbuffer\b"),
    ("or-done-source", lambda: A.or_done(5, ctx=bg()), TypeError, r"\bchannel\b"),
    ("fan-in-ctx", lambda: A.fan_in([1], ctx="x"), TypeError, r"\bctx\b"),
    ("fan-in-buffer", lambda: T.fan_in([1], buffer="1"), TypeError, r"\bbuffer\b"),
    ("fan-in-input", lambda: A.fan_in(3), TypeError, r"\binputs\b"),
    # corral.testing
    ("testing-hammer-no-worker", lambda: ct.hammer(), ValueError, r"\bworker\b"),
    ("testing-hammer-not-callable", lambda: ct.hammer(_g, 2), TypeError, r"\bworker 1\b"),
    ("testing-cancel-target", lambda: ct.Schedule(0).cancel_target(5), TypeError, r"\btarget\b"),
    ("testing-explore-seeds", lambda: ct.explore(_f, seeds=5), TypeError, r"\bseeds\b"),
    ("testing-sweep-seeds", lambda: ct.cancel_sweep(_f, seeds=["a"]), TypeError, r"\bseeds\b"),
]

ALL_ROWS: list[Row] = [(f"core-{i}", c, e, n) for i, c, e, n in CORE_MISUSE] + LIBRARY_MISUSE


@pytest.mark.parametrize(
    ("call", "exc", "names"), [pytest.param(c, e, n, id=i) for i, c, e, n in LIBRARY_MISUSE]
)
async def test_misuse_raises_a_documented_error_naming_the_argument(
    call: Callable[[], Any], exc: type[BaseException], names: str
) -> None:
    assert issubclass(exc, corral.CorralError | ValueError | TypeError), exc
    with pytest.raises(exc) as caught:
        result = call()
        if inspect.isawaitable(result):
            await result
    assert type(caught.value) is exc, repr(caught.value)
    assert re.search(names, str(caught.value)), f"{caught.value!s} does not name {names!r}"
    _passed.append(names)


_passed: list[str] = []  # rows of this file that passed, for the figure (runs after them)


def test_the_misuse_table_covers_the_whole_library() -> None:
    areas = {row[0].split("-")[0] for row in LIBRARY_MISUSE}
    assert {"group", "singleflight", "fan", "stage", "pipeline", "tee", "or", "testing"} <= areas
    assert len(ALL_ROWS) >= 40
    documented = all(
        issubclass(r[2], corral.CorralError | ValueError | TypeError) for r in ALL_ROWS
    )
    ok = len(_passed) == len(LIBRARY_MISUSE)
    figures.record(
        "misuse table",
        "wrong calls raising a documented error naming the argument",
        f"{len(ALL_ROWS)} cases ({len(CORE_MISUSE)} core rows in tests/core, "
        f"{len(LIBRARY_MISUSE)} Group/SingleFlight/patterns/testing rows here: "
        f"{len(_passed)} of them pass)",
        ">= 40, all pass",
        len(ALL_ROWS) >= 40 and documented and ok,
    )
