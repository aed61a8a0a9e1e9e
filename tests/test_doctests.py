"""Every docstring example in corral runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import corral

_MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(corral.__path__, "corral.")
    # The CLI's demo and the bench engine are exercised by their own tests.
    if not m.name.startswith(("corral._bench", "corral._demo", "corral.__main__"))
)


# Modules of an optional extra carry its marker (``-m "not dask"`` where it cannot install).
_EXTRAS = {"corral.dask": "dask", "corral._patterns._dask": "dask"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(m, marks=getattr(pytest.mark, _EXTRAS[m])) if m in _EXTRAS else m
        for m in _MODULES
    ],
)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
