"""One rule, one place: the argument checks every entry point shares say the same thing.

Each of these was written more than once and the copies disagreed: which callables run as
tasks (``is_async_callable``), what a non-callable ``fn`` gets (``check_fn``), and what a
bad ``ctx`` gets. The tests ask every public entry point the same question, so a copy that
drifts from the one implementation fails here.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest

import corral
import corral.threads
from corral._core.group import is_async_callable

pytestmark = pytest.mark.timeout(30)


class Job:
    """A class whose instances are awaitable-returning callables: the class itself is not."""

    def __init__(self, x: int) -> None:
        self.x = x

    async def __call__(self) -> int:
        return self.x


def test_a_class_whose_call_is_async_is_not_an_async_callable() -> None:
    # Calling the class makes an instance, not a coroutine; calling an instance does.
    assert not is_async_callable(Job)
    assert is_async_callable(Job(1))


def test_a_stage_of_a_class_with_async_call_runs_in_a_thread() -> None:
    # The pattern planner had its own copy that said "task" here (it looked up __call__ on
    # the class, which is the instances' method), so fan_out awaited a Job instance.
    assert corral.stage(Job).kind == "thread"


async def test_fan_out_over_a_class_with_async_call_makes_instances() -> None:
    out = await corral.fan_out(Job, [1, 2, 3], workers=2, ordered=True).collect()
    assert [j.x for j in out] == [1, 2, 3]


async def _work(x: int) -> int:
    return x


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c: corral.stage(c), id="stage"),
        pytest.param(lambda c: corral.fan_out(c, [1]), id="fan_out"),
        pytest.param(lambda c: corral.threads.fan_out(c, [1]), id="threads.fan_out"),
        pytest.param(lambda c: corral.pipeline([1], c), id="pipeline"),
    ],
)
def test_a_coroutine_object_for_fn_is_named_and_closed(call: Callable[[Any], Any]) -> None:
    # Closed, so it does not warn "never awaited" on top of the TypeError (the harness
    # turns that warning into a failure).
    coro = _work(1)
    with pytest.raises(TypeError, match="not a coroutine object"):
        call(coro)
    assert coro.cr_frame is None  # closed


def _ctx_calls() -> list[Any]:
    """Every public call that takes ``ctx=``, each given a str instead of a Context."""
    bad: Any = "nope"

    async def aio(fn: Callable[[], Any]) -> None:
        r = fn()
        if hasattr(r, "__await__"):
            await r

    return [
        ("Channel.send", lambda: aio(lambda: corral.Channel(1).send(1, ctx=bad))),
        ("Channel.recv", lambda: aio(lambda: corral.Channel(1).recv(ctx=bad))),
        ("Channel.send", lambda: corral.threads.Channel(1).send(1, ctx=bad)),
        ("Channel.recv", lambda: corral.threads.Channel(1).recv(ctx=bad)),
        ("Semaphore.acquire", lambda: aio(lambda: corral.Semaphore(2).acquire(1, ctx=bad))),
        ("Semaphore.acquire", lambda: corral.threads.Semaphore(2).acquire(1, ctx=bad)),
        ("RateLimit.acquire", lambda: aio(lambda: corral.RateLimit(5).acquire(1, ctx=bad))),
        ("RateLimit.acquire", lambda: corral.threads.RateLimit(5).acquire(1, ctx=bad)),
        (
            "Limits.acquire",
            lambda: aio(lambda: corral.Limits(corral.RateLimit(5)).acquire(ctx=bad)),
        ),
        (
            "Limits.acquire",
            lambda: corral.threads.Limits(corral.threads.RateLimit(5)).acquire(ctx=bad),
        ),
        ("select", lambda: aio(lambda: corral.select(corral.Channel(1).recv_case(), ctx=bad))),
        ("select", lambda: corral.threads.select(corral.Channel(1).recv_case(), ctx=bad)),
        ("SingleFlight", lambda: corral.SingleFlight(ctx=bad)),
        ("SingleFlight", lambda: corral.threads.SingleFlight(ctx=bad)),
        ("Group", lambda: corral.Group(ctx=bad)),
        ("Group", lambda: corral.threads.Group(ctx=bad)),
        ("fan_out", lambda: corral.fan_out(abs, [1], ctx=bad)),
        ("fan_out", lambda: corral.threads.fan_out(abs, [1], ctx=bad)),
        ("pipeline", lambda: corral.pipeline([1], abs, ctx=bad)),
        ("or_done", lambda: corral.or_done(corral.Channel(1), ctx=bad)),
        ("tee", lambda: corral.threads.tee(corral.threads.Channel(1), ctx=bad)),
        ("fan_in", lambda: corral.fan_in([1], ctx=bad)),
    ]


@pytest.mark.parametrize(("what", "call"), _ctx_calls(), ids=[w for w, _ in _ctx_calls()])
async def test_every_ctx_argument_is_checked_by_one_rule(
    what: str, call: Callable[[], Any]
) -> None:
    with pytest.raises(TypeError) as info:
        r = call()
        if asyncio.iscoroutine(r):
            await r
    msg = str(info.value)
    assert msg.startswith(f"{what}: ctx must be a corral Context"), msg
    assert msg.endswith("got str"), msg


# -- ctx is keyword-only everywhere -----------------------------------------------------------


def _public_callables() -> list[tuple[str, Any]]:
    import corral.dask
    import corral.redis
    import corral.threads.redis

    found: list[tuple[str, Any]] = []
    for mod in (corral, corral.threads, corral.redis, corral.threads.redis, corral.dask):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not callable(obj):
                continue
            if name.endswith("Acquire") or name == "Permit":
                continue  # handles that acquire() makes (users never construct them)
            found.append((f"{mod.__name__}.{name}", obj))
            if isinstance(obj, type):
                for attr, member in vars(obj).items():
                    if callable(member) and (not attr.startswith("_") or attr == "__init__"):
                        found.append((f"{mod.__name__}.{name}.{attr}", member))
    return found


def test_ctx_is_keyword_only_on_every_public_callable() -> None:
    # One rule for where ctx goes: `ctx=` by keyword, on constructors (Group, SingleFlight)
    # and operations alike; the channel or function comes first, as in every Python API.
    positional = []
    seen = 0
    for name, obj in _public_callables():
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):  # a builtin without a signature
            continue
        p = sig.parameters.get("ctx")
        if p is not None:
            seen += 1
            if p.kind is not inspect.Parameter.KEYWORD_ONLY:
                positional.append(name)
    assert seen > 40, seen
    assert positional == []


@pytest.mark.parametrize("mod", [corral, corral.threads], ids=["aio", "threads"])
def test_group_and_singleflight_refuse_a_positional_ctx(mod: Any) -> None:
    ctx = corral.background()
    with pytest.raises(TypeError, match="positional argument"):
        mod.Group(ctx)
    with pytest.raises(TypeError, match="positional argument"):
        mod.SingleFlight(ctx)
