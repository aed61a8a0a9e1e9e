"""The fault tests of corral.redis: real processes (and a real redis-server restart).

Processes come from worker.py: a fresh interpreter that forks the fleet (never the threaded
pytest process). The test drives them through Redis (start tokens, BLPOP for the leader or
victim pid) and reads what each reported.

On the cluster kind the workers build ``RedisCluster`` clients, and a fault hits the master
that owns the slot of the primitive's hash tag (``_owner``): it is stopped, SIGSTOPped,
SIGKILLed and restarted empty (its ``nodes.conf`` kept, so it rejoins owning the same slots
with no keys), or has its scripts flushed, while the other masters run on.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import corral.redis
import corral.threads.redis

from .conftest import (
    START_TIMEOUT,
    ClusterServer,
    RedisServer,
    ServerKind,
    all_nodes,
    cluster_env,
    connect,
    connect_async,
)

WORKER = Path(__file__).with_name("worker.py")


def _spawn(mode: str, url: str, ns: str, nprocs: int, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), mode, url, ns, str(nprocs), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cluster_env(url),  # on a cluster, the workers build RedisCluster clients
    )


def _go(client: Any, ns: str, n: int) -> None:
    """Wait (BLPOP) until ``n`` children are ready, then start them all."""
    for _ in range(n):
        assert client.blpop([f"{ns}:ready"], timeout=60) is not None, "a child never started"
    client.rpush(f"{ns}:go", *range(n))


def _finish(proc: subprocess.Popen[str]) -> dict[int, int]:
    try:
        out, err = proc.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the fleet hung:\n{err}")
    assert proc.returncode == 0, err
    return {int(pid): status for pid, status in json.loads(out).items()}


def _reports(client: Any, ns: str) -> list[dict[str, Any]]:
    return [json.loads(r) for r in client.lrange(f"{ns}:report", 0, -1)]


def _followers(client: Any, ns: str, n: int) -> None:
    """Wait until ``n`` processes follow the one flight of ``ns`` (pub/sub subscribers).

    Exactly ``n``, not "at least": every test gives the flight ``n`` followers, and Valkey
    9.1.2 answers ``PUBSUB NUMSUB`` with a pointer-sized number (1.4e14) while the channel's
    subscriber table grows past 8, 16, 32... entries. "At least 49" once let the leader of 50
    processes finish while 7 followed; two processes that joined after it had finished
    rightly ran the call again, and the test failed (CI, Python 3.15).
    """
    end = time.monotonic() + 30
    every = all_nodes(client)
    while True:
        chans = client.pubsub_channels(f"{{{ns}}}:sf:c:*", **every)
        if len(chans) == 1 and client.pubsub_numsub(chans[0], **every)[0][1] == n:
            return
        assert time.monotonic() < end, f"{n} followers never subscribed"
        time.sleep(0.01)


# --- where a fault hits: the server, or the cluster master that owns the primitive's slot ----


def _owner(server: RedisServer | ClusterServer, key: str) -> RedisServer:
    """The process holding ``key``: the one server, or the master owning the key's slot
    (``CLUSTER KEYSLOT``, then the client's slot table, checked against ``CLUSTER NODES``)."""
    if not isinstance(server, ClusterServer):
        return server
    import redis

    with redis.Redis(port=server.port, decode_responses=True) as r:
        slot = int(r.execute_command("CLUSTER", "KEYSLOT", key))
        nodes = r.execute_command("CLUSTER", "NODES")
    with connect(server.url) as c:
        port = int(c.nodes_manager.get_node_from_slot(slot).port)
    text = nodes if isinstance(nodes, str) else "\n".join(nodes) if isinstance(nodes, list) else ""
    if text:  # a raw reply: the line of the node at ``port`` lists a range with the slot
        line = next(ln for ln in text.splitlines() if f":{port}@" in ln)
        ranges = [p.split("-") for p in line.split()[8:] if not p.startswith("[")]
        assert any(int(a[0]) <= slot <= int(a[-1]) for a in ranges), (slot, line)
    return next(n for n in server.nodes if n.port == port)


def _owner_client(client: Any, key: str) -> Any:
    """A plain client on the node holding ``key`` (the server itself, on one server)."""
    if not hasattr(client, "get_node_from_key"):
        return client
    import redis

    node = client.get_node_from_key(key)
    return redis.Redis(host=node.host, port=node.port)


def _cluster_ok(server: RedisServer | ClusterServer) -> None:
    if isinstance(server, ClusterServer):  # every node says cluster_state:ok again
        server.wait_ok(time.monotonic() + START_TIMEOUT)


def _restart_empty(server: RedisServer | ClusterServer, *keys: str) -> None:
    """Restart without persistence: the server (same port), or on a cluster each master
    owning one of ``keys``, SIGKILLed and started again on its port with its nodes.conf:
    it rejoins owning the same slots, with no keys."""
    if not isinstance(server, ClusterServer):
        server.restart()
        return
    for node in {n.port: n for n in (_owner(server, k) for k in keys)}.values():
        _kill_and_start(node)
    _cluster_ok(server)


def _own_cluster(kind: ServerKind, request: pytest.FixtureRequest) -> ClusterServer:
    """The test's own cluster (``own_server``), or a skip on a single-server kind, decided
    before a server is started for nothing."""
    if not kind.cluster:
        pytest.skip("CLUSTERDOWN is a Redis Cluster's reply: a single server never gives it")
    server = request.getfixturevalue("own_server")
    assert isinstance(server, ClusterServer)
    return server


def _kill_and_start(node: RedisServer) -> None:
    """SIGKILL one node and start it again on its port, with its files (nodes.conf)."""
    assert node.proc is not None
    node.proc.kill()
    node.proc.wait()
    node.stop()  # (reaped: closes its pipe)
    node.start()


@pytest.mark.slow
@pytest.mark.timeout(120)  # a fleet on a loaded 2-core machine: seconds, but margin
def test_50_processes_x_100_callers_one_execution(client: Any, redis_url: str) -> None:
    proc = _spawn("sf_many", redis_url, "m", 50, 100)
    try:
        _go(client, "m", 50)
        _followers(client, "m", 49)  # every other process follows the one leader
        client.rpush("m:release", 1)
    finally:
        statuses = _finish(proc)
    assert sorted(statuses.values()) == [0] * 50
    reports = _reports(client, "m")
    assert len(reports) == 50
    assert [r["results"] for r in reports] == [["value-1"] * 100] * 50
    assert client.get("m:executions") == b"1"  # counted apart from corral's own keys


@pytest.mark.slow
@pytest.mark.timeout(120)  # a fleet on a loaded 2-core machine: seconds, but margin
def test_sigkilled_leader_is_taken_over_within_lease_plus_1s(client: Any, redis_url: str) -> None:
    lease = 0.5
    proc = _spawn("sf_kill", redis_url, "k", 4, 10, lease)
    try:
        _go(client, "k", 4)
        got = client.blpop(["k:leader"], timeout=30)
        assert got is not None
        leader = int(got[1])
        for _ in range(4):  # every caller of every process joined its process's flight
            assert client.blpop(["k:joined"], timeout=30) is not None
        _followers(client, "k", 3)
        os.kill(leader, signal.SIGKILL)
        killed_at = time.time()
    finally:
        statuses = _finish(proc)
    assert statuses.pop(leader) == -signal.SIGKILL
    assert sorted(statuses.values()) == [0, 0, 0]
    reports = _reports(client, "k")
    assert len(reports) == 3
    for r in reports:
        summary = [(sorted({v for v, _ in x["results"]}), x.get("stats")) for x in reports]
        assert [v for v, _ in r["results"]] == ["value-2"] * 10, summary
        late = [t - killed_at for _, t in r["results"] if t > killed_at + lease + 1.0]
        assert not late, f"results {late} s after the kill, more than lease + 1 s"
    assert client.get("k:executions") == b"2"  # the killed one, then exactly one takeover


def test_redis_restart_mid_call_gives_typed_errors(own_server: RedisServer) -> None:
    c1 = connect(own_server.url)
    c2 = connect(own_server.url)
    try:
        a = corral.threads.redis.SingleFlight(c1, namespace="r", lease=0.5)
        b = corral.threads.redis.SingleFlight(c2, namespace="r", lease=0.5)
        sem = corral.threads.redis.Semaphore(c1, "r:sem", 2, lease=0.5)
        executions = []
        started, release = threading.Event(), threading.Event()

        def load() -> str:
            executions.append(1)
            started.set()
            release.wait(20)
            return "v"

        outcomes: dict[str, Any] = {}

        def call(name: str, sf: Any) -> None:
            try:
                outcomes[name] = sf.do("k", load)
            except Exception as exc:
                outcomes[name] = exc

        held = sem.acquire(2)
        ta = threading.Thread(target=call, args=("leader", a))
        ta.start()
        assert started.wait(10)
        tb = threading.Thread(target=call, args=("follower", b))
        tb.start()
        end = time.monotonic() + 10
        while not c1.pubsub_channels("{r}:sf:c:*", **all_nodes(c1)):
            assert time.monotonic() < end
            time.sleep(0.005)

        _restart_empty(own_server, "{r}", "{r:sem}")  # same port(s), every key lost
        release.set()
        ta.join(30)
        tb.join(30)
        assert not ta.is_alive(), "the leader's caller hung"
        assert not tb.is_alive(), "the follower's caller hung"
        assert isinstance(outcomes["leader"], corral.redis.LeaseLost)
        assert isinstance(outcomes["follower"], corral.redis.RedisUnavailable)
        assert executions == [1]  # nobody re-ran the call behind the callers' backs
        with pytest.raises(corral.redis.LeaseLost):
            held.release()  # the permits were lost with Redis's state: said, not hidden

        # Redis is back: new calls work.
        assert b.do("k", lambda: "fresh") == "fresh"
        with sem.acquire(2, timeout=5):
            assert sem.server_statistics().held == 2
    finally:
        c1.close()
        c2.close()


def test_redis_down_is_a_typed_error_not_a_hang(own_server: RedisServer) -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    c = connect(own_server.url, retry=Retry(NoBackoff(), 1))
    try:
        sf = corral.threads.redis.SingleFlight(c, namespace="down")
        sem = corral.threads.redis.Semaphore(c, "down", 1)
        down = _owner(own_server, "{down}")  # on a cluster: the others run on
        down.stop()
        with pytest.raises(corral.redis.RedisUnavailable, match="unreachable"):
            sf.do("k", lambda: 1)
        with pytest.raises(corral.redis.RedisUnavailable):
            sem.acquire(1)
        down.start()
        _cluster_ok(own_server)
        assert sf.do("k", lambda: 1) == 1
    finally:
        c.close()


@pytest.mark.timeout(90)
async def test_restarting_cluster_master_is_redis_unavailable_not_clusterdown(
    redis_kind: ServerKind, request: pytest.FixtureRequest
) -> None:
    """A master restarted with its nodes.conf answers ``CLUSTERDOWN`` for about 2 s after it
    is back (until it trusts its view of the cluster); a cluster client retries that, and
    raises ``ClusterDownError`` once its retries are spent. corral leaked it (a
    ``ResponseError``, not a connection error): now it is ``RedisUnavailable``, both flavours."""
    own_server = _own_cluster(redis_kind, request)
    import redis
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    node = _owner(own_server, "{cd}")
    c = connect(own_server.url, retry=Retry(NoBackoff(), 1))  # retries spent in ~0.5 s
    ac = connect_async(own_server.url, retry=AsyncRetry(NoBackoff(), 1))
    unavailable: list[str] = []

    async def during_clusterdown(op: Any) -> None:
        """``op`` right after the master restarted: RedisUnavailable, never redis-py's
        error. If the machine stalled past the ~2 s window and ``op`` succeeded, again."""
        for _ in range(5):
            _kill_and_start(node)  # back on its port, its slots and no keys: not yet trusted
            try:
                with redis.Redis(port=node.port) as raw:
                    raw.get("{cd}")
                continue  # (already past the window)
            except redis.exceptions.ClusterDownError:
                pass  # the fault is there
            try:
                result = op()
                if asyncio.iscoroutine(result):
                    await result
            except corral.redis.RedisUnavailable as exc:
                unavailable.append(str(exc))
                return
        pytest.fail("never met the restarting master's CLUSTERDOWN window")

    try:
        sf = corral.threads.redis.SingleFlight(c, namespace="cd", lease=1)
        sem = corral.threads.redis.Semaphore(c, "cd", 1, lease=1)
        asf = corral.redis.SingleFlight(ac, namespace="cd", lease=1)
        asem = corral.redis.Semaphore(ac, "cd", 1, lease=1)
        assert sf.do("k", lambda: 1) == 1  # scripts loaded, topology known
        assert await asf.do("k", lambda: asyncio.sleep(0, 1)) == 1

        def hold() -> None:
            with sem.acquire(1, timeout=5):
                pass

        async def ahold() -> None:
            async with asem.acquire(1, timeout=5):
                pass

        await during_clusterdown(lambda: sf.do("k", lambda: 2))
        await during_clusterdown(hold)
        await during_clusterdown(lambda: asf.do("k", lambda: asyncio.sleep(0, 3)))
        await during_clusterdown(ahold)
        assert len(unavailable) == 4
        assert all("cluster is down" in text for text in unavailable), unavailable
        _cluster_ok(own_server)
        assert sf.do("k", lambda: 4) == 4  # the cluster is ok again: calls work
    finally:
        c.close()
        await ac.aclose()


@pytest.mark.timeout(60)
def test_leader_renewal_meeting_clusterdown_is_retried_not_a_dead_thread(
    redis_kind: ServerKind, request: pytest.FixtureRequest
) -> None:
    """A SingleFlight leader whose master restarts mid-call: its renewals meet the restarted
    master's ``CLUSTERDOWN`` window, then find the lease gone. The renewal thread retried
    connection errors only, so ``ClusterDownError`` killed it (an unhandled thread
    exception); now it retries, and the leader learns ``LeaseLost`` from the refusal."""
    own_server = _own_cluster(redis_kind, request)
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    c = connect(own_server.url, retry=Retry(NoBackoff(), 1))  # retries spent in ~0.5 s
    try:
        sf = corral.threads.redis.SingleFlight(c, namespace="rn", lease=1)
        started, release = threading.Event(), threading.Event()
        outcome: list[Any] = []

        def load() -> str:
            started.set()
            release.wait(30)
            return "v"

        def call() -> None:
            try:
                outcome.append(sf.do("k", load))
            except Exception as exc:
                outcome.append(exc)

        t = threading.Thread(target=call)
        t.start()
        assert started.wait(10)
        _restart_empty(own_server, "{rn}")  # renewals meet CLUSTERDOWN until it is ok
        end = time.monotonic() + 10
        while sf.statistics().lost < 1:  # the renewal found the lease gone (or timed out)
            assert time.monotonic() < end, sf.statistics()
            time.sleep(0.01)
        release.set()
        t.join(10)
        assert not t.is_alive()
        assert len(outcome) == 1
        assert isinstance(outcome[0], corral.redis.LeaseLost), outcome
    finally:
        c.close()


@pytest.mark.timeout(60)
async def test_async_leader_renewal_meeting_clusterdown_is_retried(
    redis_kind: ServerKind, request: pytest.FixtureRequest
) -> None:
    """The asyncio twin, with the master restarted from a thread so that the renewals and
    the leader's clean-up run during the ``CLUSTERDOWN`` window: its caller got redis-py's
    ``ClusterDownError`` from the clean-up after the lost lease instead of ``LeaseLost``;
    nor may the renewal task end with an exception nobody retrieved."""
    own_server = _own_cluster(redis_kind, request)
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    ac = connect_async(own_server.url, retry=Retry(NoBackoff(), 1))  # spent in ~0.5 s
    loop = asyncio.get_running_loop()
    handler = loop.get_exception_handler()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        sf = corral.redis.SingleFlight(ac, namespace="arn", lease=1)
        started, release = asyncio.Event(), asyncio.Event()

        async def load() -> str:
            started.set()
            await release.wait()
            return "v"

        call = asyncio.ensure_future(sf.do("k", load))
        await asyncio.wait_for(started.wait(), 10)
        # In a thread: the renewals run on this loop while the master comes back.
        await asyncio.to_thread(_restart_empty, own_server, "{arn}")
        end = time.monotonic() + 10
        while sf.statistics().lost < 1:  # the renewal found the lease gone (or timed out)
            assert time.monotonic() < end, sf.statistics()
            await asyncio.sleep(0.01)
        release.set()
        with pytest.raises(corral.redis.LeaseLost):
            await asyncio.wait_for(call, 10)
        gc.collect()  # a task that ended with an exception nobody retrieved is reported now
        assert [c.get("exception") for c in reported] == []
    finally:
        loop.set_exception_handler(handler)
        await ac.aclose()


@pytest.mark.slow
@pytest.mark.timeout(120)  # a fleet on a loaded 2-core machine: seconds, but margin
def test_semaphore_20_processes_never_over_8_and_dead_holder_returns(
    client: Any, redis_url: str
) -> None:
    lease = 1.0  # a process stalled longer than this on a loaded machine loses its permits
    proc = _spawn("sem", redis_url, "s", 20, lease, 5)
    try:
        got = client.blpop(["s:victim"], timeout=30)
        assert got is not None
        victim = int(got[1])
        os.kill(victim, signal.SIGKILL)  # dies holding 5 of the 8 permits
        _go(client, "s", 20)
    finally:
        statuses = _finish(proc)
    assert statuses.pop(victim) == -signal.SIGKILL
    assert sorted(statuses.values()) == [0] * 20  # weights 4 and 5 got through: 5 came back
    peaks = [r["peak"] for r in _reports(client, "s")]
    assert len(peaks) == 20
    assert 1 <= max(peaks) <= 8, peaks
    assert client.get("s:counter") == b"0"
    st = corral.threads.redis.Semaphore(client, "s:sem", 8).server_statistics()
    assert (st.held, st.waiting) == (0, 0)  # nothing leaked
    assert client.keys("{s:sem}:*", **all_nodes(client)) == [b"{s:sem}:e"]  # only the epoch


# --- the Semaphore under real faults: permits in use counted outside corral -----------------


def _intervals(log: Path) -> tuple[dict[int, list[float]], list[str]]:
    """fence -> [granted at, last work at] from the workers' log, and its raw lines."""
    lines = log.read_text().splitlines() if log.exists() else []
    spans: dict[int, list[float]] = {}
    for line in lines:
        kind, fence, t, *_ = line.split()
        f, at = int(fence), float(t)
        if kind == "G":
            assert f not in spans, f"fence {f} granted twice"
            spans[f] = [at, at]
        elif kind == "W":
            spans[f][1] = max(spans[f][1], at)
    return spans, lines


def _max_in_use(spans: dict[int, list[float]]) -> int:
    """The most grants whose [grant, last work] overlap at one instant: the permits in use,
    as the holders' own work shows them (a grant is counted from the moment acquire
    returned; a holder's last unit of work was begun while its ctx was still live)."""
    events = sorted([(a, 1) for a, _ in spans.values()] + [(b, -1) for _, b in spans.values()])
    # At one instant an end sorts before a start (-1 < 1): touching is not overlapping.
    peak = cur = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return peak


def _wait_for_grant(log: Path, after: float = 0.0) -> tuple[int, int]:
    """(pid, fence) of the first grant logged after ``after`` (monotonic)."""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        for line in log.read_text().splitlines() if log.exists() else []:
            kind, fence, t, pid, _ = line.split()
            if kind == "G" and float(t) > after:
                return int(pid), int(fence)
        time.sleep(0.01)
    pytest.fail("no grant was logged")


SIZE, NPROCS, LEASE, HOLD = 2, 4, 1.0, 0.4


def _sem_run(
    client: Any, url: str, ns: str, log: Path, flavour: str, inject: Any, seconds: float = 4.5
) -> tuple[dict[int, list[float]], list[str], list[dict[str, Any]]]:
    proc = _spawn("sem_hold", url, ns, NPROCS, flavour, LEASE, SIZE, seconds, HOLD, log)
    try:
        _go(client, ns, NPROCS)
        inject()
    finally:
        statuses = _finish(proc)
    assert sorted(statuses.values()) == [0] * NPROCS
    spans, lines = _intervals(log)
    assert _max_in_use(spans) <= SIZE, "\n".join(lines)
    return spans, lines, _reports(client, ns)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("flavour", ["threads", "asyncio", "mixed"])
def test_sigstopped_holder_stops_before_its_successor_is_granted(
    client: Any, redis_url: str, tmp_path: Path, flavour: str
) -> None:
    log = tmp_path / "log"
    stopped: list[float] = []

    def inject() -> None:
        pid, _ = _wait_for_grant(log)
        os.kill(pid, signal.SIGSTOP)  # paused past its lease (a GC pause, a page storm)
        stopped[:] = [pid, time.monotonic()]
        time.sleep(LEASE * 1.8)  # the fault's length, not a synchronisation
        os.kill(pid, signal.SIGCONT)
        stopped.append(time.monotonic())

    spans, lines, reports = _sem_run(client, redis_url, f"ss{flavour}", log, flavour, inject)
    pid, t_stop, t_cont = stopped
    lost = {r["pid"]: r["lost"] for r in reports}
    assert lost[pid] >= 1, lines  # it learnt it had lost the lease
    # Its permit went to another process while it was stopped: the others alone had all
    # SIZE permits in use at once in that window (and the overlap check above held).
    others = {
        int(f): spans[int(f)]
        for kind, f, t, p, _ in (line.split() for line in lines)
        if kind == "G" and int(p) != pid and t_stop < float(t) < t_cont
    }
    assert _max_in_use(others) == SIZE, lines


@pytest.mark.timeout(60)
def test_sigstopped_redis_server_past_the_lease(own_server: RedisServer, tmp_path: Path) -> None:
    log = tmp_path / "log"
    node = _owner(own_server, "{sr:sem}")
    with connect(own_server.url, socket_timeout=120) as client:

        def inject() -> None:
            _wait_for_grant(log)
            assert node.proc is not None
            os.kill(node.proc.pid, signal.SIGSTOP)  # every holder's renewals stall
            time.sleep(LEASE * 1.8)
            os.kill(node.proc.pid, signal.SIGCONT)

        _, lines, reports = _sem_run(client, own_server.url, "sr", log, "mixed", inject)
    # The holders gave up on their own clocks while Redis was silent.
    assert sum(r["lost"] for r in reports) >= 1, lines


@pytest.mark.timeout(60)
def test_redis_restarted_empty_mid_run(own_server: RedisServer, tmp_path: Path) -> None:
    log = tmp_path / "log"
    restarted: list[float] = []
    with connect(own_server.url, socket_timeout=120) as client:

        def inject() -> None:
            _wait_for_grant(log)
            # Every key lost, the epoch and the fence counter included.
            _restart_empty(own_server, "{re:sem}")
            restarted.append(time.monotonic())

        spans, lines, reports = _sem_run(client, own_server.url, "re", log, "mixed", inject)
    before = [f for f, (a, _) in spans.items() if a < restarted[0]]
    after = [f for f, (a, _) in spans.items() if a > restarted[0]]
    assert after, lines  # the fleet went on after the restart
    assert min(after) > max(before), lines  # fences still increase across the lost state
    assert sum(r["lost"] for r in reports) >= 1, lines


@pytest.mark.timeout(60)
def test_script_flush_mid_run(client: Any, redis_url: str, tmp_path: Path) -> None:
    log = tmp_path / "log"
    flushed: list[float] = []

    def inject() -> None:
        _wait_for_grant(log)
        # On a cluster only the master of the semaphore's slot forgets: the cluster client
        # meets NOSCRIPT there alone, and its SCRIPT LOAD goes to every master.
        node = _owner_client(client, "{fl:sem}")
        try:
            for _ in range(3):
                node.script_flush()  # every script forgotten: NOSCRIPT, then reloaded
                flushed.append(time.monotonic())
                time.sleep(0.3)
        finally:
            if node is not client:
                node.close()

    spans, lines, _ = _sem_run(client, redis_url, "fl", log, "mixed", inject)
    assert any(a > flushed[-1] for a, _ in spans.values()), lines


# --- fleet singleflight for short calls ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("share_for", [0.0, 5.0])
def test_fleet_singleflight_short_calls_one_execution_per_key_wave_with_share_for(
    client: Any, redis_url: str, tmp_path: Path, share_for: float
) -> None:
    """Issue 18's trial: 4 processes x 100 callers on 20 keys, a 50 ms query, the machine
    loaded by the run itself. Executions are counted from an O_APPEND log, not by corral."""
    nprocs, callers, keys, waves, query = 4, 100, 20, 6, 0.05
    ns = f"sw{int(share_for)}"
    log = tmp_path / "log"
    proc = _spawn("sf_waves", redis_url, ns, nprocs, callers, keys, waves, query, share_for, log)
    try:
        for w in range(waves):
            for _ in range(nprocs):
                assert client.blpop([f"{ns}:ready"], timeout=60) is not None
            client.rpush(f"{ns}:go:{w}", *range(nprocs))
    finally:
        statuses = _finish(proc)
    assert sorted(statuses.values()) == [0] * nprocs
    reports = _reports(client, ns)
    assert [r["bad"] for r in reports] == [[]] * nprocs  # every caller got its key's value
    counts = collections.Counter(log.read_text().split())
    per = [counts[f"w{w}:k{i}"] for w in range(waves) for i in range(keys)]
    print(
        f"share_for={share_for}: {sum(per)} executions for {len(per)} key-waves"
        f" (max {max(per)} per key-wave); late joins {sum(r['late'] for r in reports)}"
    )
    assert min(per) >= 1
    if share_for:
        assert per == [1] * len(per)
