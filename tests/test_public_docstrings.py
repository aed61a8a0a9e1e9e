"""Every public name has a docstring: the API reference (docs/reference/) is generated from them.

mkdocstrings renders a name without a docstring as an empty entry and does not complain, so
this test is what fails CI on one. Public means: every name in ``__all__`` of ``corral``,
``corral.threads`` and ``corral.testing``, and, for classes, every method and property not
starting with ``_`` that corral defines on the class or a corral base class (what the
reference page lists with ``inherited_members``). A method counts only with its own
docstring: the reference does not borrow one from an overridden method.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from types import ModuleType

import pytest

PUBLIC_MODULES = ["corral", "corral.threads", "corral.testing"]


def _has_doc(obj: object) -> bool:
    doc = getattr(obj, "__doc__", None)
    return isinstance(doc, str) and bool(doc.strip())


def _class_has_doc(cls: type) -> bool:
    doc = cls.__doc__
    if not isinstance(doc, str) or not doc.strip():
        return False
    if dataclasses.is_dataclass(cls):
        # A dataclass without a docstring gets its signature as __doc__: "Name(a: int, ...)".
        auto = cls.__name__ + str(inspect.signature(cls)).replace(" -> None", "")
        return doc != auto
    return True


def _undocumented_members(cls: type) -> list[str]:
    missing = []
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("corral"):
            continue  # object, Exception, Generic...: not ours to document
        for name, attr in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)  # the subclass's definition is the one the reference shows
            fn = attr
            if isinstance(attr, (classmethod, staticmethod)):
                fn = attr.__func__
            elif isinstance(attr, property):
                fn = attr.fget
            if inspect.isfunction(fn) and not _has_doc(fn):
                missing.append(f"{cls.__name__}.{name} (defined in {klass.__module__})")
    return missing


def undocumented(module: ModuleType) -> list[str]:
    """The public names of ``module`` (and their public methods) that lack a docstring."""
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj):
            if not _class_has_doc(obj):
                missing.append(name)
            missing.extend(_undocumented_members(obj))
        elif callable(obj) and not _has_doc(obj):
            missing.append(name)
    return missing


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert _has_doc(module), f"{module_name} has no module docstring"
    assert module.__all__, f"{module_name}.__all__ is empty"
    missing = undocumented(module)
    assert not missing, f"{module_name}: public names without a docstring: {missing}"


def test_the_check_catches_what_it_should() -> None:
    # The check itself, on a made-up module: it must flag each kind of missing docstring.
    mod = ModuleType("corral._fake_public")

    class Base:
        """Documented."""

        def inherited(self) -> None:  # no docstring, on a corral base class
            pass

    @dataclasses.dataclass
    class Record:  # no docstring: dataclasses put the signature there
        x: int

    class Thing(Base):
        """Documented."""

        def ok(self) -> None:
            """Documented."""

        def bare(self) -> None:
            pass

        @property
        def prop(self) -> int:
            return 1

        def _private(self) -> None:
            pass

    def function() -> None:
        pass

    def documented() -> None:
        """Documented."""

    for obj in (Base, Record, Thing):
        obj.__module__ = "corral._fake_public"
    mod.Base, mod.Record, mod.Thing = Base, Record, Thing  # type: ignore[attr-defined]
    mod.function, mod.documented = function, documented  # type: ignore[attr-defined]
    mod.__all__ = ["Base", "Record", "Thing", "documented", "function"]
    assert sorted(undocumented(mod)) == sorted(
        [
            "Base.inherited (defined in corral._fake_public)",
            "Record",
            "Thing.bare (defined in corral._fake_public)",
            "Thing.inherited (defined in corral._fake_public)",
            "Thing.prop (defined in corral._fake_public)",
            "function",
        ]
    )
