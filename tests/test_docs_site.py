"""The docs site's own moving parts, without building it (CI builds it: `mkdocs build --strict`).

* docs/index.md's complete Python example runs and prints what its comment says;
* every guide includes an example file that exists, and every example is shown by a guide;
* the docstring conversion (docs/_ext/rst_markdown.py) turns corral's reST habits into
  Markdown: roles into code, doctests and ``::`` blocks into fenced code blocks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _load_rst_markdown() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "corral_docs_rst_markdown", DOCS / "_ext" / "rst_markdown.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


to_markdown = _load_rst_markdown().to_markdown


def test_index_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "index.md").read_text(), re.S)
    assert len(blocks) == 1
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "docs/index.md", "exec"), {"__name__": "__docs__"})
    assert out.getvalue() == "[0, 1, 2]\n"


def test_guides_include_every_example() -> None:
    included: set[str] = set()
    for page in (DOCS / "guide").glob("*.md"):
        for name in re.findall(r'--8<-- "([^":]+)(?::\w+)?"', page.read_text()):
            assert (DOCS / "examples" / name).is_file(), f"{page.name} includes missing {name}"
            included.add(name)
    examples = {p.name for p in (DOCS / "examples").glob("*.py")}
    assert examples <= included, f"examples no guide shows: {sorted(examples - included)}"


def test_roles_become_inline_code() -> None:
    text = "See :class:`Cancelled`, :meth:`~corral.Channel.send` and :func:`.fan_out`."
    assert to_markdown(text) == "See `Cancelled`, `corral.Channel.send` and `fan_out`."


def test_doctest_becomes_a_fenced_block() -> None:
    text = "Intro.\n\n>>> x = 1\n>>> x + 1\n2\n\nAfter."
    assert to_markdown(text) == "Intro.\n\n```pycon\n>>> x = 1\n>>> x + 1\n2\n```\n\nAfter."


def test_indented_doctest_keeps_its_indent() -> None:
    text = "* item:\n\n  >>> 1\n  1"
    assert to_markdown(text) == "* item:\n\n  ```pycon\n  >>> 1\n  1\n  ```"


def test_literal_block_becomes_a_fenced_block() -> None:
    text = "Go::\n\n    g.Go(f)\n\n        nested\n\nAfter."
    assert to_markdown(text) == "Go:\n\n```\ng.Go(f)\n\n    nested\n```\n\nAfter."


def test_text_without_rest_is_unchanged() -> None:
    text = "Plain ``code`` and a list:\n\n* a\n* b\n\nA line ending in a colon:"
    assert to_markdown(text) == text
