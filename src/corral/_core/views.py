"""Flavour views of one shared state, without reference cycles or import cycles.

``corral.Channel`` and ``corral.threads.Channel`` (likewise Semaphore, SingleFlight) are
thin views over one core state; ``as_threads()`` / ``as_async()`` hand out the other
view, and the same one each time while it is alive. The state remembers its views
*weakly*: a strong state -> view -> state loop would leave every dropped channel to the
cyclic garbage collector instead of freeing it at once.

The view classes find each other here, not by importing each other's modules: each
flavour's class joins its *family* (``family("channel")`` is ``{"aio": corral.Channel,
"threads": corral.threads.Channel}``) when it is defined (:class:`Flavoured`), and
``as_threads()`` looks its twin up in that dict. So neither shell imports the other, and
the core can build a shell's object (``Context.done()`` returns a ``corral.Channel``)
without importing the shell. The public namespace ``corral`` imports both flavours' view
classes, so a family is complete before any view exists.

>>> import corral, corral.threads
>>> family("channel") == {"aio": corral.Channel, "threads": corral.threads.Channel}
True

Making the missing view is a check-then-act on ``views``, so it runs under the state's own
lock: two threads asking for the same view at once (a real race without the GIL, and a
rare one with it) must get one object, not two (tests/core/test_freethreaded_hammer.py).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, ClassVar, Protocol, TypeVar

__all__ = ["Flavoured", "HasViews", "family", "register", "view_of"]


class HasViews(Protocol):
    views: dict[str, weakref.ref[Any]]
    lock: threading.Lock


V = TypeVar("V")

_families: dict[str, dict[str, Any]] = {}


def family(kind: str) -> dict[str, Any]:
    """The view classes of ``kind`` by flavour (``"aio"``, ``"threads"``): one live dict,
    filled as each flavour's class is defined."""
    return _families.setdefault(kind, {})


class Flavoured:
    """Base of a family's classes: a subclass that sets ``_flavour`` in its own body
    joins the family (the dict its base sets as ``_family``, from :func:`family`).

    A subclass that does not set ``_flavour`` itself (a user's, or a pattern's relay
    channel) inherits its parent's flavour without replacing it in the family.
    """

    __slots__ = ()
    _family: ClassVar[dict[str, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        flavour = cls.__dict__.get("_flavour")
        if flavour:
            cls._family[flavour] = cls


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
