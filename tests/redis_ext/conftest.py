"""Real servers for the tests of ``corral.redis``: each started on free loopback ports, without
persistence (a restart loses every key, as a crashed cache would), stopped after.

The server kinds (the "server matrix"):

* Debian's packaged ``redis-server`` (7.0 on bookworm), always; its test id is ``redis7``.
* Any other server given by path in ``CORRAL_REDIS_SERVERS``, space-separated ``kind=path``
  pairs, e.g. ``CORRAL_REDIS_SERVERS="redis8=/…/redis-server valkey9=/…/valkey-server"``
  (``scripts/build-redis-servers.sh`` builds those two and prints exactly that). A kind named
  ``<word><N>`` must report major version N (``--version``), so a mislabelled path is caught.
* A 3-master Redis Cluster when ``CORRAL_REDIS_CLUSTER`` is set: ``1`` builds it of Debian's
  ``redis-server``, a kind's name (``redis8``) of that kind's binary. Its ``redis-cli`` (or
  ``valkey-cli``) is taken from the server's own directory, else from ``PATH``.

The modules in ``MATRIX_MODULES`` (the fault suite, the semaphore, singleflight and rate-limit
tests, the cancellation sweep) run once per kind; every other module runs on Debian's server
only. A module of the matrix that cannot run on a cluster by nature names why in
``NOT_ON_CLUSTER``: its cluster case is reported as skipped with that reason. With a single
kind the tests carry no extra id, so test ids do not change when no matrix is configured.

Clients: the ``client`` fixture is a ``redis.Redis``, or a ``redis.cluster.RedisCluster`` on
the cluster; ``connect(url)`` / ``connect_async(url)`` give the right class for any URL these
fixtures handed out (a test that builds its own client with ``redis.Redis.from_url`` talks to
one node only, and meets ``MOVED`` on a cluster).

When the ``redis`` package or a server binary is missing, these tests are skipped on a
developer's machine and *fail* under CI (``CI`` set): CI must never pass by skipping them. A
configured kind whose binary is missing fails under CI the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
)
#: Modules run against every server kind; the others run against Debian's server only.
MATRIX_MODULES = frozenset(
    {
        "test_faults",
        "test_semaphore",
        "test_semaphore_fast",
        "test_singleflight",
        "test_ratelimit",
        "test_ratelimit_fleet",
        "test_ratelimit_docs",
        "test_ratelimit_bench",
        "test_cancel_sweep",
        "test_ratelimit_sem",
        "test_ratelimit_sem_fleet",
        "test_replicas",
    }
)
#: Matrix modules whose tests cannot run on a cluster, and why (their cluster case is skipped
#: with this reason, never silently).
NOT_ON_CLUSTER = {
    "test_replicas": "replicas= is refused on a Cluster client (RedisUnsupported); the test "
    "starts its own master and replica of the kind's binary",
    "test_ratelimit_bench": "the bench rows and their peers (limits, pyrate-limiter) connect "
    "to one server with redis.Redis; a Cluster would answer their keys with MOVED",
}
SERVERS_ENV = "CORRAL_REDIS_SERVERS"
CLUSTER_ENV = "CORRAL_REDIS_CLUSTER"
CLUSTER_MASTERS = 3
START_TIMEOUT = 20.0  # seconds for a server to answer PING, or a cluster to say cluster_state:ok


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


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (every socket stays bound until all are picked)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# --- server kinds ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerKind:
    """One entry of the server matrix: a binary, and whether it is run as a cluster."""

    name: str  # the test id: redis7, redis8, valkey9, cluster
    server: str | None  # path of the redis-server (or valkey-server) binary
    cluster: bool = False

    def cli(self) -> str | None:
        """The matching ``*-cli``: beside the server, else on ``PATH``."""
        if self.server is None:
            return None
        base = os.path.basename(self.server)
        cli_name = base.replace("-server", "-cli") if "-server" in base else "redis-cli"
        beside = os.path.join(os.path.dirname(self.server), cli_name)
        if os.access(beside, os.X_OK):
            return beside
        return shutil.which(cli_name) or shutil.which("redis-cli")


def _major_version(binary: str) -> int | None:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return None
    m = re.search(r"\bv=(\d+)\.", out)
    return int(m.group(1)) if m else None


_DEFAULT_MAJOR = _major_version(REDIS_SERVER) if REDIS_SERVER else None
DEFAULT_KIND = ServerKind(f"redis{_DEFAULT_MAJOR or ''}", REDIS_SERVER)


def configured_kinds() -> list[ServerKind]:
    """Every server kind of this session, Debian's first (raises UsageError on a bad env)."""
    kinds = [DEFAULT_KIND]
    for entry in os.environ.get(SERVERS_ENV, "").split():
        name, sep, path = entry.partition("=")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9_]*", name) or not path:
            raise pytest.UsageError(
                f"{SERVERS_ENV}: expected space-separated kind=path entries (kind in [a-z0-9_]), "
                f"got {entry!r}"
            )
        if name in {k.name for k in kinds} or name.startswith("cluster"):
            raise pytest.UsageError(f"{SERVERS_ENV}: kind {name!r} given twice or reserved")
        kinds.append(ServerKind(name, path))
    want_cluster = os.environ.get(CLUSTER_ENV, "").strip()
    if want_cluster and want_cluster.lower() not in ("0", "no", "false"):
        if want_cluster.lower() in ("1", "yes", "true"):
            base = DEFAULT_KIND
        else:
            found = [k for k in kinds if k.name == want_cluster]
            if not found:
                raise pytest.UsageError(
                    f"{CLUSTER_ENV}={want_cluster!r}: expected 1, or one of "
                    f"{[k.name for k in kinds]}"
                )
            base = found[0]
        name = "cluster" if base is DEFAULT_KIND else f"cluster-{base.name}"
        kinds.append(ServerKind(name, base.server, cluster=True))
    return kinds


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The matrix modules' tests run once per kind; the others on Debian's server only."""
    if "redis_kind" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rpartition(".")[2]
    kinds = configured_kinds() if module in MATRIX_MODULES else [DEFAULT_KIND]
    if len(kinds) > 1:  # one kind: no parameter, so the test ids stay as they were
        why = NOT_ON_CLUSTER.get(module)
        params = [
            pytest.param(k, id=k.name, marks=pytest.mark.skip(reason=why))
            if k.cluster and why
            else pytest.param(k, id=k.name)
            for k in kinds
        ]
        metafunc.parametrize("redis_kind", params, scope="session")


@pytest.fixture(scope="session")
def redis_kind() -> ServerKind:
    """The server kind of this test (Debian's redis-server unless the matrix says otherwise)."""
    return DEFAULT_KIND


def _check_available(kind: ServerKind) -> None:
    try:
        import redis  # noqa: F401
    except ImportError:
        _unavailable("the redis package is not installed (pip install 'corral[redis]')")
    if kind is DEFAULT_KIND and kind.server is None:
        _unavailable("redis-server is not installed (apt-get install redis-server)")
    assert kind.server is not None
    if not os.access(kind.server, os.X_OK):
        _unavailable(f"server kind {kind.name}: {kind.server} is not an executable ({SERVERS_ENV})")
    m = re.fullmatch(r"[a-z_]+(\d+)", kind.name)
    if m and not kind.cluster:
        major = _major_version(kind.server)
        if major != int(m.group(1)):
            pytest.fail(
                f"server kind {kind.name}: {kind.server} reports major version {major}",
                pytrace=False,
            )
    if kind.cluster and kind.cli() is None:
        _unavailable(f"server kind {kind.name}: no redis-cli beside {kind.server} or on PATH")


# --- servers --------------------------------------------------------------------------------


class RedisServer:
    """One redis-server process; ``restart()`` keeps its port."""

    is_cluster = False

    def __init__(self, binary: str | None = None, extra: list[str] | None = None) -> None:
        self.binary = binary or REDIS_SERVER
        assert self.binary is not None
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="corral-redis-")
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def urls(self) -> list[str]:
        """One URL per node (one node here)."""
        return [self.url]

    def launch(self) -> None:
        """Start the process (``start`` also waits until it answers)."""
        assert self.binary is not None
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir]
        args += ["--save", "", "--appendonly", "no", "--loglevel", "warning", *self.extra]
        self.proc = subprocess.Popen(
            [self.binary, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self, deadline: float) -> None:
        """Readiness: the server accepts a PING (a process start has no event to wait on)."""
        assert self.proc is not None
        while not _ping(self.port):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"{self.binary} exited at start: {err}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.binary} did not answer PING within {START_TIMEOUT} s")
            time.sleep(0.02)

    def start(self) -> None:
        self.launch()
        self.wait_ready(time.monotonic() + START_TIMEOUT)

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

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def info(port: int, section: str) -> dict[str, Any]:
    """``INFO section`` of the server on ``port`` (as redis-py parses it)."""
    import redis

    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as r:
        return dict(r.info(section))


#: Replication set up at once (Redis 7 waits 5 s for more replicas before a diskless sync).
_REPL = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]


class ReplicaPair:
    """A master and one replica started with ``--replicaof`` on loopback ports; ``start``
    returns once the replica says ``master_link_status:up`` and the master counts it."""

    def __init__(self, binary: str | None = None) -> None:
        self.master = RedisServer(binary, extra=list(_REPL))
        self.replica = RedisServer(
            binary, extra=[*_REPL, "--replicaof", "127.0.0.1", str(self.master.port)]
        )

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        wait_for(
            lambda: (
                info(self.replica.port, "replication").get("master_link_status") == "up"
                and info(self.master.port, "replication").get("connected_slaves") == 1
            ),
            START_TIMEOUT,
        )

    def remove(self) -> None:
        for server in (self.replica, self.master):
            if server.proc is not None and server.proc.poll() is None:
                server.proc.send_signal(signal.SIGCONT)  # a stopped server cannot terminate
            server.remove()


#: URLs of the clusters started by these fixtures: connect() gives them a cluster client.
_CLUSTER_URLS: set[str] = set()


class ClusterServer:
    """A Redis Cluster of ``CLUSTER_MASTERS`` masters, no replicas, on loopback ports.

    ``url`` is the first node's (a cluster client discovers the rest). ``restart()`` stops
    every node and starts them again on the same ports with their cluster config files: the
    cluster comes back with the same slots and *no keys*, as a whole cluster restarted without
    persistence does.
    """

    is_cluster = True

    def __init__(self, binary: str, cli: str) -> None:
        self.binary = binary
        self.cli = cli
        ports = free_ports(2 * CLUSTER_MASTERS)  # a client port and a cluster-bus port each
        self.nodes = [
            RedisServer(
                binary,
                [
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-port", str(bus),
                    "--cluster-node-timeout", "5000",
                ],
            )
            for bus in ports[CLUSTER_MASTERS:]
        ]  # fmt: skip
        for node, port in zip(self.nodes, ports[:CLUSTER_MASTERS], strict=True):
            node.port = port
        self.created = False

    @property
    def port(self) -> int:
        return self.nodes[0].port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{n.port}" for n in self.nodes]

    def start(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_ready(deadline)
        if not self.created:
            addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
            done = subprocess.run(
                [
                    self.cli,
                    "--cluster",
                    "create",
                    *addrs,
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}"
                )
            self.created = True
        _CLUSTER_URLS.add(self.url)
        self.wait_ok(deadline)

    def wait_ok(self, deadline: float) -> None:
        """Every node says ``cluster_state:ok`` and knows all the masters (nothing announces it)."""
        import redis

        for node in self.nodes:
            with redis.Redis(port=node.port, socket_timeout=5) as r:
                while True:
                    info = r.execute_command("CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    ok = "cluster_state:ok" in text
                    known = re.search(r"cluster_known_nodes:(\d+)", text)
                    if ok and known and int(known.group(1)) == CLUSTER_MASTERS:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster not ok within {START_TIMEOUT} s:\n{text}")
                    time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        _CLUSTER_URLS.discard(self.url)
        for node in self.nodes:
            node.remove()

    def flushall(self) -> None:
        import redis

        for node in self.nodes:
            with redis.Redis(port=node.port) as r:
                r.flushall()


def _make_server(kind: ServerKind) -> RedisServer | ClusterServer:
    _check_available(kind)
    assert kind.server is not None
    if kind.cluster:
        cli = kind.cli()
        assert cli is not None
        return ClusterServer(kind.server, cli)
    return RedisServer(kind.server)


def is_cluster(url: str) -> bool:
    """Whether ``url`` is a cluster these fixtures started (its clients must be cluster ones)."""
    return url in _CLUSTER_URLS


def cluster_env(url: str) -> dict[str, str]:
    """The environment for a subprocess that connects to ``url``: ``REDIS_CLUSTER=1`` tells
    the workers (and docs/examples) to make cluster clients."""
    env = dict(os.environ)
    env.pop("REDIS_CLUSTER", None)
    if is_cluster(url):
        env["REDIS_CLUSTER"] = "1"
    return env


def connect(url: str, **kwargs: Any) -> Any:
    """A blocking client for a URL these fixtures handed out (a cluster client for a cluster)."""
    if url in _CLUSTER_URLS:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(url, **kwargs)
    import redis

    return redis.Redis.from_url(url, **kwargs)


def connect_async(url: str, **kwargs: Any) -> Any:
    """An asyncio client for a URL these fixtures handed out (a cluster client for a cluster)."""
    if url in _CLUSTER_URLS:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url, **kwargs)
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url, **kwargs)


def all_nodes(client: Any) -> dict[str, Any]:
    """Options sending a server-wide command (``KEYS``, ``PUBSUB CHANNELS``/``NUMSUB``) to
    every node of a cluster client (``**all_nodes(c)``): by default a cluster client sends it
    to one node, which knows only its own keys and subscribers. Nothing for one server."""
    return {"target_nodes": "all"} if hasattr(client, "get_node_from_key") else {}


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _servers() -> Iterator[dict[str, RedisServer | ClusterServer]]:
    """The session's servers, one per kind, started on first use and stopped at the end."""
    servers: dict[str, RedisServer | ClusterServer] = {}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.remove()


@pytest.fixture
def _shared_server(
    redis_kind: ServerKind, _servers: dict[str, RedisServer | ClusterServer]
) -> RedisServer | ClusterServer:
    """The session's server of this test's kind. (Looked up per test, not cached as one
    session fixture: pytest keeps a session fixture made for the matrix's last kind, say the
    cluster, and handed it to the next module that runs on Debian's server only, whose
    single-node clients then met MOVED.)"""
    server = _servers.get(redis_kind.name)
    if server is None:
        server = _make_server(redis_kind)
        _servers[redis_kind.name] = server
        server.start()
    return server


@pytest.fixture
def redis_url(_shared_server: RedisServer | ClusterServer) -> str:
    """The URL of the session's server of this test's kind, emptied for this test."""
    import redis

    for url in _shared_server.urls:
        with redis.Redis.from_url(url) as r:
            r.flushall()
    return _shared_server.url


@pytest.fixture
def own_server(redis_kind: ServerKind) -> Iterator[RedisServer | ClusterServer]:
    """A server (or cluster) of this test's own and of its kind (to restart it)."""
    server = _make_server(redis_kind)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def replica_pair(redis_kind: ServerKind) -> Iterator[ReplicaPair]:
    """A master and one replica of this test's server kind, replication up (test_replicas)."""
    _check_available(redis_kind)
    pair = ReplicaPair(redis_kind.server)
    try:
        pair.start()
        yield pair
    finally:
        pair.remove()


@pytest.fixture
def client(redis_url: str) -> Iterator[Any]:
    """A blocking client on the session's server (a cluster client on a cluster)."""
    c = connect(redis_url, socket_timeout=120)  # tests BLPOP for a while
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
