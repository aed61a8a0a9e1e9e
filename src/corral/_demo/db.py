"""The demo's database: a real SQLite file that counts its own queries and connections.

Queries are counted by SQLite itself (``set_trace_callback`` reports every statement a
connection executes; the table is read from the statement), and connections in use are
counted where a connection is handed out and given back, with the peak kept. Neither
figure is told anything by the service that uses the database.

The database is blocking, like any DB-API driver: the threads flavour calls it directly,
the asyncio flavour calls it from worker threads. Each query also waits a little while
holding its connection, to stand in for a network round trip to a database server; that
wait honours a corral ``Context``, as a context-aware driver would.
"""

from __future__ import annotations

import random
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._core.context import Context

__all__ = ["TABLES", "Database", "DatabaseError", "QueryHung", "create_database"]

TABLES = ("users", "orders", "stats", "notifications")
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    plan TEXT NOT NULL,
    currency TEXT NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    total_cents INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX orders_by_user ON orders(user_id, created);
CREATE TABLE stats (
    user_id INTEGER PRIMARY KEY REFERENCES users(id),
    visits INTEGER NOT NULL,
    orders_count INTEGER NOT NULL,
    spent_cents INTEGER NOT NULL
);
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    message TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX notifications_by_user ON notifications(user_id, created);
CREATE TABLE corral_demo (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_SELECT_FROM = re.compile(r"^\s*SELECT\b.*?\bFROM\s+([A-Za-z_]\w*)", re.IGNORECASE | re.DOTALL)

_PLANS = ("free", "pro", "team")
_CURRENCIES = ("EUR", "USD", "GBP", "JPY")
_MESSAGES = ("order shipped", "payment received", "new login", "weekly report ready")
# Seeded data is dated in a fixed window, so a database reads the same on every run.
_EPOCH = 1_700_000_000.0
_DAY = 86_400.0


class DatabaseError(Exception):
    """The path given with ``--db`` cannot be used as the demo's database."""


class QueryHung(Exception):
    """A query that was meant to be interrupted by cancellation ran out its time instead."""


def create_database(path: Path, users: int, seed: int) -> None:
    """Create the demo's tables in a new SQLite file and fill them (deterministic for a seed)."""
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executescript(_SCHEMA)
            user_rows: list[tuple[Any, ...]] = []
            order_rows: list[tuple[Any, ...]] = []
            stats_rows: list[tuple[Any, ...]] = []
            note_rows: list[tuple[Any, ...]] = []
            for uid in range(1, users + 1):
                last_seen = _EPOCH - rng.uniform(0, 30) * _DAY
                user_rows.append(
                    (uid, f"user{uid}", rng.choice(_PLANS), rng.choice(_CURRENCIES), last_seen)
                )
                spent = 0
                n_orders = rng.randint(0, 20)
                for _ in range(n_orders):
                    total = rng.randint(199, 49_999)
                    spent += total
                    order_rows.append((uid, total, _EPOCH - rng.uniform(0, 365) * _DAY))
                stats_rows.append((uid, rng.randint(n_orders, 500), n_orders, spent))
                note_rows.extend(
                    (uid, rng.choice(_MESSAGES), _EPOCH - rng.uniform(0, 60) * _DAY)
                    for _ in range(rng.randint(0, 12))
                )
            conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?)", user_rows)
            conn.executemany(
                "INSERT INTO orders (user_id, total_cents, created) VALUES (?, ?, ?)", order_rows
            )
            conn.executemany("INSERT INTO stats VALUES (?, ?, ?, ?)", stats_rows)
            conn.executemany(
                "INSERT INTO notifications (user_id, message, created) VALUES (?, ?, ?)",
                note_rows,
            )
            conn.executemany(
                "INSERT INTO corral_demo VALUES (?, ?)",
                [("schema", SCHEMA_VERSION), ("users", str(users)), ("seed", str(seed))],
            )
    finally:
        conn.close()


class Database:
    """A pool of SQLite connections to one file, counting what goes through it.

    ``connection()`` hands out an idle connection or opens a new one: it never waits, so
    it does not limit anything. Limiting is the caller's job (the demo's ``Semaphore``);
    the pool only measures how many connections are in use at once (``peak_in_use``).
    """

    def __init__(self, path: Path, query_seconds: float) -> None:
        self.path = path
        self.query_seconds = query_seconds
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        self._in_use = 0
        self._peak = 0
        self._queries: dict[str, int] = dict.fromkeys(TABLES, 0)
        self._other_statements = 0
        self.users = self._check_schema()

    # -- figures ----------------------------------------------------------------------------

    @property
    def peak_in_use(self) -> int:
        """Most connections that were ever in use at the same moment."""
        with self._lock:
            return self._peak

    @property
    def in_use(self) -> int:
        with self._lock:
            return self._in_use

    @property
    def opened(self) -> int:
        """Connections opened so far (the pool grows to what concurrent use needed)."""
        with self._lock:
            return len(self._all)

    def queries(self) -> dict[str, int]:
        """SELECT statements executed per table, as reported by SQLite's trace callback."""
        with self._lock:
            return dict(self._queries)

    def table_sizes(self) -> dict[str, int]:
        conn = sqlite3.connect(self.path)
        try:
            # Table names come from TABLES, never from input.
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        finally:
            conn.close()

    # -- use --------------------------------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for the caller's exclusive use until the block ends."""
        with self._lock:
            self._in_use += 1
            self._peak = max(self._peak, self._in_use)
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is None:
                conn = self._open()
            yield conn
        finally:
            with self._lock:
                self._in_use -= 1
                if conn is not None:
                    self._idle.append(conn)

    def query(
        self,
        sql: str,
        params: Sequence[object],
        ctx: Context,
        *,
        hang: bool = False,
    ) -> list[tuple[Any, ...]]:
        """Run one SELECT on a pooled connection, then wait out the simulated round trip.

        Raises ``ctx``'s ``Cancelled`` if the context is done before or during the wait
        (the connection goes back to the pool either way). ``hang=True`` makes the round
        trip last until the context is cancelled (the injected failure's siblings use it),
        giving up with ``QueryHung`` after 30 seconds.
        """
        ctx.raise_if_cancelled()
        with self.connection() as conn:
            rows = conn.execute(sql, params).fetchall()
            wait = 30.0 if hang else self.query_seconds
            if wait > 0 and ctx.wait_blocking(wait):
                ctx.raise_if_cancelled()
            if hang:
                raise QueryHung(f"query was not cancelled within {wait:.0f} s: {sql}")
            return rows

    def close(self) -> None:
        with self._lock:
            conns, self._all, self._idle = self._all, [], []
        for conn in conns:
            conn.close()

    # -- internals --------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        # Any thread may use a pooled connection, one at a time (the pool ensures that).
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA query_only = ON")
        conn.set_trace_callback(self._trace)
        with self._lock:
            self._all.append(conn)
        return conn

    def _trace(self, statement: str) -> None:
        m = _SELECT_FROM.match(statement)
        table = m.group(1).lower() if m else None
        with self._lock:
            if table in self._queries:
                self._queries[table] += 1
            else:
                self._other_statements += 1

    def _check_schema(self) -> int:
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open {self.path}: {exc}") from None
        try:
            meta = dict(conn.execute("SELECT key, value FROM corral_demo").fetchall())
            if meta.get("schema") != SCHEMA_VERSION:
                raise DatabaseError(
                    f"{self.path} was made by another version of the demo (schema "
                    f"{meta.get('schema')!r}); give a new path"
                )
            return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])
        except sqlite3.Error as exc:
            raise DatabaseError(
                f"{self.path} is not a corral demo database ({exc}); give a new path "
                "and the demo will create one there"
            ) from None
        finally:
            conn.close()
