"""What the leak check gained for the reliability suite: errors corral can only log (a
failing ``after_func`` callback runs in the cancelling thread, with no caller to raise to)
fail the test that caused them. Run under a copy of the real conftest in a subprocess."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

CONFTEST = Path(__file__).parents[1] / "conftest.py"

CASES = """
    import corral


    def test_a_failing_after_func_callback_fails_the_test():
        ctx = corral.with_cancel(corral.background())

        def callback():
            raise RuntimeError("callback failed where nobody could see it")

        ctx.after_func(callback)
        ctx.cancel()


    def test_a_clean_after_func_callback_passes():
        ctx = corral.with_cancel(corral.background())
        ctx.after_func(lambda: None)
        ctx.cancel()
"""


def test_errors_logged_by_corral_fail_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini(
        """
        [pytest]
        filterwarnings = error
        addopts = -p no:cacheprovider
        """
    )
    pytester.makepyfile(test_cases=textwrap.dedent(CASES))
    result = pytester.runpytest_subprocess("-rA", timeout=60)
    out = result.stdout.str()
    assert "corral logged an error" in out
    assert "callback failed where nobody could see it" in out
    result.assert_outcomes(passed=2, errors=1)
