"""corral on a Dask cluster: run a ``fan_out`` or one ``pipeline`` stage on ``distributed``.

Needs the extra: ``pip install 'corral[dask]'``. ``import corral`` never imports this module
(nor ``distributed``); passing a ``distributed.Client`` as ``executor=`` is enough, this
module only adds :class:`DaskExecutor` (per-task options such as ``retries``) and the error
raised when the cluster cancels an item's task.

The one-argument change, from local processes to a cluster::

    corral.threads.fan_out(crunch, items, workers=64, run_in="process")
    corral.threads.fan_out(crunch, items, workers=64, executor=client)

``workers`` is the number of items in flight on the cluster (never more; the input is read
lazily): a few times the cluster's threads, so the Dask workers never wait for corral
(``fan_out``'s default: 4 per cluster thread).

>>> import corral.dask
>>> corral.dask.DaskExecutor(client=None, retries=1).map_options()["retries"]
1
"""

from __future__ import annotations

try:
    import distributed as _distributed  # noqa: F401 - fail here, clearly, without the extra
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise ImportError(
        "corral.dask needs the 'distributed' package: pip install 'corral[dask]'"
    ) from exc

from ._patterns._dask import DaskExecutor as DaskExecutor
from ._patterns._dask import DaskTaskCancelled as DaskTaskCancelled

__all__ = ["DaskExecutor", "DaskTaskCancelled"]
