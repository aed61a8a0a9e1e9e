"""``run_in="interpreter"`` (3.14+, PEP 734) and ``run_in="process"`` under the start methods
Python 3.14 uses (``forkserver`` by default on Linux): work that cannot cross is refused when
the stage is planned, with an error naming the function, not a pickling traceback later."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import corral

from .helpers import Flavour

pytestmark = pytest.mark.timeout(120)

SRC = Path(__file__).resolve().parents[2] / "src"
HAS_INTERPRETERS = sys.version_info >= (3, 14)
needs_interpreters = pytest.mark.skipif(
    not HAS_INTERPRETERS, reason="InterpreterPoolExecutor is 3.14+"
)


@needs_interpreters
@pytest.mark.slow
async def test_fan_out_in_interpreters(flavour: Flavour) -> None:
    flow = flavour.fan_out(math.factorial, range(30), workers=2, run_in="interpreter", ordered=True)
    assert await flavour.collect(flow) == [math.factorial(i) for i in range(30)]


@needs_interpreters
@pytest.mark.slow
async def test_a_pipeline_stage_in_interpreters(flavour: Flavour) -> None:
    flow = flavour.pipeline(
        range(10),
        corral.stage(math.factorial, workers=2, run_in="interpreter"),
        corral.stage(str, workers=1),
        ordered=True,
    )
    assert await flavour.collect(flow) == [str(math.factorial(i)) for i in range(10)]


@needs_interpreters
async def test_a_closure_cannot_cross_interpreters(flavour: Flavour) -> None:
    k = 3

    def add_k(x: int) -> int:
        return x + k

    with pytest.raises(TypeError, match=r"add_k.*another interpreter.*closure \(it uses k"):
        flavour.fan_out(add_k, range(3), run_in="interpreter")
    with pytest.raises(TypeError, match="add_k"):
        corral.stage(add_k, run_in="interpreter")


@pytest.mark.skipif(HAS_INTERPRETERS, reason="the error before 3.14")
async def test_interpreter_before_3_14_is_a_clear_error(flavour: Flavour) -> None:
    with pytest.raises(ValueError, match=r"run_in='interpreter' needs Python 3\.14\+"):
        flavour.fan_out(math.factorial, range(3), run_in="interpreter")


async def test_an_async_fn_cannot_run_in_interpreters(flavour: Flavour) -> None:
    async def job(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"coroutine function.*run_in='interpreter'"):
        flavour.fan_out(job, range(3), run_in="interpreter")


async def test_a_process_closure_is_refused_by_name(flavour: Flavour) -> None:
    k = 3

    def add_k(x: int) -> int:
        return x + k

    with pytest.raises(TypeError, match=r"fn=.*test_a_process_closure_is_refused_by_name"):
        flavour.fan_out(add_k, range(3), run_in="process")
    with pytest.raises(TypeError, match=r"<lambda>.*cannot be sent to a worker process"):
        corral.stage(lambda x: x, run_in="process")


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_a_process_fn_of_a_main_without_file_is_refused_under(method: str) -> None:
    # python -c: __main__ has no file, so a child started by forkserver/spawn cannot import
    # `square`; it used to break the pool with a ConnectionResetError traceback.
    code = textwrap.dedent(
        f"""
        import multiprocessing, sys
        multiprocessing.set_start_method({method!r})
        import corral.threads
        def square(x):
            return x * x
        try:
            corral.threads.fan_out(square, range(3), run_in="process")
        except TypeError as exc:
            print(exc)
        else:
            print("accepted")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC)},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "fn=__main__.square is defined in a __main__ without a file" in out.stdout
    assert repr(method) in out.stdout
