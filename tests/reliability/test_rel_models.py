"""Stateful model tests: Channel and Semaphore against a simple sequential model.

Hypothesis drives one shared primitive through random sequences of operations from
*both* flavours at once: non-blocking calls, blocking calls parked in asyncio tasks (on a
loop the test pumps) and in threads, cancellations of parked operations (``task.cancel()``
for a task, ``ctx.cancel()`` for a thread), releases and ``close()``. After every step the
primitive's ``statistics()`` and every operation's outcome must equal the model's.

The model is a few lines of sequential code per operation — the specification the
concurrent implementation must agree with. Deterministic (``derandomize``) in the fast
suite; ``CORRAL_STRESS=1`` runs more, randomized examples (Hypothesis prints the seed).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import corral
import corral.threads

from . import figures

pytestmark = pytest.mark.timeout(figures.TIMEOUT)

FLAVOURS = st.sampled_from(["aio", "threads"])
SETTLE_TIMEOUT = 10.0

SETTINGS = settings(
    max_examples=figures.count(200, quick=50, stress=2000),
    stateful_step_count=figures.count(40, quick=30, stress=80),
    deadline=None,
    derandomize=not figures.STRESS,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)

Outcome = tuple[str, Any]  # ("ok", value) or ("raised", exception type name)


class _Op:
    """A blocking operation started in a task or a thread; ``outcome()`` once it ended."""

    def __init__(self, flavour: str) -> None:
        self.flavour = flavour
        self.task: asyncio.Task[Any] | None = None
        self.thread: threading.Thread | None = None
        self.ctx = corral.with_cancel(corral.background())
        self.result: Outcome | None = None
        self.finished = threading.Event()

    def done(self) -> bool:
        if self.task is not None:
            return self.task.done()
        return self.finished.is_set()

    def outcome(self) -> Outcome:
        if self.task is not None:
            assert self.task.done()
            if self.task.cancelled():
                return ("raised", "CancelledError")
            exc = self.task.exception()
            return ("raised", type(exc).__name__) if exc else ("ok", self.task.result())
        assert self.result is not None
        return self.result

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
        else:
            self.ctx.cancel()


class _Driver:
    """Starts operations in tasks (on a loop pumped here) or threads, and settles them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ops: dict[int, _Op] = {}

    def start(
        self,
        op_id: int,
        flavour: str,
        aio: Callable[[], Coroutine[Any, Any, Any]],
        blocking: Callable[[corral.Context], Any],
    ) -> _Op:
        op = _Op(flavour)
        self.ops[op_id] = op
        if flavour == "aio":
            op.task = self.loop.create_task(aio())
        else:

            def run() -> None:
                try:
                    op.result = ("ok", blocking(op.ctx))
                except BaseException as exc:
                    op.result = ("raised", type(exc).__name__)
                finally:
                    op.finished.set()

            op.thread = threading.Thread(target=run, name=f"model-op-{op_id}")
            op.thread.start()
        return op

    def pump(self) -> None:
        """Run the loop until the tasks have reacted (wake-ups may come from threads)."""
        for _ in range(8):
            self.loop.run_until_complete(asyncio.sleep(0))

    def settle(self, ready: Callable[[], bool]) -> None:
        """Pump until ``ready()``: a thread parks or ends on its own schedule."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            self.pump()
            if ready():
                return
            if time.monotonic() > deadline:
                raise AssertionError("the primitive never reached the model's state")
            time.sleep(0.0002)

    def close(self) -> None:
        for op in self.ops.values():
            op.ctx.cancel()
            if op.task is not None and not op.task.done():
                op.task.cancel()
        self.pump()
        for op in self.ops.values():
            if op.thread is not None:
                op.thread.join(SETTLE_TIMEOUT)
                assert not op.thread.is_alive()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


# --- Channel ---------------------------------------------------------------------------------


class ChannelModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.driver = _Driver()
        self.ids = itertools.count()
        self.items = itertools.count()
        # The model.
        self.buf: deque[int] = deque()
        self.recvq: deque[int] = deque()  # op ids
        self.sendq: deque[tuple[int, int]] = deque()  # (op id, item)
        self.closed = False
        self.expected: dict[int, Outcome] = {}

    @initialize(cap=st.sampled_from([0, 1, 3]))
    def make(self, cap: int) -> None:
        self.cap = cap
        self.ch: corral.Channel[int] = corral.Channel(cap)
        self.views = {"aio": self.ch, "threads": self.ch.as_threads()}

    def teardown(self) -> None:
        self.driver.close()

    # -- the model's rules, once ---------------------------------------------------------

    def _model_send(self, item: int) -> Outcome | None:
        """None: the send would wait."""
        if self.closed:
            return ("raised", "ChannelClosed")
        if self.recvq:
            self.expected[self.recvq.popleft()] = ("ok", item)
            return ("ok", None)
        if len(self.buf) < self.cap:
            self.buf.append(item)
            return ("ok", None)
        return None

    def _model_recv(self) -> Outcome | None:
        if self.buf:
            item = self.buf.popleft()
            if self.sendq:
                sid, sitem = self.sendq.popleft()
                self.buf.append(sitem)
                self.expected[sid] = ("ok", None)
            return ("ok", item)
        if self.sendq:
            sid, sitem = self.sendq.popleft()
            self.expected[sid] = ("ok", None)
            return ("ok", sitem)
        if self.closed:
            return ("raised", "EndOfChannel")
        return None

    # -- rules ------------------------------------------------------------------------------

    @rule(flavour=FLAVOURS)
    def send_nowait(self, flavour: str) -> None:
        item = next(self.items)
        want = self._model_send(item) or ("raised", "WouldBlock")
        assert _call(lambda: self.views[flavour].send_nowait(item)) == want
        self._settle()  # it may have completed a parked receiver

    @rule(flavour=FLAVOURS)
    def recv_nowait(self, flavour: str) -> None:
        want = self._model_recv() or ("raised", "WouldBlock")
        assert _call(self.views[flavour].recv_nowait) == want
        self._settle()  # it may have completed a parked sender

    @rule(flavour=FLAVOURS)
    def send(self, flavour: str) -> None:
        item, op_id = next(self.items), next(self.ids)
        now = self._model_send(item)
        if now is None:
            self.sendq.append((op_id, item))
        else:
            self.expected[op_id] = now
        tch = self.views["threads"]
        self.driver.start(
            op_id,
            flavour,
            lambda: self.ch.send(item),
            lambda ctx: tch.send(item, ctx=ctx),
        )
        self._settle()

    @rule(flavour=FLAVOURS)
    def recv(self, flavour: str) -> None:
        op_id = next(self.ids)
        now = self._model_recv()
        if now is None:
            self.recvq.append(op_id)
        else:
            self.expected[op_id] = now
        tch = self.views["threads"]
        self.driver.start(op_id, flavour, self.ch.recv, lambda ctx: tch.recv(ctx=ctx))
        self._settle()

    @precondition(lambda self: bool(self.recvq or self.sendq))
    @rule(data=st.data())
    def cancel_a_waiter(self, data: st.DataObject) -> None:
        waiting = list(self.recvq) + [op_id for op_id, _ in self.sendq]
        op_id = data.draw(st.sampled_from(waiting))
        if op_id in self.recvq:
            self.recvq.remove(op_id)
        else:
            self.sendq = deque(e for e in self.sendq if e[0] != op_id)
        op = self.driver.ops[op_id]
        self.expected[op_id] = (
            "raised",
            "CancelledError" if op.flavour == "aio" else "Cancelled",
        )
        op.cancel()
        self._settle()

    @rule(flavour=FLAVOURS)
    def close(self, flavour: str) -> None:
        first = not self.closed
        self.closed = True
        for op_id in self.recvq:
            self.expected[op_id] = ("raised", "EndOfChannel")
        for op_id, _ in self.sendq:
            self.expected[op_id] = ("raised", "ChannelClosed")
        self.recvq.clear()
        self.sendq.clear()
        assert self.views[flavour].close() is first
        self._settle()

    # -- checks -----------------------------------------------------------------------------

    def _settle(self) -> None:
        def matches() -> bool:
            s = self.ch.statistics()
            return (s.waiting_receivers, s.waiting_senders) == (
                len(self.recvq),
                len(self.sendq),
            ) and all(self.driver.ops[i].done() for i in self.expected)

        self.driver.settle(matches)

    @invariant()
    def agrees_with_the_model(self) -> None:
        if not hasattr(self, "ch"):
            return
        s = self.ch.statistics()
        assert (s.buffered, s.waiting_receivers, s.waiting_senders, s.closed) == (
            len(self.buf),
            len(self.recvq),
            len(self.sendq),
            self.closed,
        ), (s, list(self.buf), list(self.recvq), list(self.sendq))
        for op_id, op in self.driver.ops.items():
            if op_id in self.expected:
                assert op.outcome() == self.expected[op_id], (op_id, op.flavour)
            else:
                assert not op.done(), f"op {op_id} ({op.flavour}) ended: {op.outcome()}"


def _call(fn: Callable[[], Any]) -> Outcome:
    try:
        return ("ok", fn())
    except Exception as exc:
        return ("raised", type(exc).__name__)


# --- Semaphore -------------------------------------------------------------------------------


class SemaphoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.driver = _Driver()
        self.ids = itertools.count()
        self.cur = 0
        self.queue: deque[tuple[int, int]] = deque()  # (op id, n)
        self.holders: dict[int, int] = {}  # op id -> permits it holds
        self.expected: dict[int, Outcome] = {}
        self.grant_order: list[int] = []

    @initialize(size=st.integers(1, 4))
    def make(self, size: int) -> None:
        self.size = size
        self.sem = corral.Semaphore(size)
        self.views: dict[str, Any] = {"aio": self.sem, "threads": self.sem.as_threads()}

    def teardown(self) -> None:
        self.driver.close()

    def _grant(self) -> None:
        # Strict FIFO with head-of-line blocking: stop at the first that does not fit.
        while self.queue and self.size - self.cur >= self.queue[0][1]:
            op_id, n = self.queue.popleft()
            self.cur += n
            self.holders[op_id] = n
            self.expected[op_id] = ("ok", None)
            self.grant_order.append(op_id)

    @rule(n=st.integers(0, 4), flavour=FLAVOURS)
    def try_acquire(self, n: int, flavour: str) -> None:
        if n > self.size:
            assert _call(lambda: self.views[flavour].try_acquire(n)) == ("raised", "ValueError")
            return
        ok = not self.queue and self.size - self.cur >= n
        assert _call(lambda: self.views[flavour].try_acquire(n)) == ("ok", ok)
        if ok:
            self.cur += n
            self.holders[-next(self.ids) - 1] = n  # a holder with no operation

    @rule(n=st.integers(0, 4), flavour=FLAVOURS)
    def acquire(self, n: int, flavour: str) -> None:
        if n > self.size:
            with pytest.raises(ValueError, match="n="):
                self.views[flavour].acquire(n)
            return
        op_id = next(self.ids)
        self.queue.append((op_id, n))
        self._grant()
        tsem = self.views["threads"]

        async def acquire_in_task() -> None:
            await self.sem.acquire(n)

        def acquire_in_thread(ctx: corral.Context) -> None:
            tsem.acquire(n, ctx=ctx)

        self.driver.start(op_id, flavour, acquire_in_task, acquire_in_thread)
        self._settle()

    @precondition(lambda self: bool(self.holders))
    @rule(data=st.data(), flavour=FLAVOURS)
    def release(self, data: st.DataObject, flavour: str) -> None:
        holder = data.draw(st.sampled_from(sorted(self.holders)))
        n = self.holders.pop(holder)
        self.cur -= n
        self._grant()
        self.views[flavour].release(n)
        self._settle()

    @rule(flavour=FLAVOURS)
    def release_more_than_held(self, flavour: str) -> None:
        n = self.cur + 1
        if n <= self.size:
            with pytest.raises(ValueError, match="held"):
                self.views[flavour].release(n)

    @precondition(lambda self: bool(self.queue))
    @rule(data=st.data())
    def cancel_a_waiter(self, data: st.DataObject) -> None:
        op_id = data.draw(st.sampled_from([i for i, _ in self.queue]))
        self.queue = deque(e for e in self.queue if e[0] != op_id)
        op = self.driver.ops[op_id]
        self.expected[op_id] = ("raised", "CancelledError" if op.flavour == "aio" else "Cancelled")
        self._grant()  # the head left: the ones behind it may fit now
        op.cancel()
        self._settle()

    def _settle(self) -> None:
        def matches() -> bool:
            s = self.sem.statistics()
            return (s.held, s.waiting) == (self.cur, len(self.queue)) and all(
                self.driver.ops[i].done() for i in self.expected
            )

        self.driver.settle(matches)

    @invariant()
    def agrees_with_the_model(self) -> None:
        if not hasattr(self, "sem"):
            return
        s = self.sem.statistics()
        want = (self.size, self.cur, len(self.queue), sum(n for _, n in self.queue))
        assert (s.size, s.held, s.waiting, s.waiting_weight) == want, (s, list(self.queue))
        for op_id, op in self.driver.ops.items():
            if op_id in self.expected:
                assert op.outcome() == self.expected[op_id], (op_id, op.flavour)
            else:
                assert not op.done(), f"op {op_id} ({op.flavour}) ended: {op.outcome()}"


def test_channel_agrees_with_its_sequential_model() -> None:
    run_state_machine_as_test(ChannelModel, settings=SETTINGS)
    figures.record(
        "stateful models (hypothesis)",
        "Channel vs model, both flavours",
        f"{SETTINGS.max_examples} programs x <= {SETTINGS.stateful_step_count} steps agree",
    )


def test_semaphore_agrees_with_its_sequential_model() -> None:
    run_state_machine_as_test(SemaphoreModel, settings=SETTINGS)
    figures.record(
        "stateful models (hypothesis)",
        "Semaphore vs model, both flavours",
        f"{SETTINGS.max_examples} programs x <= {SETTINGS.stateful_step_count} steps agree",
    )


def test_the_model_catches_a_semaphore_that_lets_try_acquire_barge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mutation check: a ``try_acquire`` that ignores queued waiters must be caught."""
    from corral._core.semaphore import SemaphoreState

    def barging_try_acquire(self: SemaphoreState, n: int) -> bool:
        with self.lock:
            if self.size - self.cur >= n:
                self.cur += n
                return True
            return False

    monkeypatch.setattr(SemaphoreState, "try_acquire", barging_try_acquire)
    # Finding it is the point; shrinking it to the smallest program only costs time.
    quiet = settings(SETTINGS, max_examples=200, print_blob=False, phases=[Phase.generate])
    with pytest.raises(AssertionError):
        run_state_machine_as_test(SemaphoreModel, settings=quiet)
