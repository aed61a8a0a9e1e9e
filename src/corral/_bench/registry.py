"""The registry of benchmark rows.

A *row* is one benchmark id (``chan.async.cap128``) and the implementations that run it side
by side in one process: corral's and its peers'. Adding a row is one call to :func:`register`
from a module under ``corral._bench.rows`` (import that module from ``rows/__init__.py``)::

    from corral._bench.harness import Env, Stopwatch, Timing, check_transfer
    from corral._bench.registry import corral_impl, peer_impl, register

    def _corral(env: Env, n: int) -> Timing:
        ...  # sw = Stopwatch(); move exactly n items; t = sw.stop(); check_transfer(...)

    register(
        "group.spawn",
        items=100_000,
        quick_items=10_000,
        note="spawn + join n tasks",
        impls=[
            corral_impl("corral", _corral, reference="asyncio.TaskGroup", target=1.0),
            peer_impl("asyncio.TaskGroup", _taskgroup),
        ],
    )

An implementation is a plain function ``fn(env, n) -> Timing``: it does the work for ``n``
operations, verifies that exactly ``n`` happened (raising :class:`CheckFailed` otherwise, so a
broken implementation cannot look fast), and returns the time of the measured part from a
``Stopwatch`` (setup such as building an event loop stays outside). Peer modules are
imported inside the function and listed in ``requires``: a peer that is not installed is
reported as missing.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .harness import BenchError

if TYPE_CHECKING:
    from .harness import Env, Memory, Timing

__all__ = [
    "GcMode",
    "Impl",
    "ImplFn",
    "Metric",
    "Row",
    "all_rows",
    "corral_impl",
    "peer_impl",
    "register",
    "select_rows",
    "unregister",
]

GcMode = Literal["on", "off"]
"""``on``: the cyclic GC runs as usual (collected before each repeat); ``off``: disabled while
an implementation is measured (collected before). Every implementation of a row gets the same."""

ImplFn = Callable[["Env", int], "float | Timing | Memory"]
"""``fn(env, n) -> Timing | seconds``: do ``n`` operations, check them, return the measured
time (a :class:`~corral._bench.harness.Timing` from a ``Stopwatch``, or wall seconds); in a
row with ``metric="bytes"``, a :class:`~corral._bench.harness.Memory` instead."""

Metric = Literal["time", "bytes"]
"""What a row measures: time per operation (ns), or memory per operation (bytes)."""

_ID = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")


@dataclass(frozen=True, slots=True)
class Impl:
    """One implementation of a row."""

    name: str
    fn: ImplFn
    #: ``False`` for corral's own implementations.
    peer: bool = True
    #: Modules that must be importable (checked without importing); else "missing".
    requires: tuple[str, ...] = ()
    #: For corral implementations: the peer whose semantics match (its ratio is the verdict).
    reference: str | None = None
    #: For corral implementations: the largest acceptable ratio ``corral / reference``.
    target: float | None = None
    note: str = ""
    #: Rows that mix worlds (tasks and threads) label each side; a corral implementation's
    #: "best peer" is the fastest peer of the same kind.
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Row:
    """A benchmark id and the implementations run side by side."""

    id: str
    impls: tuple[Impl, ...]
    items: int  #: operations per measurement in a full run
    quick_items: int  #: operations per measurement in a quick run
    note: str = ""
    gc: GcMode = "on"
    unit: str = "item"  #: what one operation is, for the table's "ns/<unit>" header
    metric: Metric = "time"  #: "bytes": implementations return Memory, reported in B/<unit>


_ROWS: dict[str, Row] = {}
_loaded = False


def corral_impl(
    name: str,
    fn: ImplFn,
    *,
    reference: str | None,
    target: float | None = None,
    note: str = "",
    kind: str = "",
) -> Impl:
    """A corral implementation, compared with the peer ``reference`` (same semantics)."""
    return Impl(name, fn, peer=False, reference=reference, target=target, note=note, kind=kind)


def peer_impl(
    name: str, fn: ImplFn, *, requires: Iterable[str] = (), note: str = "", kind: str = ""
) -> Impl:
    """A peer's implementation; ``requires`` lists the modules it needs."""
    return Impl(name, fn, peer=True, requires=tuple(requires), note=note, kind=kind)


def register(
    row_id: str,
    *,
    impls: Sequence[Impl],
    items: int,
    quick_items: int,
    note: str = "",
    gc: GcMode = "on",
    unit: str = "item",
    replace: bool = False,
    metric: Metric = "time",
) -> Row:
    """Add a row to the registry and return it (``replace=True`` to redefine an id)."""
    if not _ID.match(row_id):
        raise ValueError(f"register: bad row id {row_id!r} (dotted lower-case words)")
    if row_id in _ROWS and not replace:
        raise ValueError(f"register: row {row_id!r} is already registered")
    if gc not in ("on", "off"):
        raise ValueError(f"register: gc must be 'on' or 'off', got {gc!r}")
    if metric not in ("time", "bytes"):
        raise ValueError(f"register: metric must be 'time' or 'bytes', got {metric!r}")
    if not 0 < quick_items <= items:
        raise ValueError(f"register: need 0 < quick_items <= items for {row_id!r}")
    names = [i.name for i in impls]
    if len(set(names)) != len(names):
        raise ValueError(f"register: duplicate implementation names in {row_id!r}: {names}")
    peers = {i.name for i in impls if i.peer}
    for i in impls:
        if i.peer and (i.reference is not None or i.target is not None):
            raise ValueError(f"register: peer {i.name!r} cannot have a reference or target")
        if not i.peer and i.reference is not None and i.reference not in peers:
            raise ValueError(
                f"register: {i.name!r} in {row_id!r} refers to {i.reference!r}, not a peer here"
            )
        if i.target is not None and i.reference is None:
            raise ValueError(f"register: {i.name!r} has a target but no reference")
    row = Row(row_id, tuple(impls), items, quick_items, note, gc, unit, metric)
    _ROWS[row_id] = row
    return row


def unregister(row_id: str) -> None:
    """Remove a row (``KeyError`` if unknown); for tests and experiments."""
    del _ROWS[row_id]


def _load_builtin_rows() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        importlib.import_module("corral._bench.rows")


def all_rows() -> list[Row]:
    """Every registered row, in registration order."""
    _load_builtin_rows()
    return list(_ROWS.values())


def select_rows(patterns: Sequence[str] | None) -> list[Row]:
    """Rows matching ``patterns`` (exact ids, globs like ``chan.async.*``, or a prefix such as
    ``sem``); all rows for ``None`` or an empty list. :class:`BenchError` for an unknown one."""
    rows = all_rows()
    if not patterns:
        return rows
    chosen: dict[str, Row] = {}
    for pat in patterns:
        hits = [
            r
            for r in rows
            if r.id == pat or fnmatch.fnmatchcase(r.id, pat) or r.id.startswith(pat + ".")
        ]
        if not hits:
            known = ", ".join(r.id for r in rows)
            raise BenchError(f"no benchmark row matches {pat!r}; known rows: {known}")
        for r in hits:
            chosen.setdefault(r.id, r)
    # Keep registration order, whatever order the patterns came in.
    return [r for r in rows if r.id in chosen]
