"""corral.redis.SingleFlight and corral.threads.redis.SingleFlight against a real redis-server.

Two SingleFlight objects on one Redis have separate in-memory tables, so within one test
process they stand for two processes; tests/redis_ext/test_faults.py uses real processes.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

import corral
import corral.redis
import corral.threads.redis
from corral import DeadlineExceeded

from .conftest import all_nodes, connect, connect_async, wait_for


class Boom(Exception):
    pass


# --- threads ---------------------------------------------------------------------------------


def test_threads_one_execution_for_two_processes(client: Any) -> None:
    a = corral.threads.redis.SingleFlight(client, namespace="t", lease=2)
    b = corral.threads.redis.SingleFlight(client, namespace="t", lease=2)
    started, release = threading.Event(), threading.Event()
    calls = []

    def load() -> str:
        calls.append(1)
        started.set()
        release.wait(10)
        return "v"

    results: list[Any] = []
    leader = [threading.Thread(target=lambda: results.append(a.do("k", load)))]
    leader[0].start()
    assert started.wait(10)
    # The leader runs: every other caller, in either "process", follows it.
    others = [
        threading.Thread(target=lambda sf=sf: results.append(sf.do("k", load)))
        for sf in (a, b)
        for _ in range(5)
    ]
    for t in others:
        t.start()
    wait_for(lambda: b.statistics().waiters == 5 and a.statistics().waiters == 6)
    wait_for(lambda: _followers(client, "t") == 1)
    release.set()
    for t in [*leader, *others]:
        t.join(10)
    assert results == ["v"] * 11
    assert len(calls) == 1
    sa, sb = a.statistics(), b.statistics()
    assert (sa.led, sa.followed, sb.led, sb.followed) == (1, 0, 0, 1)
    assert sa.in_flight == sb.in_flight == 0
    assert client.keys("{t}:sf:*:lease", **all_nodes(client)) == []


def _followers(client: Any, ns: str) -> int:
    return len(client.pubsub_channels(f"{{{ns}}}:sf:c:*", **all_nodes(client)))


def test_threads_error_is_shared_across_processes(client: Any) -> None:
    a = corral.threads.redis.SingleFlight(client, namespace="e", lease=2)
    b = corral.threads.redis.SingleFlight(client, namespace="e", lease=2)
    started, release = threading.Event(), threading.Event()

    def fail() -> None:
        started.set()
        release.wait(10)
        raise Boom("db down", 7)

    errors: list[BaseException] = []

    def call(sf: Any) -> None:
        try:
            sf.do("k", fail)
        except Exception as exc:
            errors.append(exc)

    t1 = threading.Thread(target=call, args=(a,))
    t1.start()
    assert started.wait(10)
    t2 = threading.Thread(target=call, args=(b,))
    t2.start()
    wait_for(lambda: _followers(client, "e") == 1)
    release.set()
    t1.join(10)
    t2.join(10)
    assert [type(e) for e in errors] == [Boom, Boom]
    assert all(e.args == ("db down", 7) for e in errors)


def test_unpicklable_error_becomes_remote_error(client: Any) -> None:
    a = corral.threads.redis.SingleFlight(client, namespace="u", lease=2)
    b = corral.threads.redis.SingleFlight(client, namespace="u", lease=2)
    started, release = threading.Event(), threading.Event()

    class Local(Exception):  # a local class: pickle cannot find it by name
        pass

    def fail() -> None:
        started.set()
        release.wait(10)
        raise Local("nope")

    out: dict[str, BaseException] = {}

    def call(name: str, sf: Any) -> None:
        try:
            sf.do("k", fail)
        except Exception as exc:
            out[name] = exc

    t1 = threading.Thread(target=call, args=("a", a))
    t1.start()
    assert started.wait(10)
    t2 = threading.Thread(target=call, args=("b", b))
    t2.start()
    wait_for(lambda: _followers(client, "u") == 1)
    release.set()
    t1.join(10)
    t2.join(10)
    assert type(out["a"]) is Local  # the leader's own callers get the real exception
    assert isinstance(out["b"], corral.redis.RemoteError)
    assert "Local" in str(out["b"])
    assert "nope" in str(out["b"])


class JsonSerializer:
    @staticmethod
    def dumps(obj: Any) -> bytes:
        return json.dumps(obj).encode()

    @staticmethod
    def loads(data: bytes) -> Any:
        return json.loads(data)


def test_pluggable_serializer(client: Any) -> None:
    sf = corral.threads.redis.SingleFlight(client, namespace="j", serializer=JsonSerializer())
    raw = client.register_script(
        "redis.call('SET', KEYS[1], 'x', 'PX', 60000) return 1"
    )  # a "leader" that another process holds
    raw(keys=["{j}:sf:k:lease"])
    # The follower decodes with the serializer: publish an outcome as the leader would.
    results: list[Any] = []
    t = threading.Thread(target=lambda: results.append(sf.do("k", lambda: None)))
    t.start()
    wait_for(lambda: _followers(client, "j") == 1)
    client.publish("{j}:sf:c:x", b"v" + JsonSerializer.dumps({"id": 7}))
    t.join(10)
    assert results == [{"id": 7}]
    # And as a leader, the value goes out through the serializer too.
    assert sf.do("other", lambda: [1, 2]) == [1, 2]


def test_dead_leader_is_taken_over_after_its_lease(client: Any) -> None:
    # A leader that died: its lease key stays until it expires, nobody renews it.
    client.set("{d}:sf:k:lease", "dead", px=300)
    sf = corral.threads.redis.SingleFlight(client, namespace="d", lease=0.3)
    assert sf.do("k", lambda: "fresh") == "fresh"
    s = sf.statistics()
    assert (s.led, s.takeovers) == (1, 1)


def test_leader_that_lost_its_lease_reports_lease_lost(client: Any) -> None:
    sf = corral.threads.redis.SingleFlight(client, namespace="l", lease=0.3)

    def stall() -> str:
        client.delete("{l}:sf:k:lease")  # as if it expired while this process stalled
        return "late"

    with pytest.raises(corral.redis.LeaseLost, match="'k'"):
        sf.do("k", stall)
    assert sf.do("k", lambda: "ok") == "ok"  # the key is usable again


def test_follower_sees_redis_lose_its_state(client: Any) -> None:
    client.set("{s}:sf:k:lease", "alive", px=60000)
    sf = corral.threads.redis.SingleFlight(client, namespace="s", lease=0.3)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            sf.do("k", lambda: "never")
        except Exception as exc:
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    wait_for(lambda: _followers(client, "s") == 1)
    client.flushall()  # what a restart without persistence does to the keys
    client.set("{s}:sf:k:lease", "other", px=60000)  # and someone else starts afresh
    t.join(10)
    assert [type(e) for e in errors] == [corral.redis.RedisUnavailable]
    assert "lost its state" in str(errors[0])


def test_caller_timeout_leaves_the_call_running(client: Any) -> None:
    sf = corral.threads.redis.SingleFlight(client, namespace="to", lease=2)
    release = threading.Event()
    results: list[Any] = []

    def slow() -> str:
        release.wait(10)
        return "v"

    t = threading.Thread(target=lambda: results.append(sf.do("k", slow)))
    t.start()
    wait_for(lambda: sf.statistics().in_flight == 1)
    with pytest.raises(DeadlineExceeded):
        sf.do("k", slow, timeout=0.05)
    release.set()
    t.join(10)
    assert results == ["v"]


@pytest.mark.parametrize(
    ("kwargs", "exc", "text"),
    [
        ({"namespace": ""}, ValueError, "namespace"),
        ({"namespace": 3}, TypeError, "namespace"),
        ({"lease": 0.01}, ValueError, "lease"),
        ({"lease": "1"}, TypeError, "lease"),
        ({"serializer": object()}, TypeError, "serializer"),
    ],
)
def test_bad_arguments(client: Any, kwargs: dict[str, Any], exc: type, text: str) -> None:
    with pytest.raises(exc, match=text):
        corral.threads.redis.SingleFlight(client, **kwargs)


def test_bad_client_and_key(redis_url: str, client: Any) -> None:

    with pytest.raises(TypeError, match="client"):
        corral.threads.redis.SingleFlight(object())
    with (
        connect(redis_url, decode_responses=True) as text_client,
        pytest.raises(ValueError, match="decode_responses"),
    ):
        corral.threads.redis.SingleFlight(text_client)
    sf = corral.threads.redis.SingleFlight(client)
    with pytest.raises(TypeError, match="key"):
        sf.do(("tuple",), lambda: 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fn"):
        sf.do("k", 3)  # type: ignore[arg-type]


# --- asyncio ---------------------------------------------------------------------------------


async def test_async_one_execution_for_many_callers(redis_url: str) -> None:

    calls = []

    async def load(user: int) -> dict[str, int]:
        calls.append(user)
        await asyncio.sleep(0.05)
        return {"id": user}

    async with connect_async(redis_url) as c1, connect_async(redis_url) as c2:
        a = corral.redis.SingleFlight(c1, namespace="as", lease=2)
        b = corral.redis.SingleFlight(c2, namespace="as", lease=2)
        out = await asyncio.gather(*(sf.do(7, load, 7) for sf in (a, b) for _ in range(50)))
    assert out == [{"id": 7}] * 100
    assert calls == [7]
    sa, sb = a.statistics(), b.statistics()
    assert sa.led + sb.led == 1
    assert sa.followed + sb.followed == 1
    assert sa.joined + sb.joined == 98


async def test_async_sync_fn_runs_in_a_thread(redis_url: str) -> None:

    async with connect_async(redis_url) as c:
        sf = corral.redis.SingleFlight(c, namespace="sync")
        assert await sf.do("k", sorted, [3, 1, 2]) == [1, 2, 3]


async def test_async_abandoned_leader_hands_over_at_once(redis_url: str) -> None:

    async with connect_async(redis_url) as c1, connect_async(redis_url) as c2:
        a = corral.redis.SingleFlight(c1, namespace="ab", lease=30)  # a long lease...
        b = corral.redis.SingleFlight(c2, namespace="ab", lease=30)
        started = asyncio.Event()

        async def forever() -> str:
            started.set()
            await asyncio.sleep(3600)
            return "never"

        async def quick() -> str:
            return "b's"

        leader = asyncio.create_task(a.do("k", forever))
        await started.wait()
        follower = asyncio.create_task(b.do("k", quick))
        while not await c1.pubsub_channels("{ab}:sf:c:*", **all_nodes(c1)):
            await asyncio.sleep(0.005)
        leader.cancel()  # a's only caller leaves: a gives the lease up, b takes over now
        with pytest.raises(asyncio.CancelledError):
            await leader
        assert await asyncio.wait_for(follower, 10) == "b's"  # ...not waited out
        assert b.statistics().takeovers == 1


async def test_async_error_and_timeout(redis_url: str) -> None:

    async def fail() -> None:
        raise Boom("x")

    async with connect_async(redis_url) as c:
        sf = corral.redis.SingleFlight(c, namespace="ae", lease=2)
        with pytest.raises(Boom):
            await sf.do("k", fail)
        ctx = corral.with_timeout(corral.background(), 0.05)
        with pytest.raises(DeadlineExceeded):
            await sf.do("k", asyncio.sleep, 0.5, ctx=ctx)
        with pytest.raises(DeadlineExceeded):
            await sf.do("k", asyncio.sleep, 0.5, timeout=0.05)
        await asyncio.sleep(0)  # let the abandoned flight finish its cleanup
        for _ in range(100):
            if not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                break
            await asyncio.sleep(0.01)
