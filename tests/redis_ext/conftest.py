"""A real ``redis-server`` for the tests of ``corral.redis``: started on a free loopback port,
without persistence (a restart loses every key, as a crashed cache would), stopped after.

When the ``redis`` package or the ``redis-server`` binary is missing, these tests are skipped
on a developer's machine and *fail* under CI (``CI`` set): CI must never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
)


def wait_for(cond: Any, timeout: float = 10.0) -> None:
    """Wait for a condition on state another thread or Redis changes (no event to wait on)."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"corral.redis tests cannot run under CI: {why}", pytrace=False)
    pytest.skip(why)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process; ``restart()`` keeps its port."""

    def __init__(self) -> None:
        assert REDIS_SERVER is not None
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="corral-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir]
        args += ["--save", "", "--appendonly", "no", "--loglevel", "warning"]
        self.proc = subprocess.Popen(
            [REDIS_SERVER, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # Readiness: the server accepts a PING (a process start has no event to wait on).
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"redis-server exited at start: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING within 20 s")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _check_available() -> None:
    try:
        import redis  # noqa: F401
    except ImportError:
        _unavailable("the redis package is not installed (pip install 'corral[redis]')")
    if REDIS_SERVER is None:
        _unavailable("redis-server is not installed (apt-get install redis-server)")


@pytest.fixture(scope="session")
def _shared_server() -> Iterator[RedisServer]:
    _check_available()
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def redis_url(_shared_server: RedisServer) -> str:
    """The URL of the session's redis-server, emptied for this test."""
    import redis

    with redis.Redis.from_url(_shared_server.url) as r:
        r.flushall()
    return _shared_server.url


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own (to restart it)."""
    _check_available()
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def client(redis_url: str) -> Iterator[Any]:
    """A blocking client on the session's server."""
    import redis

    c = redis.Redis.from_url(redis_url, socket_timeout=120)  # tests BLPOP for a while
    try:
        yield c
    finally:
        c.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every test here needs a redis-server: mark them `redis` by directory (as tests/on_dask
    # marks `dask`), so `make check` and machines without a server deselect with -m "not redis".
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.redis)
