"""The server matrix's configuration (tests/redis_ext/conftest.py): no server is started here."""

from __future__ import annotations

import pytest

from . import conftest
from .conftest import ServerKind, configured_kinds


def test_no_matrix_is_debians_server_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(conftest.SERVERS_ENV, raising=False)
    monkeypatch.delenv(conftest.CLUSTER_ENV, raising=False)
    assert configured_kinds() == [conftest.DEFAULT_KIND]


def test_servers_and_cluster_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Kind names that cannot be the default's (redis7 on bookworm, redis8 in Debian sid).
    monkeypatch.setenv(conftest.SERVERS_ENV, " redis99=/a/redis-server  valkey9=/b/valkey-server ")
    monkeypatch.setenv(conftest.CLUSTER_ENV, "valkey9")
    kinds = configured_kinds()
    assert [k.name for k in kinds] == [
        conftest.DEFAULT_KIND.name,
        "redis99",
        "valkey9",
        "cluster-valkey9",
    ]
    assert kinds[-1] == ServerKind("cluster-valkey9", "/b/valkey-server", cluster=True)
    monkeypatch.setenv(conftest.CLUSTER_ENV, "1")
    assert configured_kinds()[-1] == ServerKind(
        "cluster", conftest.DEFAULT_KIND.server, cluster=True
    )
    monkeypatch.setenv(conftest.CLUSTER_ENV, "0")
    assert not any(k.cluster for k in configured_kinds())


@pytest.mark.parametrize(
    ("servers", "cluster", "text"),
    [
        ("redis8", "", "kind=path"),
        ("Redis8=/x", "", "kind=path"),
        ("redis8=/x redis8=/y", "", "given twice"),
        ("cluster=/x", "", "reserved"),
        ("", "valkey9", "expected 1, or one of"),
    ],
)
def test_a_bad_setting_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, servers: str, cluster: str, text: str
) -> None:
    monkeypatch.setenv(conftest.SERVERS_ENV, servers)
    monkeypatch.setenv(conftest.CLUSTER_ENV, cluster)
    with pytest.raises(pytest.UsageError, match=text):
        configured_kinds()


@pytest.mark.parametrize("ci", ["", "true"])
def test_a_missing_server_fails_under_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match="redis8: /nonexistent/redis-server is not an executable"):
        conftest._check_available(ServerKind("redis8", "/nonexistent/redis-server"))


def test_a_mislabelled_server_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    if conftest.REDIS_SERVER is None:
        pytest.skip("no redis-server to mislabel")
    with pytest.raises(pytest.fail.Exception, match="reports major version"):
        conftest._check_available(ServerKind("redis99", conftest.REDIS_SERVER))


def test_a_module_kept_off_the_cluster_says_why() -> None:
    """A matrix module that cannot run on a cluster is skipped there with its reason, never
    silently; the rate-limit modules and the cancel sweep are in the matrix."""
    for module, why in conftest.NOT_ON_CLUSTER.items():
        assert module in conftest.MATRIX_MODULES
        assert len(why) > 20
    for module in ("test_ratelimit", "test_ratelimit_fleet", "test_cancel_sweep"):
        assert module in conftest.MATRIX_MODULES
        assert module not in conftest.NOT_ON_CLUSTER


def test_subprocesses_are_told_to_make_cluster_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_CLUSTER", "1")  # inherited from a caller: not this URL's kind
    assert "REDIS_CLUSTER" not in conftest.cluster_env("redis://127.0.0.1:1/0")
    monkeypatch.setattr(conftest, "_CLUSTER_URLS", {"redis://127.0.0.1:2"})
    assert conftest.cluster_env("redis://127.0.0.1:2")["REDIS_CLUSTER"] == "1"
