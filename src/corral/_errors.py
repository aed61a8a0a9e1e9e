"""corral's exceptions: one small hierarchy, named by whose fault the condition is.

::

    CorralError
    ├── ChannelClosed        you (or a peer) closed the channel, then sent on it
    ├── EndOfChannel         the channel was closed and every buffered item was received
    ├── WouldBlock           a ``*_nowait`` / ``try_*`` operation could not complete at once
    ├── GroupError           a Group was misused: ``go`` after it finished, ``set_limit``
    │                        while workers run, entering it twice
    ├── ThreadStartError     corral could not start a thread a call needed (also a
    │                        ``RuntimeError``, what CPython raises there); the call had no effect
    └── Cancelled            a Context was cancelled; ``cause`` says why
        └── DeadlineExceeded a deadline or ``timeout=`` passed (also a ``TimeoutError``)

Bad arguments raise the built-in ``ValueError`` / ``TypeError`` with a message that names
the argument. ``asyncio.CancelledError`` (a task was cancelled) is never converted: it is
asyncio's own signal and passes through corral untouched.
"""

from __future__ import annotations

__all__ = [
    "Cancelled",
    "ChannelClosed",
    "CorralError",
    "DeadlineExceeded",
    "EndOfChannel",
    "GroupError",
    "ThreadStartError",
    "WouldBlock",
]


class CorralError(Exception):
    """Base class of every exception corral raises on purpose."""


class ChannelClosed(CorralError):
    """A send (or a select send case) on a channel that was closed."""


class EndOfChannel(CorralError):
    """A receive on a channel that is closed and drained: there will be no more items."""


class WouldBlock(CorralError):
    """A non-blocking operation (``send_nowait``, ``recv_nowait``) could not complete now."""


class GroupError(CorralError):
    """A ``Group`` was used in a way its lifecycle forbids (your code's fault, not a worker's).

    ``go``/``try_go``/``set_limit`` after the group finished (``wait()`` returned or its
    ``with`` block exited), ``set_limit`` while workers run or wait for a slot, entering one
    group twice, or using an asyncio group from another event loop.
    """


class ThreadStartError(CorralError, RuntimeError):
    """corral could not start a thread that a call needed (``can't start new thread``).

    Raised by the call that wanted the thread (``Group.go``, ``fan_out``, ``fan_in``, a
    singleflight call, a deadline, ...), with CPython's error as ``__cause__``. That call
    had no effect: nothing it prepared for the thread is left running or queued.
    """


class Cancelled(CorralError):
    """The Context an operation was bound to was cancelled.

    ``cause`` is what the canceller gave (Go's ``context.Cause``); it is ``None`` when the
    context was cancelled without one.
    """

    def __init__(self, message: str = "context cancelled", cause: BaseException | None = None):
        super().__init__(message)
        self.cause = cause


class DeadlineExceeded(Cancelled, TimeoutError):
    """A deadline passed: a Context's deadline, or an operation's ``timeout=``.

    It is a ``TimeoutError`` too, so ``except TimeoutError`` catches it.
    """

    def __init__(self, message: str = "deadline exceeded", cause: BaseException | None = None):
        super().__init__(message, cause)
