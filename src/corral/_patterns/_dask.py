"""Stages on a Dask cluster: ``executor=client`` for ``fan_out`` / ``stage`` / ``pipeline``.

Imported only when a ``distributed.Client`` (or a :class:`DaskExecutor`) is passed as an
``executor``: ``import corral`` never imports ``distributed`` (``is_dask`` only looks in
``sys.modules``: if no ``distributed`` module is loaded, nothing can be a Client).

How a Dask stage runs. The stage's ``workers`` corral workers (threads or tasks, as for any
executor) each hold at most one item in flight, so the stage never has more than ``workers``
Dask tasks on the cluster, and reads its input lazily, exactly like a local executor. What
differs is how a call reaches the cluster. ``client.submit`` per item costs a graph message
of its own (measured ~0.3-1 ms of client and scheduler time per item); instead each call
puts its item in a queue, and one flush on the client's event loop sends everything queued
since the last flush as *one* ``client.map`` (one ``update-graph`` message). Items that come
back while a flush is under way wait for the next one, so batches grow with the load by
themselves (Nagle-style coalescing): one item at a time when the cluster is idle, hundreds
when it is busy, with no timer and no batch size to tune.

Results come back the same way: a finished future joins a queue, and one ``client.gather``
at a time fetches everything queued (one request to the scheduler per batch, not per item;
errors and cancellations are fetched one by one, to get each item's own). Each result is
handed to the waiting corral worker through a ``concurrent.futures.Future``: the stage
looks like any other executor to the engine (``rt.executor_call``), so ordering, error
policies, statistics and backpressure are the engine's, shared with the local runs.

Cancellation: a corral worker that stops waiting (the run failed, the consumer left, ``ctx``
was cancelled) cancels its ``concurrent.futures.Future``; that cancels the Dask future. When
the run ends, ``shutdown`` cancels every Dask future still outstanding in one ``client.cancel``
and waits until their trackers are done: nothing of the run stays queued on the cluster.
(A task already *running* on a Dask worker finishes its call there: Dask, like threads,
cannot interrupt running Python code; its result is dropped.)

Nothing of a run outlives it on the scheduler. The scheduler keeps a task while a client holds
a reference to its key, and a ``distributed.Future`` gives its reference back only when it is
released: explicitly, or by garbage collection. The run never waits for the latter. Whoever
takes a Dask future out of ``_live`` (the batched gather, the error fetch, a cancellation, the
shutdown) releases it (``_release``) once its result, error or cancellation is in, whatever
else still references the Future object. Something always may: an error's traceback keeps
the frames that handled it, and on CPython 3.12 and 3.13 also the frame of every coroutine
that awaited them, with their locals, the Dask future among them (CPython gh-100964, a 3.12
regression fixed upstream in December 2025; 3.13.5, the free-threaded build CI uses, has it).
A failed, cancelled or abandoned run leaves no task of its own (erred, queued or in memory)
behind, and its errors keep their tracebacks whole.

Blaming a dead worker. When a worker process dies, the scheduler counts *every* task it held
as suspicious, the one running there and those queued behind it alike (with one thread per
worker it sends each worker two tasks), and fails each that reached ``allowed-failures`` with
``KilledWorker``. If two or more of the stage's items fail so with the same dead worker, the
scheduler cannot say which one killed it; corral re-runs each of them *alone* (no other item
of the stage on the cluster, new submissions held back meanwhile): an innocent item succeeds,
the guilty one kills its worker again and fails with ``KilledWorker``. An item that was the
only one of the stage lost with its worker is blamed at once. The error carries a note naming
the item.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as cf
import reprlib
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._errors import CorralError

__all__ = [
    "DaskExecutor",
    "DaskTaskCancelled",
    "StageOnDask",
    "check_dask",
    "default_workers",
    "is_dask",
    "stage_on_dask",
]


class DaskTaskCancelled(CorralError, RuntimeError):
    """An item's Dask task was cancelled by someone else than this run.

    ``client.restart()``, another client's ``cancel``, or the scheduler losing the key.
    The original ``distributed`` error is the ``__cause__``. (Dask's own cancellation error
    derives from ``asyncio.CancelledError``; raised as is, it would read as *the caller*
    being cancelled.)
    """


@dataclass(frozen=True, slots=True, eq=False)  # eq=False: hashable by identity (a Stage holds it)
class DaskExecutor:
    """A Dask client plus the options for each item's task: pass it as ``executor=``.

    ``executor=client`` is the same as ``executor=DaskExecutor(client)``. ``retries``: Dask
    re-runs an item whose call *raised* up to this many times (a worker that dies mid-task
    is handled by the scheduler itself: it reschedules the task up to
    ``distributed.scheduler.allowed-failures`` times, then raises ``KilledWorker``).
    ``resources``, ``priority``, ``workers`` and ``allow_other_workers`` are passed to
    ``client.map`` unchanged. ``key_prefix`` starts every task's key (the stage's name is
    added, then a per-run id and the item's number), so the run's tasks are easy to find on
    the dashboard.

    >>> import corral.dask
    >>> corral.dask.DaskExecutor(client=None, retries=2).retries
    2
    """

    client: Any
    retries: int | None = None
    resources: dict[str, Any] | None = None
    priority: int = 0
    workers: Any = None
    allow_other_workers: bool = False
    key_prefix: str = "corral"

    def map_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"pure": False, "priority": self.priority}
        if self.retries is not None:
            opts["retries"] = self.retries
        if self.resources is not None:
            opts["resources"] = self.resources
        if self.workers is not None:
            opts["workers"] = self.workers
            opts["allow_other_workers"] = self.allow_other_workers
        return opts


def is_dask(obj: object) -> bool:
    """A ``distributed.Client`` or a :class:`DaskExecutor`, without importing ``distributed``."""
    if isinstance(obj, DaskExecutor):
        return True
    mod = sys.modules.get("distributed")
    return mod is not None and isinstance(obj, mod.Client)


def check_dask(executor: object, what: str) -> DaskExecutor:
    """Check a Dask executor argument (types, retries) and normalize it."""
    spec = executor if isinstance(executor, DaskExecutor) else DaskExecutor(executor)
    mod = sys.modules.get("distributed")
    if mod is None or not isinstance(spec.client, mod.Client):
        raise TypeError(
            f"{what}: DaskExecutor.client must be a distributed.Client, "
            f"got {type(spec.client).__name__}"
        )
    r = spec.retries
    if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 0):
        raise ValueError(f"{what}: DaskExecutor.retries must be an int >= 0 or None, got {r!r}")
    if not isinstance(spec.key_prefix, str) or not spec.key_prefix:
        raise TypeError(f"{what}: DaskExecutor.key_prefix must be a non-empty str")
    return spec


def stage_on_dask(
    executor: object, fn: Callable[[Any], Any], label: str, flavour: str
) -> StageOnDask:
    """The run's connection for one Dask stage (``flavour``: who waits for the results)."""
    spec = check_dask(executor, label)
    if flavour == "threads" and getattr(spec.client, "_asynchronous", False):
        # Its loop is the caller's, which a blocking consumer would stop: a deadlock.
        raise TypeError(
            f"{label}: an asynchronous Dask Client needs the asyncio flavour (corral.fan_out, "
            "corral.pipeline); corral.threads takes a synchronous Client"
        )
    return StageOnDask(spec, fn, label)


LOOP_GONE = "the Dask client's event loop stopped under a running stage"
# How long a Dask stage's exit waits for the cluster to confirm its cancellations.
SHUTDOWN_GRACE = 10.0

#: ``fan_out``'s default ``workers`` on Dask: this many items in flight per cluster thread,
#: so a thread that finishes a task finds the next one already queued on the scheduler.
IN_FLIGHT_PER_THREAD = 4
MIN_DEFAULT_WORKERS = 8
#: ... and at most this many: in ``corral.threads`` each item in flight holds a thread.
MAX_DEFAULT_WORKERS = 256


def default_workers(executor: object) -> int:
    """``fan_out(executor=client)``'s default ``workers``: 4 per thread of the cluster
    (between 8 and 256).

    A synchronous client asks the scheduler (one round trip, no per-worker details); an
    asynchronous one cannot be waited on here and answers from its cached scheduler info.
    """
    spec = executor if isinstance(executor, DaskExecutor) else DaskExecutor(executor)
    client = spec.client
    try:
        if getattr(client, "_asynchronous", False):
            info = client.scheduler_info()
        else:
            info = client.scheduler_info(n_workers=0)
        threads = int(info.get("total_threads", 0))
    except Exception:  # a client that cannot answer: the submit will say why
        threads = 0
    return min(max(IN_FLIGHT_PER_THREAD * threads, MIN_DEFAULT_WORKERS), MAX_DEFAULT_WORKERS)


class StageOnDask(cf.Executor):
    """One stage's connection to Dask for one run; quacks like an ``Executor``.

    ``submit(fn, item)`` may be called from any thread or loop; everything that touches the
    client runs on the client's event loop (a synchronous Client's own loop thread, or, for
    ``asynchronous=True``, the loop it was created on).
    """

    def __init__(self, spec: DaskExecutor, fn: Callable[[Any], Any], label: str) -> None:
        client = spec.client
        if client.status not in ("running", "connecting", "newly-created"):
            raise RuntimeError(f"{label}: the Dask client is {client.status}, not running")
        self._client = client
        self._fn = fn
        self._opts = spec.map_options()
        self._loop: asyncio.AbstractEventLoop = client.loop.asyncio_loop
        self._lock = threading.Lock()
        self._pending: list[tuple[Any, cf.Future[Any]]] = []
        self._scheduled = False
        self._closed = False
        safe = "".join(c if c.isalnum() or c in "_." else "_" for c in label)
        self.prefix = f"{spec.key_prefix}-{safe}-{uuid.uuid4().hex[:12]}-"
        self._numbered = 0  # items given a key so far
        # Loop-only state: the Dask future behind each outstanding call, and the trackers.
        self._live: dict[cf.Future[Any], Any] = {}
        self._trackers: set[asyncio.Task[None]] = set()
        self._cancel_queue: list[Any] = []
        # Finished futures waiting for their results, fetched in one gather per batch.
        self._ready: list[tuple[cf.Future[Any], Any]] = []
        self._gathering = False
        # The item of each call not yet done (a suspect of killing a worker is run again).
        self._items: dict[cf.Future[Any], Any] = {}
        # KilledWorker errors not yet judged, the suspects waiting to be re-run alone, the one
        # on trial now, and how many error fetches are still under way (see _judge).
        self._killed: list[tuple[cf.Future[Any], BaseException]] = []
        self._suspects: collections.deque[cf.Future[Any]] = collections.deque()
        self._trial: cf.Future[Any] | None = None
        self._error_fetches = 0
        self._held = False  # items were held back while a suspect ran alone
        # Figures, for tests and statistics: batches sent, items sent, most in flight, and
        # suspects re-run alone.
        self.batches = 0
        self.submitted = 0
        self.high_water = 0
        self.trials = 0

    # -- any thread --------------------------------------------------------------------

    def submit(self, fn: object, item: Any) -> cf.Future[Any]:  # type: ignore[override]
        """Queue ``item``; the returned future gets its result (``fn`` is the stage's)."""
        f: cf.Future[Any] = cf.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the Dask stage has shut down")
            self._pending.append((item, f))
            if self._scheduled:
                return f
            self._scheduled = True
        self._call_soon(self._flush)
        return f

    def _call_soon(self, cb: Callable[[], None]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._loop.call_soon(cb)
        else:
            self._loop.call_soon_threadsafe(cb)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Cancel every call not yet finished, on the cluster too, and wait for that."""
        with self._lock:
            self._closed = True
            left, self._pending = self._pending, []
        for _, f in left:
            f.cancel()
        if self._loop.is_closed() or not self._loop.is_running():
            return  # the client was closed under us: its futures went with it
        done = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        done.result()

    # -- the client's loop -------------------------------------------------------------

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
            if self._isolating() and not self._closed:
                # A suspect is re-run alone: new items wait (_next_trial resumes them).
                self._pending[:0] = batch
                self._held = True
                return
        batch = [(item, f) for item, f in batch if not f.cancelled()]
        if not batch:
            return
        start = self._numbered
        self._numbered = end = start + len(batch)
        keys = [f"{self.prefix}{i}" for i in range(start, end)]
        try:
            futs = self._client.map(self._fn, [item for item, _ in batch], key=keys, **self._opts)
        except BaseException as exc:  # the client is closing, or fn cannot be serialized
            for _, f in batch:
                _set(f, exc, error=True)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self.submitted += len(batch)
        live = self._live
        for (item, f), dfut in zip(batch, futs, strict=True):
            live[f] = dfut
            self._items[f] = item
            self._spawn(self._track(f, dfut))
            f.add_done_callback(self._abandoned)
        if len(live) > self.high_water:
            self.high_water = len(live)

    async def _track(self, f: cf.Future[Any], dfut: Any) -> None:
        """Wait for ``dfut`` to finish; a success joins the next batched gather."""
        state = getattr(dfut, "_state", None)
        wait = getattr(state, "wait", None)
        if wait is not None:
            # distributed's own wait/as_completed wait on this; a gather per item would cost
            # the scheduler one request per item (it lives in our process on a LocalCluster).
            try:
                await wait()
            except asyncio.CancelledError:  # this tracker was cancelled: the loop is closing
                _set(f, RuntimeError(LOOP_GONE), error=True)
                raise
            if f.cancelled():  # abandoned by its worker (_cancel_one releases the task)
                return
            if dfut.status == "finished":
                self._ready.append((f, dfut))
                if not self._gathering:
                    self._gathering = True
                    self._spawn(self._gather_ready())
                return
        await self._fetch_one(f, dfut)  # an error, a cancellation, or an unknown future

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._trackers.add(task)
        task.add_done_callback(self._trackers.discard)

    async def _gather_ready(self) -> None:
        """Fetch the results of every finished future, a batch per request, one at a time
        (what finishes meanwhile waits for the next request: batches grow with the load)."""
        try:
            while self._ready:
                batch, self._ready = self._ready, []
                batch = [(f, d) for f, d in batch if not f.cancelled()]
                if not batch:
                    continue
                try:
                    values = await self._client.gather([d for _, d in batch], asynchronous=True)
                except asyncio.CancelledError:  # this task was cancelled: the loop is closing
                    for f, _ in batch:
                        _set(f, RuntimeError(LOOP_GONE), error=True)
                    raise
                except Exception:  # one of them was lost or cancelled meanwhile: one by one
                    for f, d in batch:
                        self._spawn(self._fetch_one(f, d))
                    continue
                for (f, d), v in zip(batch, values, strict=True):
                    self._live.pop(f, None)
                    _release(d)
                    self._items.pop(f, None)
                    if f is self._trial:  # it ran alone and lived: it was innocent
                        self._trial = None
                    _set(f, v, error=False)
                del batch, values
                self._judge()
        finally:
            self._gathering = False

    async def _fetch_one(self, f: cf.Future[Any], dfut: Any) -> None:
        """One item's result, or its error (the task's own, or why the cluster lost it)."""
        self._error_fetches += 1
        try:
            values = await self._client.gather([dfut], asynchronous=True)
        except (asyncio.CancelledError, cf.CancelledError) as exc:
            # distributed's FutureCancelledError derives from concurrent.futures' error
            if f.cancelled():
                pass  # we cancelled it: nobody waits for it any more
            elif dfut.cancelled():
                err = DaskTaskCancelled(f"Dask task {dfut.key!r} was cancelled on the cluster")
                err.__cause__ = exc
                _set(f, err, error=True)
            elif isinstance(exc, cf.CancelledError):  # pragma: no cover - not a Dask future's
                _set(f, exc, error=True)
            else:  # this tracker itself was cancelled: the loop is going away
                _set(f, RuntimeError(LOOP_GONE), error=True)
                raise
        except Exception as exc:
            if not _is_killed_worker(exc) or f.cancelled():
                _set(f, exc, error=True)
            elif f is self._trial:  # it ran alone and killed its worker again: guilty
                self._trial = None
                self._blame(f, exc, "corral ran it again alone and it killed another worker")
            else:
                self._killed.append((f, exc))  # judged with the others lost with its worker
        else:
            _set(f, values[0], error=False)
        finally:
            if self._live.get(f) is dfut:
                del self._live[f]
            _release(dfut)  # a re-run suspect gets a new task (and key): this one is done
            if f is self._trial:  # its verdict is in, whatever it was
                self._trial = None
            if not any(k is f for k, _ in self._killed):
                self._items.pop(f, None)
            self._error_fetches -= 1
            self._judge()

    # -- blaming a dead worker on the right item (loop only) ----------------------------

    def _isolating(self) -> bool:
        return bool(self._suspects) or self._trial is not None

    def _judge(self) -> None:
        """Judge the KilledWorker errors once every error of the same deaths is in.

        A worker's death fails all its tasks in one scheduler step, reported to the client in
        one message: once no error fetch is under way and no live future is in error, every
        item lost with a worker is in ``_killed``.
        """
        if (
            self._killed
            and self._error_fetches == 0
            and not any(getattr(d, "status", "") == "error" for d in self._live.values())
        ):
            by_worker: dict[object, list[tuple[cf.Future[Any], BaseException]]] = {}
            for f, exc in self._killed:
                by_worker.setdefault(_dead_worker(exc), []).append((f, exc))
            self._killed = []
            for lost in by_worker.values():
                if len(lost) == 1:
                    f, exc = lost[0]
                    self._blame(f, exc, "the only item of the stage lost with that worker")
                else:  # which one was running? run each again, alone
                    self._suspects.extend(f for f, _ in lost)
        self._next_trial()

    def _blame(self, f: cf.Future[Any], exc: BaseException, why: str) -> None:
        item = self._items.pop(f, None)
        exc.add_note(f"corral: item {reprlib.repr(item)} was running on the dead worker ({why})")
        _set(f, exc, error=True)

    def _next_trial(self) -> None:
        """Re-run the next suspect alone once nothing else of the stage is on the cluster;
        with no suspect left, send the items held back meanwhile."""
        if self._trial is not None or self._closed:
            return
        while self._suspects and self._suspects[0].done():  # abandoned by its worker
            self._items.pop(self._suspects.popleft(), None)
        if not self._suspects:
            if self._held:  # the normal path: nothing was held back, nothing to resume
                self._held = False
                with self._lock:
                    resume = bool(self._pending) and not self._scheduled
                    self._scheduled = self._scheduled or resume
                if resume:
                    self._loop.call_soon(self._flush)
            return
        if self._live:
            return  # called again as each of them finishes
        f = self._suspects.popleft()
        self._trial = f
        key = f"{self.prefix}{self._numbered}"
        self._numbered += 1
        try:
            dfut = self._client.submit(self._fn, self._items[f], key=key, **self._opts)
        except Exception as exc:  # the client is closing
            self._trial = None
            self._items.pop(f, None)
            _set(f, exc, error=True)
            self._loop.call_soon(self._next_trial)
            return
        self.trials += 1
        self._live[f] = dfut
        self._spawn(self._track(f, dfut))

    def _abandoned(self, f: cf.Future[Any]) -> None:
        """A done callback on each call's future: a cancelled call cancels its Dask task."""
        if f.cancelled():
            self._call_soon(lambda: self._cancel_one(f))

    def _cancel_one(self, f: cf.Future[Any]) -> None:
        self._items.pop(f, None)
        if f is self._trial:
            self._trial = None
            self._loop.call_soon(self._next_trial)
        dfut = self._live.pop(f, None)
        if dfut is None:
            return
        self._cancel_queue.append(dfut)
        if len(self._cancel_queue) == 1:  # one client.cancel for all cancelled this step
            self._loop.call_soon(self._send_cancels)

    def _send_cancels(self) -> None:
        futs, self._cancel_queue = self._cancel_queue, []
        if futs:
            self._spawn(self._cancel(futs))

    async def _cancel(self, futs: list[Any]) -> None:
        """Cancel Dask futures in one request, then release them (see ``_release``)."""
        try:
            await self._client.cancel(futs, asynchronous=True)
        finally:
            for dfut in futs:
                _release(dfut)

    async def _shutdown(self) -> None:
        self._flush()  # anything queued is cancelled already: this only clears the queue
        # Suspects and unjudged KilledWorker items: nobody waits for them any more.
        for f in [*self._suspects, *(f for f, _ in self._killed)]:
            f.cancel()
        self._suspects.clear()
        self._killed = []
        self._trial = None
        outstanding = list(self._live.values())
        self._live.clear()
        self._items.clear()
        if outstanding:
            await self._cancel(outstanding)
        # Trackers end as their Dask futures are cancelled. Wait for them, but boundedly: a
        # cluster that never confirms a cancellation must not hang the stage's exit (seen
        # once in CI on 3.12: this loop spun with every tracker already done), so after
        # SHUTDOWN_GRACE the stragglers are cancelled (their calls fail with LOOP_GONE).
        deadline = self._loop.time() + SHUTDOWN_GRACE
        while self._trackers:
            self._trackers.difference_update([t for t in self._trackers if t.done()])
            pending = list(self._trackers)
            if not pending:
                break
            left = deadline - self._loop.time()
            if left <= 0:
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                self._trackers.difference_update(pending)
                break
            await asyncio.wait(pending, timeout=left)


def _is_killed_worker(exc: BaseException) -> bool:
    killed = getattr(sys.modules.get("distributed"), "KilledWorker", None)
    return killed is not None and isinstance(exc, killed)


def _dead_worker(exc: BaseException) -> object:
    """The address of the worker a ``KilledWorker`` names (its last one)."""
    last = getattr(exc, "last_worker", None)
    return getattr(last, "address", last)


def _release(dfut: Any) -> None:
    """Give back this run's reference to a Dask future's task, now, not when it is collected.

    ``Future.release`` is idempotent, and the Future object's own ``__del__`` later does
    nothing: whatever keeps the object (a traceback's frame, say) no longer keeps the task.
    """
    try:
        dfut.release()
    except (AttributeError, RuntimeError):  # the client is closing: its references go with it
        pass


def _set(f: cf.Future[Any], v: Any, *, error: bool) -> None:
    """Complete ``f`` unless its caller has cancelled it meanwhile."""
    try:
        if error:
            f.set_exception(v)
        else:
            f.set_result(v)
    except cf.InvalidStateError:
        pass
