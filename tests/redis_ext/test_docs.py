"""The README's and docs/redis.md's corral.redis examples run (against the test's server) and
print what their comments say. (tests/test_readme.py leaves these blocks to this file.)"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def _blocks(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "REDIS_URL" in b]


_PROGRAMS = [(f"{p.name}-{i}", b) for p in (ROOT / "README.md", ROOT / "docs" / "redis.md")
             for i, b in enumerate(_blocks(p))]  # fmt: skip


def test_there_are_examples_for_both_flavours() -> None:
    names = [n for n, _ in _PROGRAMS]
    assert any(n.startswith("README") for n in names)
    assert any(n.startswith("redis.md") for n in names)


@pytest.mark.parametrize("source", [b for _, b in _PROGRAMS], ids=[n for n, _ in _PROGRAMS])
def test_example_prints_its_comment(
    source: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    expected = [
        m.group(1).strip()
        for line in source.splitlines()
        if (m := re.search(r"print\(.*\)\s+#\s*(.+)$", line))
    ]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "example", "exec"), {"__name__": "__example__"})
    assert out.getvalue().split("\n")[:-1] == expected
