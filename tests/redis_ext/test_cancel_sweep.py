"""The strict cancellation rule for the Redis Semaphore.acquire and SingleFlight.do (issue 17's
list), swept over every step: each script call of the operation, cancelled just before it
is sent and just after its reply came back (the server ran it: the racing case).

The rule: a cancelled call either had no effect and raises, or it completed and its result
stands (the cancellation is then raised at the task's next await). For an acquire, "no
effect" means no permit held and no queue entry left, in Redis and in the statistics.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import corral
import corral.redis
import corral.threads.redis

from .conftest import connect_async

LEASE = 2.0
MAX_STEPS = 12


class Sweep:
    """Wraps an object's scripts: at script call number ``at`` (counting from 0), cancel
    ``before`` it is sent or after its reply; ``cancel`` is what cancelling means."""

    def __init__(self, scripts: dict[str, Any], at: int, before: bool, cancel: Any) -> None:
        self.calls: list[str] = []
        self.fired = False
        for name, inner in list(scripts.items()):
            scripts[name] = self._wrap(name, inner, at, before, cancel)

    def _wrap(self, name: str, inner: Any, at: int, before: bool, cancel: Any) -> Any:
        def hit() -> bool:
            n = len(self.calls)
            self.calls.append(name)
            if n == at and not self.fired:
                self.fired = True
                return True
            return False

        async def acall(*, keys: Any, args: Any) -> Any:
            fire = hit()
            if fire and before:
                cancel()
                await asyncio.sleep(0)  # the cancellation lands here: nothing was sent
            r = await inner(keys=keys, args=args)
            if fire and not before:
                cancel()  # lands at the next await: the script has run
            return r

        def tcall(*, keys: Any, args: Any) -> Any:
            fire = hit()
            if fire and before:
                cancel()
            r = inner(keys=keys, args=args)
            if fire and not before:
                cancel()
            return r

        return acall if isinstance(inner, _ASYNC_SCRIPT) else tcall


try:
    from redis.commands.core import AsyncScript as _ASYNC_SCRIPT
except ImportError:  # pragma: no cover
    _ASYNC_SCRIPT = type(None)  # type: ignore[misc,assignment]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("before", [True, False], ids=["before-send", "after-reply"])
@pytest.mark.parametrize("contended", [False, True], ids=["fast", "queued"])
async def test_async_acquire_cancelled_at_every_step(
    redis_url: str, before: bool, contended: bool
) -> None:

    async with connect_async(redis_url) as c:
        for at in range(MAX_STEPS):
            name = f"cs{at}{before}{contended}"
            other = corral.redis.Semaphore(c, name, 1, lease=LEASE)
            sem = corral.redis.Semaphore(c, name, 1, lease=LEASE)
            await other.server_statistics()  # start the name's epoch...
            await c.hset("{" + name + "}:e", "t0", "0")  # ...and let its grace be over
            blocker = await other.acquire() if contended else None
            tasks: list[asyncio.Task[Any]] = []
            sweep = Sweep(sem._s, at, before, lambda: _cancel(tasks))  # noqa: B023
            got = await _take(lambda: sem.acquire(timeout=10), tasks, other, blocker)  # noqa: B023
            st = await other.server_statistics()
            if got:  # completed: the permit stands, held until released
                assert (st.held, st.waiting) == (1, 0), (at, sweep.calls)
                assert sem.statistics().held == 1
                await got[0].release()
            else:
                assert (st.held, st.waiting) == (0, 0), (at, sweep.calls)
                assert sem.statistics().held == sem.statistics().waiting == 0
            if not sweep.fired:
                assert got, sweep.calls
                break  # every step was swept
        else:
            pytest.fail("more steps than MAX_STEPS")


async def _queued(sem: corral.redis.Semaphore) -> bool:
    return (await sem.server_statistics()).waiting == 1


def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    """The sweep's cut: cancel the acquiring task (none yet: nothing to cancel)."""
    for task in tasks:
        task.cancel()


async def _take(
    acquire: Any, tasks: list[asyncio.Task[Any]], other: Any, blocker: Any
) -> list[Any]:
    """Run ``acquire()`` as a task (put in ``tasks``, for the sweep to cancel); with a
    ``blocker`` (``other``'s permit), release it once the acquire queued behind it.
    -> [what the acquire returned], or [] when it was cancelled."""
    got: list[Any] = []

    async def take() -> None:
        got.append(await acquire())
        await asyncio.sleep(0)  # a cancellation owed is raised here

    task = asyncio.create_task(take())
    tasks.append(task)
    if blocker is not None:
        while not await _queued(other):
            if task.done():
                break
            await asyncio.sleep(0.005)
        await blocker.release()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return got


@pytest.mark.timeout(120)
@pytest.mark.parametrize("before", [True, False], ids=["before-send", "after-reply"])
def test_threads_acquire_ctx_cancelled_at_every_step(client: Any, before: bool) -> None:
    for at in range(MAX_STEPS):
        name = f"ct{at}{before}"
        other = corral.threads.redis.Semaphore(client, name, 1, lease=LEASE)
        sem = corral.threads.redis.Semaphore(client, name, 1, lease=LEASE)
        other.server_statistics()
        client.hset("{" + name + "}:e", "t0", "0")
        blocker = other.acquire()
        ctx = corral.with_cancel(corral.background())
        sweep = Sweep(sem._s, at, before, ctx.cancel)
        got: list[Any] = []
        errors: list[BaseException] = []

        def take(
            ctx: corral.Context = ctx,
            sem: corral.threads.redis.Semaphore = sem,
            got: list[Any] = got,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                got.append(sem.acquire(timeout=10, ctx=ctx))
            except corral.Cancelled as exc:
                errors.append(exc)

        t = threading.Thread(target=take)
        t.start()
        while other.server_statistics().waiting != 1 and t.is_alive():
            ctx.wait_blocking(0.005)
        blocker.release()
        t.join(20)
        assert not t.is_alive()
        st = other.server_statistics()
        if got:
            assert (st.held, st.waiting) == (1, 0), (at, sweep.calls)
            got[0].release()
        else:
            assert [type(e) for e in errors] == [corral.Cancelled]
            assert (st.held, st.waiting) == (0, 0), (at, sweep.calls)
            assert sem.statistics().held == sem.statistics().waiting == 0
        if not sweep.fired:
            break
    else:
        pytest.fail("more steps than MAX_STEPS")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("before", [True, False], ids=["before-send", "after-reply"])
async def test_async_do_cancelled_at_every_step(redis_url: str, before: bool) -> None:

    async with connect_async(redis_url) as c:
        for at in range(MAX_STEPS):
            ns = f"cd{at}{before}"
            sf = corral.redis.SingleFlight(c, namespace=ns, lease=LEASE)
            task: asyncio.Task[Any] | None = None
            sweep = Sweep(sf._s, at, before, lambda: task.cancel() if task else None)  # noqa: B023
            got: list[Any] = []

            async def work() -> str:
                await asyncio.sleep(0.01)
                return "v"

            async def call(sf: corral.redis.SingleFlight = sf, got: list[Any] = got) -> None:
                got.append(await sf.do("k", work))
                await asyncio.sleep(0)

            task = asyncio.create_task(call())
            try:
                await task
            except asyncio.CancelledError:
                pass
            assert got in ([], ["v"])
            # No trace: once the flight's cleanup ended (a flight every caller left gives
            # its lease up in the background), the key is free, not stuck on a cancelled
            # leader until its lease runs out.
            for _ in range(500):
                if not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                    break
                await asyncio.sleep(0.01)
            assert sf.statistics().in_flight == 0
            assert await c.keys("{" + ns + "}:sf:*:lease") == [], sweep.calls
            fresh = corral.redis.SingleFlight(c, namespace=ns, lease=LEASE)
            assert await fresh.do("k", work) == "v"
            if not sweep.fired:
                break
        else:
            pytest.fail("more steps than MAX_STEPS")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("before", [True, False], ids=["before-send", "after-reply"])
def test_threads_do_ctx_cancelled_at_every_step(client: Any, before: bool) -> None:
    from .conftest import wait_for

    for at in range(MAX_STEPS):
        ns = f"ctd{at}{before}"
        sf = corral.threads.redis.SingleFlight(client, namespace=ns, lease=LEASE)
        ctx = corral.with_cancel(corral.background())
        sweep = Sweep(sf._s, at, before, ctx.cancel)
        out: list[Any] = []

        def work() -> str:
            corral.threads.redis.SingleFlight.current_context().wait_blocking(0.01)
            return "v"

        try:
            out.append(sf.do("k", work, ctx=ctx))
        except corral.Cancelled as exc:
            out.append(exc)
        assert out == ["v"] or isinstance(out[0], corral.Cancelled)
        # No trace once the flight ended: the key is free, the next call runs.
        wait_for(lambda sf=sf: sf.statistics().in_flight == 0)
        # (sooner than the lease would expire by itself)
        wait_for(lambda ns=ns: client.keys("{" + ns + "}:sf:*:lease") == [], timeout=LEASE / 2)
        fresh = corral.threads.redis.SingleFlight(client, namespace=ns, lease=LEASE)
        assert fresh.do("k", work) == "v"
        if not sweep.fired:
            break
    else:
        pytest.fail("more steps than MAX_STEPS")


# --- a Limits of a rate limit and a semaphore (issue 21) -------------------------------------

SLOW = {"rate": 1, "per": 1000.0}  # one unit per 1,000 s: available() does not drift


@pytest.mark.timeout(180)
@pytest.mark.parametrize("before", [True, False], ids=["before-send", "after-reply"])
@pytest.mark.parametrize("contended", [False, True], ids=["free", "queued"])
async def test_async_joint_acquire_cancelled_at_every_step(
    redis_url: str, before: bool, contended: bool
) -> None:
    """Every script call of a joint acquire (its LIMITS_ACQUIRE calls, and the leave and
    withdraw of a cancelled one), cancelled before it is sent and after its reply: the
    rate limit charged nothing and no permit held or queued, or the grant stands."""
    async with connect_async(redis_url) as c:
        for at in range(MAX_STEPS):
            tag = f"j{at}{before}{contended}"
            rpm = corral.redis.RateLimit(c, "r", burst=5, tag=tag, **SLOW)
            sem = corral.redis.Semaphore(c, "s", 1, lease=LEASE, tag=tag)
            other = corral.redis.Semaphore(c, "s", 1, lease=LEASE, tag=tag)
            await other.server_statistics()
            await c.hset(sem._k.keys[4], "t0", "0")  # the grace is over
            lim = corral.redis.Limits(rpm, sem)
            blocker = await other.acquire() if contended else None
            tasks: list[asyncio.Task[Any]] = []
            sweep = Sweep(rpm._s, at, before, lambda: _cancel(tasks))  # noqa: B023
            sweep_sem = Sweep(sem._s, 10**6, before, lambda: _cancel(tasks))  # noqa: B023
            got = await _take(lambda: lim.acquire(timeout=10), tasks, other, blocker)  # noqa: B023
            st = await other.server_statistics()
            calls = (sweep.calls, sweep_sem.calls)
            if got:  # completed: the grant stands, its permit held until released
                assert (st.held, st.waiting) == (1, 0), (at, calls)
                assert sem.statistics().held == 1
                assert await rpm.available() == pytest.approx(4, abs=0.01), (at, calls)
                await got[0].release()
            else:
                assert (st.held, st.waiting) == (0, 0), (at, calls)
                assert sem.statistics().held == 0
                assert await rpm.available() == pytest.approx(5, abs=0.01), (at, calls)
                assert await c.zcard(f"corral:{{{tag}}}:rl:r:q") == 0, (at, calls)
            if not sweep.fired:
                assert got, calls
                assert at >= (2 if contended else 1), calls  # queued: two calls, at least
                break  # every step was swept
        else:
            pytest.fail("more steps than MAX_STEPS")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("before", [True, False], ids=["before-send", "after-reply"])
def test_threads_joint_acquire_ctx_cancelled_at_every_step(client: Any, before: bool) -> None:
    for at in range(MAX_STEPS):
        tag = f"tj{at}{before}"
        rpm = corral.threads.redis.RateLimit(client, "r", burst=5, tag=tag, **SLOW)
        sem = corral.threads.redis.Semaphore(client, "s", 1, lease=LEASE, tag=tag)
        other = corral.threads.redis.Semaphore(client, "s", 1, lease=LEASE, tag=tag)
        other.server_statistics()
        client.hset(sem._k.keys[4], "t0", "0")
        blocker = other.acquire()
        ctx = corral.with_cancel(corral.background())
        sweep = Sweep(rpm._s, at, before, ctx.cancel)
        got: list[Any] = []
        errors: list[BaseException] = []

        lim = corral.threads.redis.Limits(rpm, sem)

        def take(
            lim: corral.threads.redis.Limits = lim,
            ctx: corral.Context = ctx,
            got: list[Any] = got,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                got.append(lim.acquire(timeout=10, ctx=ctx))
            except corral.Cancelled as exc:
                errors.append(exc)

        t = threading.Thread(target=take)
        t.start()
        while other.server_statistics().waiting != 1 and t.is_alive():
            ctx.wait_blocking(0.005)
        blocker.release()
        t.join(20)
        assert not t.is_alive()
        st = other.server_statistics()
        if got:
            assert (st.held, st.waiting) == (1, 0), (at, sweep.calls)
            assert rpm.available() == pytest.approx(4, abs=0.01)
            got[0].release()
        else:
            assert [type(e) for e in errors] == [corral.Cancelled]
            assert (st.held, st.waiting) == (0, 0), (at, sweep.calls)
            assert sem.statistics().held == 0
            assert rpm.available() == pytest.approx(5, abs=0.01), (at, sweep.calls)
            assert client.zcard(f"corral:{{{tag}}}:rl:r:q") == 0
        if not sweep.fired:
            assert at >= 2, sweep.calls
            break
    else:
        pytest.fail("more steps than MAX_STEPS")


def test_async_joint_acquire_cancelled_at_every_loop_step_charges_nothing(redis_url: str) -> None:
    """Cancel a joint acquire after 0, 1, 2, ... event-loop steps: inside its script call,
    queued, and asleep until the instant it was granted as of (a spent rate of one unit per
    90 ms: the grant lies just ahead). Each time Redis ends as it was (the rate's schedule,
    read by test_ratelimit's ``_Schedule``, net of late-return shifts; no permit held or
    queued), or with that one grant."""
    from .test_ratelimit import _Schedule

    async def main() -> None:
        async with connect_async(redis_url) as ac:
            rl = corral.redis.RateLimit(ac, "s", 1, per=0.05, burst=1, headroom=0.04)
            sem = corral.redis.Semaphore(ac, "s", 1, lease=LEASE)  # tag: its name, "s"
            await sem.server_statistics()
            await ac.hset(sem._k.keys[4], "t0", "0")
            lim = corral.redis.Limits(rl, sem)
            outcomes = set()
            for k in range(40):
                await (await lim.acquire()).release()  # spent: the next one waits
                before = await _Schedule.read(ac, "s")
                task = asyncio.create_task(_awaited(lim.acquire()))
                for _ in range(k):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    grant = await task
                    outcomes.add("granted")
                    await grant.release()
                    continue  # it completed first: its grant stands
                except asyncio.CancelledError:
                    outcomes.add("cancelled")
                after = await _Schedule.read(ac, "s")
                assert after.charged_since(before) <= 1, k  # (1 us: the doubles' rounding)
                st = await sem.server_statistics()
                assert (st.held, st.waiting) == (0, 0), k
                assert sem.statistics().held == 0
                assert await ac.zcard("corral:{s}:rl:s:q") == 0
            assert "cancelled" in outcomes

    asyncio.run(main())


async def _awaited(acq: Any) -> Any:
    return await acq


def test_async_joint_acquire_cancelled_again_while_it_leaves_leaves_no_trace(
    redis_url: str,
) -> None:
    """A queued joint acquire is cancelled, and cancelled again while its leave is on the
    way: the leave still runs to its end (out of the rate queue and the semaphore's), or the
    entries would hold the head of both queues until their leases ran out."""

    async def main() -> None:
        async with connect_async(redis_url) as ac:
            rpm = corral.redis.RateLimit(ac, "r", burst=5, tag="dc", **SLOW)
            sem = corral.redis.Semaphore(ac, "s", 1, lease=LEASE, tag="dc")
            await sem.server_statistics()
            await ac.hset(sem._k.keys[4], "t0", "0")
            blocker = await sem.acquire()
            task = asyncio.create_task(_awaited(corral.redis.Limits(rpm, sem).acquire()))
            inner = rpm._s["RL_LEAVE"]

            async def leave(*, keys: Any, args: Any) -> Any:
                task.cancel()  # again, while this leave is in flight
                await asyncio.sleep(0)
                return await inner(keys=keys, args=args)

            rpm._s["RL_LEAVE"] = leave
            while (await sem.server_statistics()).waiting != 1:
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            st = await sem.server_statistics()
            assert (st.held, st.waiting) == (1, 0)
            assert await ac.zcard("corral:{dc}:rl:r:q") == 0
            await blocker.release()

    asyncio.run(main())
