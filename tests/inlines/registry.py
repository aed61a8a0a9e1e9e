"""Every hand-inlined copy of a core rule, tied to the check that keeps it honest.

A copy kept for speed is marked where it stands, in the code::

    # inline of corral._core.channel.ChannelState.recv

``test_markers.py`` finds every such marker under ``src/corral`` and fails unless the
dotted name resolves to a real object, is a key of :data:`INLINES`, and the function
holding the marker is listed in that entry's ``copies``; and unless every entry's
``checks`` name tests that exists. Each check drives the copies and the original through
the same generated operation sequences and fails on any difference (results and state),
so a copy that drifts from its original fails CI the way a stale generated twin does.

Adding an inline is a two-line change here (plus the check, if no existing one covers it)::

    "corral.x.Original.method": Inline(
        copies=("corral.y.Copy.method",), checks=("test_x.py::test_copies_match",)),

A check's file is relative to tests/inlines (``../core/test_x.py::...`` for one elsewhere).

Copies in generated files (``_threads_*`` from ``_aio_*``) are listed too: the generator
carries the marker over.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["INLINES", "Inline"]


@dataclass(frozen=True)
class Inline:
    copies: tuple[str, ...]  #: dotted names of the functions holding a marked copy
    checks: tuple[str, ...]  #: "file.py::test_name" under tests/inlines: equivalence checks


_CHANNEL = "test_channel_inlines.py::"
# The semaphore's and the rate limit's shell copies (issue 17's defects): their checks run
# the copies beside twins built from the originals under one seeded schedule, cancelled at
# every step (paths are relative to tests/inlines).
_SHELLS = (
    "../reliability/test_rel_inlines.py::"
    "test_inlined_copies_leave_the_same_trace_as_their_originals"
)
_WORKERS = "test_worker_inlines.py::"
_WAITER = "test_waiter_inlines.py::"
_CHANNEL_AIO = _CHANNEL + "test_the_asyncio_channel_matches_the_original_rules"
# The worker loops' copies, end to end: the same generated pipelines with the fast paths
# switched off (corral._patterns._stage_run.INLINE_FAST_PATHS) give the same results.
_WORKER_CHECK = _WORKERS + "test_pipelines_match_with_and_without_the_inlined_fast_paths"

# The Redis rate limit's lean uncontended script and its leave (Lua, in line for speed),
# driven beside the scripts they copy through generated sequences on a real server.
_RL_FAST = ("../redis_ext/test_ratelimit_fast.py::test_the_lean_script_agrees_with_rl_acquire",)
# The Redis semaphore's lean uncontended pair (Lua, in line for speed), likewise.
_SEM_FAST = (
    "../redis_ext/test_semaphore_fast.py::"
    "test_the_lean_pair_agrees_with_sem_acquire_and_sem_release",
)

INLINES: dict[str, Inline] = {
    "corral._core.channel.ChannelState.send": Inline(
        copies=(
            "corral._aio.channel.Channel.send",
            "corral._patterns._aio_workers.work",
            "corral._patterns._threads_workers.work",
        ),
        checks=(_CHANNEL_AIO, _WORKER_CHECK),
    ),
    "corral._core.channel.ChannelState.recv": Inline(
        copies=(
            "corral._aio.channel.Channel.recv",
            "corral._aio.channel.Channel.__anext__",
            "corral._patterns._aio_workers.work",
            "corral._patterns._threads_workers.work",
            "corral._patterns._aio_flow.Flow.__anext__",
            "corral._patterns._threads_flow.Flow.__next__",
        ),
        checks=(_CHANNEL_AIO, _WORKER_CHECK),
    ),
    "corral._core.channel.ChannelState.send_locked": Inline(
        copies=("corral._core.channel.ChannelState.send",),
        checks=(_CHANNEL + "test_the_state_fast_paths_match_the_locked_rules",),
    ),
    "corral._core.channel.ChannelState.recv_locked": Inline(
        copies=("corral._core.channel.ChannelState.recv",),
        checks=(_CHANNEL + "test_the_state_fast_paths_match_the_locked_rules",),
    ),
    "corral._aio.wait.park": Inline(
        copies=(
            "corral._aio.channel.Channel.send",
            "corral._aio.channel.Channel.recv",
            "corral._aio.channel.Channel.__anext__",
            "corral._aio.semaphore._granted",
        ),
        checks=(_CHANNEL_AIO, _SHELLS),
    ),
    "corral._core.semaphore.SemaphoreState.acquire": Inline(
        copies=("corral._aio.semaphore._Acquire.__await__",), checks=(_SHELLS,)
    ),
    "corral._core.semaphore.SemaphoreState.try_acquire": Inline(
        copies=("corral._aio.semaphore.Semaphore.acquire",), checks=(_SHELLS,)
    ),
    "corral._core.semaphore.SemaphoreState.release": Inline(
        copies=("corral._shells.SemaphoreBase.release",), checks=(_SHELLS,)
    ),
    "corral._core.ratelimit.RateLimitState._try_take_locked": Inline(
        copies=("corral._aio.ratelimit.RateLimit.acquire",),
        checks=(
            _SHELLS,
            "../core/test_ratelimit.py::test_the_inlined_uncontended_acquire_agrees_with_try_acquire",
        ),
    ),
    "corral._core.limiter.FifoLimiter._grant_locked": Inline(
        copies=("corral._core.semaphore.SemaphoreState._grant_locked",),
        checks=(
            "../core/test_limiter.py::test_the_semaphore_grant_loop_inline_agrees_with_the_base",
        ),
    ),
    "corral._core.waiter.Waiter.complete": Inline(
        copies=("corral._core.waiter.AsyncWaiter.complete",),
        checks=(_WAITER + "test_async_waiter_complete_matches_waiter_complete",),
    ),
    "corral._redis.rate_scripts.RL_ACQUIRE": Inline(
        copies=("corral._redis.rate_scripts",), checks=_RL_FAST
    ),
    "corral._redis.rate_scripts.RL_LEAVE": Inline(
        copies=("corral._redis.rate_scripts",), checks=_RL_FAST
    ),
    "corral._redis.scripts.SEM_ACQUIRE": Inline(
        copies=("corral._redis.scripts",), checks=_SEM_FAST
    ),
    "corral._redis.scripts.SEM_RELEASE": Inline(
        copies=("corral._redis.scripts",), checks=_SEM_FAST
    ),
    "corral._core.waiter.Waiter.__init__": Inline(
        copies=("corral._core.waiter.AsyncWaiter.__init__",),
        checks=(_WAITER + "test_async_waiter_init_matches_waiter_init",),
    ),
}
