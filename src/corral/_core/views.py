"""Flavour views of one shared state, without reference cycles.

``corral.Channel`` and ``corral.threads.Channel`` (likewise Semaphore, SingleFlight) are
thin views over one core state; ``as_threads()`` / ``as_async()`` hand out the other
view, and the same one each time while it is alive. The state remembers its views
*weakly*: a strong state -> view -> state loop would leave every dropped channel to the
cyclic garbage collector instead of freeing it at once.

Making the missing view is a check-then-act on ``views``, so it runs under the state's own
lock: two threads asking for the same view at once (a real race without the GIL, and a
rare one with it) must get one object, not two (tests/core/test_freethreaded_hammer.py).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Protocol, TypeVar

__all__ = ["HasViews", "register", "view_of"]


class HasViews(Protocol):
    views: dict[str, weakref.ref[Any]]
    lock: threading.Lock


V = TypeVar("V")


def register(st: HasViews, flavour: str, view: object) -> None:
    st.views[flavour] = weakref.ref(view)


def view_of(cls: type[V], flavour: str, st: HasViews) -> V:
    """The live ``cls`` view of ``st``, made (with only ``_st`` set) if there is none."""
    ref = st.views.get(flavour)
    view = None if ref is None else ref()
    if view is None:
        with st.lock:  # re-check: another thread may have made it meanwhile
            ref = st.views.get(flavour)
            view = None if ref is None else ref()
            if view is None:
                view = cls.__new__(cls)
                view._st = st  # type: ignore[attr-defined]
                st.views[flavour] = weakref.ref(view)
    assert isinstance(view, cls)
    return view
