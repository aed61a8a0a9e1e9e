"""A griffe extension for corral's docs site: each docstring through ``to_markdown``.

mkdocs.yml loads this file by path (mkdocstrings' ``extensions`` option); the conversion
itself is in rst_markdown.py beside it, free of griffe, so the test suite can test it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import griffe

# Loaded by path: griffe imports this file by path too, so docs/_ext is not on sys.path.
_spec = importlib.util.spec_from_file_location(
    "corral_docs_rst_markdown", Path(__file__).with_name("rst_markdown.py")
)
assert _spec is not None
assert _spec.loader is not None
_rst_markdown = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_rst_markdown)
to_markdown = _rst_markdown.to_markdown


class CorralDocstrings(griffe.Extension):
    """Applies ``to_markdown`` to every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
