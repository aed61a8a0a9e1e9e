"""The README's complete examples run and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
# Only whole programs are run; fragments (no asyncio.run / main) only illustrate.
# Blocks that need a Redis server run in tests/redis_ext/test_docs.py, against its server.
_PROGRAMS = [b for b in _BLOCKS if "asyncio.run(main())" in b and "corral.redis" not in b]


def test_readme_has_runnable_examples() -> None:
    assert len(_PROGRAMS) >= 2


@pytest.mark.parametrize("source", _PROGRAMS, ids=[f"block{i}" for i in range(len(_PROGRAMS))])
def test_readme_example_prints_its_comment(source: str) -> None:
    expected = [
        m.group(1).strip()
        for line in source.splitlines()
        if (m := re.search(r"print\(.*\)\s+#\s*(.+)$", line))
    ]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "README.md", "exec"), {"__name__": "__readme__"})
    assert out.getvalue().split("\n")[:-1] == expected
