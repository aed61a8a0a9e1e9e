"""The async tests run on the loop that CORRAL_LOOP / CORRAL_TASK_FACTORY ask for (see
tests/conftest.py): a CI lane that sets them really tests uvloop or eager tasks."""

from __future__ import annotations

import asyncio
import os

import pytest

pytestmark = pytest.mark.timeout(10)


async def test_the_loop_is_the_one_asked_for() -> None:
    loop = asyncio.get_running_loop()
    on_uvloop = type(loop).__module__.startswith("uvloop")
    assert on_uvloop == (os.environ.get("CORRAL_LOOP", "asyncio") == "uvloop")
    eager = os.environ.get("CORRAL_TASK_FACTORY", "default") == "eager"
    factory = loop.get_task_factory()
    if eager:
        assert factory is asyncio.eager_task_factory  # type: ignore[attr-defined,unused-ignore]
    else:
        assert factory is None
