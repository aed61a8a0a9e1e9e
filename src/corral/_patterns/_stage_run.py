"""What the worker loops touch while a run runs: a stage's state, its source, the counters.

``StageRun`` (a stage's input, output, workers and live count), ``IterSource`` (a plain
iterator read directly by the first stage's workers), ``WorkerRecord`` (one worker's
counters), and the small per-item helpers the worker and relay loops of both flavours
call (``no_coroutines``, ``log_skipped``, ``offer_dropping``).
"""

from __future__ import annotations

import logging
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

from .._core.channel import CLOSED, ChannelState
from .._core.semaphore import SemaphoreState
from .._shells import ChannelBase
from ._plan import POLICIES, Stage
from ._stats import StageStatistics

_log = logging.getLogger("corral")

#: The worker loops' inlined channel fast paths (``# inline of ...`` in ``_aio_workers`` and
#: ``_aio_flow``) are taken when this is true. tests/inlines turn it off to run the same
#: generated pipelines through the originals (``ChannelState.recv`` / ``send``) and compare.
#: Read once when a worker starts, never per item.
INLINE_FAST_PATHS = True


# -- the engine -------------------------------------------------------------------------------


class StageRun:
    """A stage while it runs: its input and output, workers, live count."""

    __slots__ = (
        "call",
        "dst",
        "gate",
        "index",
        "kind",
        "label",
        "live",
        "local_in",
        "local_out",
        "policy",
        "records",
        "samples",
        "spec",
        "src",
        "worker_kind",
    )

    def __init__(self, index: int, spec: Stage, src: Any, dst: ChannelState[Any]) -> None:
        self.index = index
        self.spec = spec
        self.label = spec.label(index)
        self.kind = spec.kind
        self.src = src  # a ChannelState or an IterSource: anything with recv(make_waiter)
        self.dst = dst
        self.gate: SemaphoreState | None = None  # ordered mode, first stage, direct source
        self.policy = POLICIES.index(spec.errors)
        self.records: list[WorkerRecord] = []
        self.live = 0
        self.call: Callable[[Any], Any] = spec.fn
        self.worker_kind = "task"
        self.local_in = False  # see FlowRun.local_channels
        self.local_out = False
        self.samples = [0, 0, 0]  # sum of sampled buffer lengths, samples, high-water mark

    def sample(self) -> None:
        n = len(self.dst.buf)
        s = self.samples
        s[0] += n
        s[1] += 1
        if n > s[2]:
            s[2] = n

    def statistics(self, now: float, elapsed: float) -> StageStatistics:
        n_in = n_out = n_err = parked = 0
        busy = w_in = w_out = 0.0
        for r in self.records:
            w = r.waiter
            if w is not None and not w.done:  # parked, and not yet woken
                parked += 1
            n_in += r.n_in
            n_out += r.n_out
            n_err += r.n_err
            end = r.t_end or now
            alive = max(end - r.t_start, 0.0)
            wi, wo = r.wait_in, r.wait_out
            if not r.t_end:  # parked right now: count the wait so far
                if r.since:
                    wi += max(now - r.since, 0.0)
                if r.since_out:
                    wo += max(now - r.since_out, 0.0)
            w_in += wi
            w_out += wo
            busy += max(alive - wi - wo, 0.0)
        workers = self.spec.workers
        util = busy / (workers * elapsed) if elapsed > 0 else 0.0
        s = self.samples
        buf_now = len(self.dst.buf)
        return StageStatistics(
            name=self.label,
            run_in=self.kind,
            workers=workers,
            items_in=n_in,
            items_out=n_out,
            errors=n_err,
            busy=busy,
            waiting_input=w_in,
            waiting_output=w_out,
            utilization=min(util, 1.0),
            waiting_now=parked,
            buffer=self.spec.buffer,
            buffer_now=buf_now,
            buffer_mean=s[0] / s[1] if s[1] else float(buf_now),
            buffer_high=max(s[2], buf_now),
        )


class WorkerRecord:
    """One worker's counters. Only its worker writes them (no lock); readers may lag."""

    __slots__ = (
        "n_err",
        "n_in",
        "n_out",
        "since",
        "since_out",
        "t_end",
        "t_start",
        "wait_in",
        "wait_out",
        "waiter",
    )

    def __init__(self) -> None:
        self.n_in = 0
        self.n_out = 0
        self.n_err = 0
        self.wait_in = 0.0
        self.wait_out = 0.0
        self.since = 0.0  # while parked on the input: when the wait began, else 0
        self.since_out = 0.0  # the same, for a wait for room in the output
        self.waiter: Any = None  # what it is parked on, while parked
        self.t_start = time.perf_counter()
        self.t_end = 0.0


# -- sources ----------------------------------------------------------------------------------


class IterSource:
    """A plain iterator read directly by the first stage's workers.

    It quacks like ``ChannelState.recv`` (an item, or ``CLOSED``), so the worker loop is
    the same for a source and a channel. Thread workers share it under a lock (generators
    are not thread-safe); task workers on one loop need none. In ordered mode, each item
    is numbered under the same lock as it is taken.
    """

    __slots__ = ("_lock", "_next", "_ordered", "_seq", "exhausted", "recv")

    def __init__(self, it: Iterator[Any], locked: bool, ordered: bool) -> None:
        self._next = it.__next__
        self._lock = threading.Lock() if locked else None
        self._ordered = ordered
        self._seq = 0
        self.exhausted = False
        # The common case (task workers, any order) skips the lock and numbering checks.
        self.recv = self._recv if locked or ordered else self._recv_plain

    def _recv_plain(self, make_waiter: object) -> Any:
        if self.exhausted:
            return CLOSED
        try:
            return self._next()
        except StopIteration:
            self.exhausted = True
            return CLOSED
        except BaseException:
            self.exhausted = True
            raise

    def _recv(self, make_waiter: object) -> Any:
        lock = self._lock
        if lock is not None:
            lock.acquire()
        try:
            item = self._recv_plain(make_waiter)  # the one rule; this adds lock and number
            if item is CLOSED:
                return CLOSED
            if self._ordered:
                seq = self._seq
                self._seq = seq + 1
                return (seq, item)
            return item
        finally:
            if lock is not None:
                lock.release()


def no_coroutines(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap a thread stage's fn: a plain callable that returns a coroutine (a lambda around
    an ``async def``) would otherwise leave it never awaited, and pass it on as a result."""

    def call(item: Any) -> Any:
        v = fn(item)
        if v.__class__ is types.CoroutineType:
            v.close()
            raise TypeError(
                f"{fn!r} returned a coroutine: make it an `async def` function (a plain "
                "function runs in a thread, where nothing awaits what it returns)"
            )
        return v

    return call


def log_skipped(sp: StageRun, item: object, exc: BaseException) -> None:
    # A warning, not an error: skipping was asked for (the article logs and goes on). One line
    # per item (a batch with bad lines must not fill stderr with tracebacks); the traceback
    # goes to the debug level, for whoever turns it on.
    _log.warning(
        "corral %s: item %r failed and was skipped (errors='skip'): %s: %s",
        sp.label,
        item,
        type(exc).__name__,
        exc,
    )
    _log.debug(
        "corral %s: traceback of skipped item %r",
        sp.label,
        item,
        exc_info=(type(exc), exc, exc.__traceback__),
    )


def offer_dropping(out: ChannelBase[Any], item: object) -> bool:
    """tee's ``"drop"`` policy: put ``item`` in ``out`` now, dropping its oldest item if full.

    Never waits. Returns ``False`` if the consumer closed ``out`` (it has left). The
    output's buffer holds at least one item, so a full buffer always has one to drop.
    """
    st = out._st
    with st.lock:
        if st.closed:
            return False
        if not st.send_locked(item):
            st.buf.popleft()
            st.buf.append(item)
            out._dropped += 1  # type: ignore[attr-defined]
    return True
