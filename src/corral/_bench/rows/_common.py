"""Small helpers shared by row modules."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["peer"]


def peer(module: str) -> Any:
    """Import a peer library lazily, typed ``Any`` (no stubs needed, none required)."""
    return importlib.import_module(module)
