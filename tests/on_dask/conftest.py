"""A real Dask cluster for the tests in this directory: ``LocalCluster``, 2 worker processes.

One cluster per module (starting one costs seconds); tests that kill or restart workers get
a cluster of their own (``breakable_client``).

Every test here carries the ``dask`` marker: ``pytest -m "not dask"`` deselects them where
``distributed`` cannot be installed. Without ``distributed`` they are *skipped* locally but
*fail* under CI (``CI=true``): the extra must not vanish silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

# distributed's sampling profiler (a 'Profile' thread per event loop, on 3.12+) walks other
# threads' frames; without a GIL (3.13t) it can read a frame mid-update and die in
# distributed/profile.py, which the harness rightly reports as an exception ending a thread.
# Our tests use no profiles: off, here and (through the environment) in worker processes.
os.environ["DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"] = "False"

try:
    import dask
    import distributed

    dask.config.set({"distributed.worker.profile.enabled": False})
except ImportError:  # pragma: no cover - the extra is installed in CI
    distributed = None  # type: ignore[assignment]

MISSING = "distributed is not installed (pip install -e '.[dask]'), or deselect: -m 'not dask'"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.dask)
            if distributed is None and not os.environ.get("CI"):
                item.add_marker(pytest.mark.skip(reason=MISSING))


@pytest.fixture(autouse=True)
def _need_distributed() -> None:
    if distributed is None:  # only reached under CI: outside it the tests are skipped
        pytest.fail(MISSING, pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _dask_process_threads() -> None:
    """Start distributed's process-wide helper thread now (it starts on first use, by a nanny
    restarting a worker, say): no test is blamed for a thread that lives as long as we do."""
    if distributed is None:
        return
    offload = getattr(distributed.utils, "_offload_executor", None)
    if offload is not None:
        offload.submit(int).result()


def _local_cluster() -> Any:
    if distributed is None:  # only reached under CI (see _need_distributed)
        pytest.fail(MISSING, pytrace=False)
    import cloudpickle

    from . import remote

    # Worker processes import nothing of the tests: send the remote functions by value.
    cloudpickle.register_pickle_by_value(remote)
    return distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address="127.0.0.1:0",  # a dashboard we never read, on a free port
        host="127.0.0.1",  # a free port on loopback, picked by the OS
        worker_dashboard_address="127.0.0.1:0",
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with _local_cluster() as cl:
        yield cl


@pytest.fixture
def breakable_client() -> Iterator[Any]:
    """A cluster of the test's own, for tests that kill or restart its workers.

    The nanny starts watcher threads for each worker process it (re)starts: on a shared
    cluster they would outlive the test that killed a worker (a thread leak to the harness);
    here they end with the cluster, before the leak check looks.
    """
    with _local_cluster() as cl, distributed.Client(cl) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster) as c:
        # Warm up: the first round trip starts the client's helper threads, which then live
        # as long as the client (not a leak of whichever test happens to run first).
        assert c.submit(abs, -1, pure=False).result() == 1
        yield c
