"""Fixtures for the pattern tests (see helpers.py for the drivers)."""

from __future__ import annotations

import pytest

from .helpers import Flavour, Kind


@pytest.fixture(params=["aio", "threads"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return Flavour(request.param)


@pytest.fixture(params=["async", "sync"])
def kind(request: pytest.FixtureRequest) -> Kind:
    return Kind(request.param)
