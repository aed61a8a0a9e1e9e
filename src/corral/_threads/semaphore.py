"""``corral.threads.Semaphore``: the blocking view of a weighted semaphore."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from .._core.context import Context, _check_timeout
from .._core.semaphore import SemaphoreState, check_weight
from .._core.waiter import ThreadWaiter, Waiter
from .._shells import SemaphoreBase, check_ctx
from .wait import park

if TYPE_CHECKING:
    from .._aio.semaphore import Semaphore as AsyncSemaphore

__all__ = ["Semaphore"]


class Held:
    """Permits held by a thread; ``with`` releases them on exit."""

    __slots__ = ("_n", "_st")

    def __init__(self, st: SemaphoreState, n: int) -> None:
        self._st = st
        self._n = n

    def __enter__(self) -> Held:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._st.release(self._n)


class Semaphore(SemaphoreBase):
    """Semaphore(size=1): Go's weighted semaphore for threads; strictly FIFO.

    >>> import corral.threads
    >>> sem = corral.threads.Semaphore(10)
    >>> with sem.acquire(4):
    ...     print(sem.statistics().held)
    4

    ``with sem:`` takes one permit, as ``threading.Semaphore`` does.
    """

    __slots__ = ()
    _flavour = "threads"

    def acquire(
        self, n: int = 1, *, timeout: float | None = None, ctx: Context | None = None
    ) -> Held:
        """Block until ``n`` permits are granted; returns a context manager that releases.

        See ``corral.Semaphore.acquire`` for the errors.
        """
        st = self._st
        n = check_weight(n, st.size, "Semaphore.acquire")
        if timeout is not None:
            _check_timeout(timeout)
        if ctx is not None:
            check_ctx(ctx, "Semaphore.acquire")
        w = st.acquire(n, ThreadWaiter)
        if w is not None:
            assert isinstance(w, ThreadWaiter)

            def undo(_: Waiter) -> None:
                st.release(n)

            park(w, timeout, ctx, undo)
        return Held(st, n)

    def __enter__(self) -> None:
        """``with sem:`` acquires 1 permit (as ``with sem.acquire():``)."""
        self.acquire(1)

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._st.release(1)

    def as_async(self) -> AsyncSemaphore:
        """The same semaphore as a ``corral.Semaphore``."""
        view: AsyncSemaphore = self._family["aio"]._view(self._st)
        return view
