"""corral.redis on a real 3-master Redis Cluster (loopback ports), both flavours.

Every key of a primitive shares the hash tag ``{name}``, so each script touches one slot.
This file starts its own small cluster (a module fixture) to check the scripts; the shared
cluster fixture of conftest.py, when it lands, can replace it.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import corral.redis
import corral.threads.redis

from .conftest import REDIS_SERVER, _unavailable, wait_for

REDIS_CLI = shutil.which("redis-cli")
CREATE = ["--cluster-replicas", "0", "--cluster-yes"]


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        p = random.randrange(20000, 40000)
        try:
            for q in (p, p + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", q))
        except OSError:
            continue
        return p
    raise RuntimeError("no free port pair for a cluster node")


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    pytest.importorskip("redis")
    if REDIS_SERVER is None or REDIS_CLI is None:
        _unavailable("redis-server and redis-cli are needed for a cluster")
    assert REDIS_SERVER is not None
    d = tempfile.mkdtemp(prefix="corral-cluster-")
    ports = [_cluster_port() for _ in range(3)]
    procs = []
    try:
        for p in ports:
            args = ["--bind", "127.0.0.1", "--port", str(p), "--dir", d, "--save", ""]
            args += ["--appendonly", "no", "--cluster-enabled", "yes", "--loglevel", "warning"]
            args += ["--cluster-config-file", f"nodes-{p}.conf"]
            procs.append(subprocess.Popen([REDIS_SERVER, *args], stdout=subprocess.DEVNULL))
        for p in ports:
            wait_for(lambda p=p: _cli(p, "PING") == "PONG", timeout=30)
        out = subprocess.run(
            [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), *CREATE],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        for p in ports:
            wait_for(lambda p=p: "cluster_state:ok" in _cli(p, "CLUSTER", "INFO"), timeout=30)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        shutil.rmtree(d, ignore_errors=True)


def _cli(port: int, *args: str) -> str:
    assert REDIS_CLI is not None
    out = subprocess.run(
        [REDIS_CLI, "-p", str(port), *args], capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


@pytest.mark.timeout(90)
def test_threads_semaphore_and_singleflight_on_a_cluster(cluster_url: str) -> None:
    from redis.cluster import RedisCluster

    c = RedisCluster.from_url(cluster_url)
    try:
        names = [f"cl{i}" for i in range(6)]  # spread over the three masters' slots
        for name in names:
            a = corral.threads.redis.Semaphore(c, name, 2, lease=0.5)
            b = corral.threads.redis.Semaphore(c, name, 2, lease=0.5)
            got: list[Any] = []
            with a.acquire(2) as p:
                t = threading.Thread(
                    target=lambda b=b, got=got: got.append(b.acquire(1, timeout=10))
                )
                t.start()
                wait_for(lambda a=a: a.server_statistics().waiting == 1)
                assert got == []
            t.join(10)
            assert [q.n for q in got] == [1]
            got[0].release()
            assert p.fence > 0
        sf = corral.threads.redis.SingleFlight(c, namespace="clsf", lease=1, share_for=1)
        assert sf.do("k", lambda: "v") == "v"
        assert sf.do("k", lambda: "again") == "v"  # the kept outcome (share_for)
        assert sf.statistics().shared_late == 1
    finally:
        c.close()


@pytest.mark.timeout(90)
async def test_async_semaphore_and_singleflight_on_a_cluster(cluster_url: str) -> None:
    from redis.asyncio.cluster import RedisCluster

    c = RedisCluster.from_url(cluster_url)
    try:
        for name in [f"acl{i}" for i in range(6)]:
            sem = corral.redis.Semaphore(c, name, 3, lease=0.5)
            async with sem.acquire(2) as p:
                assert not p.ctx.cancelled
            assert (await sem.server_statistics()).held == 0
        sf = corral.redis.SingleFlight(c, namespace="aclsf", lease=1)
        calls: list[int] = []

        async def load() -> str:
            calls.append(1)
            await asyncio.sleep(0.05)
            return "v"

        assert await asyncio.gather(*(sf.do("k", load) for _ in range(10))) == ["v"] * 10
        assert calls == [1]
    finally:
        await c.aclose()


def _name_elsewhere(cluster_url: str, prefix: str) -> str:
    """A name whose slot is owned by a master other than the node at ``cluster_url``."""
    from redis.cluster import RedisCluster

    with RedisCluster.from_url(cluster_url) as c:
        first = int(cluster_url.rsplit(":", 1)[1].split("/")[0])
        return next(
            f"{prefix}{i}"
            for i in range(100)
            if int(c.get_node_from_key(f"{{{prefix}{i}}}").port) != first
        )


@pytest.mark.timeout(60)
async def test_single_node_client_on_a_cluster_is_redis_unsupported(cluster_url: str) -> None:
    """A plain ``redis.Redis`` on one node of a cluster meets ``MOVED`` for the names other
    masters own: corral says what to pass instead (it leaked redis-py's MovedError)."""
    import redis
    import redis.asyncio as aredis

    name = _name_elsewhere(cluster_url, "mv")
    with redis.Redis.from_url(cluster_url) as c:
        sem = corral.threads.redis.Semaphore(c, name, 1, lease=1)
        with pytest.raises(corral.redis.RedisUnsupported, match=r"redis\.cluster\.RedisCluster"):
            sem.acquire(1, timeout=5)
        sf = corral.threads.redis.SingleFlight(c, namespace=name, lease=1)
        with pytest.raises(corral.redis.RedisUnsupported, match="redirected"):
            sf.do("k", lambda: 1)
    ac = aredis.Redis.from_url(cluster_url)
    try:
        asem = corral.redis.Semaphore(ac, name, 1, lease=1)
        with pytest.raises(corral.redis.RedisUnsupported, match="redirected"):
            await asem.acquire(1, timeout=5)
        asf = corral.redis.SingleFlight(ac, namespace=name, lease=1)
        with pytest.raises(corral.redis.RedisUnsupported, match="redirected"):
            await asf.do("k", lambda: asyncio.sleep(0, 1))
    finally:
        await ac.aclose()
