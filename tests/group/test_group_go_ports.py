"""golang.org/x/sync/errgroup's errgroup_test.go and its examples, ported, for every flavour.

Where corral deliberately differs from Go the test says so: a Group finishes when
``wait()`` returns (Go lets a zero Group be reused after Wait; corral raises GroupError),
and a group that failed starts no new work (Go still runs it, golang/go#54045).
"""

from __future__ import annotations

from typing import Any

import pytest

import corral
from corral import GroupError

from .conftest import Counter, Flavour, until

ERR1 = ValueError("errgroup_test: 1")
ERR2 = ValueError("errgroup_test: 2")
DOOM = ValueError("group_test: doomed")


# --- ExampleGroup_justErrors / ExampleGroup_parallel ----------------------------------------


async def test_example_just_errors(flavour: Flavour) -> None:
    fetched: list[str] = []
    urls = ["http://www.golang.org/", "http://www.google.com/", "http://www.example.com/"]
    g = flavour.group()
    for url in urls:
        await g.go(flavour.worker(started=lambda u=url: fetched.append(u)))
    await g.wait()  # no error: "Successfully fetched all URLs."
    assert sorted(fetched) == sorted(urls)


async def test_example_parallel(flavour: Flavour) -> None:
    """Google Search 2.0: three searches in parallel, results in the searches' order."""

    async def google(query: str) -> list[str]:
        results: list[str] = [""] * 3
        async with flavour.group(ctx=corral.background()) as g:
            for i, kind in enumerate(["web", "image", "video"]):

                def store(i: int = i, kind: str = kind) -> None:
                    results[i] = f"{kind} result for {query!r}"

                await g.go(flavour.worker(started=store))
        return results

    assert await google("golang") == [
        "web result for 'golang'",
        "image result for 'golang'",
        "video result for 'golang'",
    ]


# --- TestZeroGroup ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "errs", [[], [None], [ERR1], [ERR1, None], [ERR1, None, ERR2]], ids=lambda e: str(len(e))
)
async def test_zero_group_first_error_is_sticky(flavour: Flavour, errs: list[Any]) -> None:
    g = flavour.group()
    first: BaseException | None = None
    for i, err in enumerate(errs):
        if i == 0:
            await g.go(flavour.worker(error=err))
        else:
            # corral: wait() finished the group; Go would run this function.
            with pytest.raises(GroupError, match="finished"):
                await g.go(flavour.worker(error=err))
        if first is None and err is not None:
            first = err
        if first is None:
            await g.wait()
        else:
            with pytest.raises(ValueError, match="errgroup_test") as info:
                await g.wait()
            assert info.value is first
    if not errs:
        await g.wait()


# --- TestWithContext / TestCancelCause --------------------------------------------------------


CTX_CASES = [([], None), ([None], None), ([DOOM], DOOM), ([DOOM, None], DOOM)]


@pytest.mark.parametrize(("errs", "want"), CTX_CASES, ids=["none", "nil", "doom", "doom-nil"])
async def test_with_context_done_after_wait(
    flavour: Flavour, gate: corral.CancelContext, errs: list[Any], want: BaseException | None
) -> None:
    g = flavour.group(ctx=corral.background())
    ctx = g.ctx
    for i, err in enumerate(errs):
        # Held until every go() is made: once the group has failed, corral's go() raises
        # instead of starting work (and a thread worker may fail at once).
        last = i == len(errs) - 1
        await g.go(flavour.worker(error=err, wait=None if last else gate))
    gate.cancel()
    if want is None:
        await g.wait()
    else:
        with pytest.raises(ValueError, match="doomed") as info:
            await g.wait()
        assert info.value is want
    # "ctx.Done() was not closed" is the failure Go checks for: done even on success.
    assert ctx.cancelled
    with pytest.raises(corral.EndOfChannel):
        ctx.done().recv_nowait()


@pytest.mark.parametrize(("errs", "want"), CTX_CASES, ids=["none", "nil", "doom", "doom-nil"])
async def test_cancel_cause(
    flavour: Flavour, gate: corral.CancelContext, errs: list[Any], want: BaseException | None
) -> None:
    g = flavour.group(ctx=corral.background())
    for i, err in enumerate(errs):
        # The failing worker waits until every try_go is made (Go's goroutines may not have
        # run yet either); after a failure, try_go would raise instead of starting work.
        last = i == len(errs) - 1
        assert g.try_go(flavour.worker(error=err, wait=None if last else gate))
        if last:
            gate.cancel()
    if want is None:
        await g.wait()
        # Go: context.Cause(ctx) == context.Canceled after a clean Wait.
        assert isinstance(g.ctx.cause, corral.Cancelled)
    else:
        with pytest.raises(ValueError, match="doomed"):
            await g.wait()
        assert g.ctx.cause is want


# --- TestTryGo --------------------------------------------------------------------------------


async def test_try_go(flavour: Flavour) -> None:
    n = 42
    g = flavour.group()
    g.set_limit(n)
    ch: corral.Channel[None] = corral.Channel()
    fn = flavour.worker(send_to=ch)

    for i in range(n):
        assert g.try_go(fn), f"try_go should succeed but failed at call {i}"
    assert not g.try_go(fn), "try_go is expected to fail but succeeded"
    assert g.statistics().running == n

    async def drain(k: int) -> None:
        for _ in range(k):
            await ch.recv()

    async def settled() -> None:
        # Go calls Wait() between phases; corral's wait() finishes the group, so the port
        # waits until the workers have returned instead (a worker counts as running until
        # its function returned, after its send).
        await until(lambda: g.statistics().running == 0)

    await drain(n)
    await settled()
    assert g.try_go(fn), "try_go should succeed after every worker returned"
    await drain(1)
    await settled()

    # Switch limit.
    g.set_limit(1)
    assert g.try_go(fn)
    assert not g.try_go(fn)
    await drain(1)
    await settled()

    # Block all calls.
    g.set_limit(0)
    for _ in range(1 << 10):
        assert not g.try_go(fn)
    await g.wait()


# --- TestGoLimit ------------------------------------------------------------------------------


async def test_go_limit(flavour: Flavour) -> None:
    limit = 10
    g = flavour.group(limit=limit)
    active = Counter()
    for _ in range((1 << 10) + 1):
        await g.go(flavour.worker(active=active))
    await g.wait()
    assert active.total == 1025
    assert 1 <= active.peak <= limit, f"saw {active.peak} active workers; want <= {limit}"


# --- BenchmarkGo, as a smoke test ---------------------------------------------------------------


async def test_many_trivial_workers(flavour: Flavour) -> None:
    g = flavour.group()
    done = Counter()
    for _ in range(200 if flavour.threads else 2000):
        await g.go(flavour.worker(started=done.enter))
    await g.wait()
    assert done.total == (200 if flavour.threads else 2000)
