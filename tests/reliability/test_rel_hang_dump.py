"""A hung test prints every thread's and every asyncio task's stack before it is killed.

Run in a pytest subprocess over a copy of the real conftest (the hang kills that process).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

CONFTEST = Path(__file__).parents[1] / "conftest.py"

HANGING = """
    import asyncio
    import threading

    import pytest

    import corral


    async def wait_for_godot(ch):
        return await ch.recv()


    async def outer(ch):
        return await wait_for_godot(ch)


    @pytest.mark.timeout(1)
    async def test_hangs_in_a_task():
        ch = corral.Channel()
        task = asyncio.create_task(outer(ch), name="waiting-for-godot")
        await task


    @pytest.mark.timeout(1)
    def test_hangs_in_a_thread():
        never = threading.Event()
        t = threading.Thread(target=never.wait, name="stuck-worker", daemon=True)
        t.start()
        t.join()
"""


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        (
            "test_hangs_in_a_task",
            ["asyncio tasks", "waiting-for-godot", "in outer", "in wait_for_godot", "in recv"],
        ),
        ("test_hangs_in_a_thread", ["Stack of stuck-worker", "Stack of MainThread", "t.join()"]),
    ],
)
def test_a_hung_test_dumps_every_thread_and_task(
    pytester: pytest.Pytester, test: str, expected: list[str]
) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini(
        """
        [pytest]
        filterwarnings = error
        timeout_method = thread
        addopts = -p no:cacheprovider
        """
    )
    pytester.makepyfile(test_hang=textwrap.dedent(HANGING))
    result = pytester.runpytest_subprocess(f"test_hang.py::{test}", timeout=60)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret != 0
    assert "Timeout" in out
    for text in expected:
        assert text in out, f"{text!r} missing from the hang dump:\n{out}"
    # The order of the chain: outermost first, the innermost (where it waits) last.
    if test == "test_hangs_in_a_task":
        chain = out[out.index("waiting-for-godot") :]
        assert chain.index("in outer") < chain.index("in wait_for_godot") < chain.index("in recv")
