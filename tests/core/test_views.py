"""The two flavours' view classes find each other through ``_core/views.py``'s families,
not by importing each other (tests/test_structure.py keeps the imports that way)."""

from __future__ import annotations

import subprocess
import sys

import corral
import corral.threads
from corral._core import views


def test_families_hold_both_flavours_classes() -> None:
    assert views.family("channel") == {"aio": corral.Channel, "threads": corral.threads.Channel}
    assert views.family("semaphore") == {
        "aio": corral.Semaphore,
        "threads": corral.threads.Semaphore,
    }
    assert views.family("singleflight") == {
        "aio": corral.SingleFlight,
        "threads": corral.threads.SingleFlight,
    }


def test_import_corral_alone_is_enough_for_every_view() -> None:
    # A fresh interpreter that never imports corral.threads: as_threads() must still find
    # the thread classes (corral's __init__ loads them), and Context.done() the Channel.
    code = (
        "import corral\n"
        "ch = corral.Channel(1)\n"
        "assert type(ch.as_threads()).__module__ == 'corral._threads.channel'\n"
        "assert ch.as_threads().as_async() is ch\n"
        "sem = corral.Semaphore(2)\n"
        "assert sem.as_threads().as_async() is sem\n"
        "sf = corral.SingleFlight()\n"
        "assert sf.as_threads().as_async() is sf\n"
        "assert sf.deduplicate(lambda x: x + 1)(1) == 2\n"
        "assert type(corral.background().done()) is corral.Channel\n"
        "assert 'corral.threads' in __import__('sys').modules\n"  # import corral reaches it
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr


def test_a_subclass_does_not_replace_its_flavours_class() -> None:
    class Mine(corral.Channel[int]):
        pass

    ch = Mine(1)
    tch = ch.as_threads()
    assert type(tch) is corral.threads.Channel
    assert tch.as_async() is ch  # the live view of the state, whatever its class
    assert views.family("channel")["aio"] is corral.Channel
    # A new state's other view is the flavour's own class, not the subclass.
    assert type(corral.threads.Channel(1).as_async()) is corral.Channel


def test_done_channel_is_the_asyncio_channel_and_closes_on_cancel() -> None:
    ctx = corral.with_cancel(corral.background())
    done = ctx.done()
    assert type(done) is corral.Channel
    assert ctx.done() is done
    assert not done.closed
    ctx.cancel()
    assert done.closed
    never = corral.background().done()
    assert type(never) is corral.Channel
    assert not never.closed
