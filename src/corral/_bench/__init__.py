"""The engine behind ``corral bench``: corral against its peers, side by side, in one process.

``run(rows, quick, repeat, loop) -> Report``; ``Report.to_json()`` / ``Report.to_table()``.
Rows live in ``corral._bench.rows`` and are added with :func:`register` (see ``registry``).
Importing this package needs no peer library: peers are imported when their row runs, and a
missing one is reported as ``missing``.
"""

from .harness import BenchError as BenchError
from .harness import CheckFailed as CheckFailed
from .harness import Env as Env
from .harness import check as check
from .harness import check_transfer as check_transfer
from .registry import Impl as Impl
from .registry import Row as Row
from .registry import all_rows as all_rows
from .registry import corral_impl as corral_impl
from .registry import peer_impl as peer_impl
from .registry import register as register
from .registry import select_rows as select_rows
from .registry import unregister as unregister
from .report import Comparison as Comparison
from .report import Report as Report
from .report import Result as Result
from .report import RowReport as RowReport
from .runner import run as run

__all__ = [
    "BenchError",
    "CheckFailed",
    "Comparison",
    "Env",
    "Impl",
    "Report",
    "Result",
    "Row",
    "RowReport",
    "all_rows",
    "check",
    "check_transfer",
    "corral_impl",
    "peer_impl",
    "register",
    "run",
    "select_rows",
    "unregister",
]
