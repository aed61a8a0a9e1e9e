"""The docs site's Examples page, generated at build time from docs/examples/ (no dependencies).

Every runnable example gets an entry: the first paragraph of its module docstring, the guide
that shows it beside its Go snippet, and for an example that no guide shows, its code
(read from the file at build time: included, not copied). So a new example is on the site
the moment it lands, guide or not. mkdocs.yml runs this as a hook (``on_page_markdown``);
tests/test_docs_site.py tests :func:`catalogue`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent
MARKER = "<!-- examples-catalogue -->"
_INCLUDE = re.compile(r'--8<-- "([^":]+)(?::\w+)?"')


def _title(md: str) -> str:
    m = re.search(r"^# (.+)$", md, re.M)
    return m.group(1).strip() if m else "guide"


def guides_by_example(docs: Path = DOCS) -> dict[str, tuple[str, str]]:
    """Map each example file name to (guide path relative to docs/, guide title)."""
    found: dict[str, tuple[str, str]] = {}
    for page in sorted((docs / "guide").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for name in _INCLUDE.findall(text):
            found.setdefault(name, (page.relative_to(docs).as_posix(), _title(text)))
    return found


def _summary(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = doc.split("\n\n", 1)[0]
    # The docstrings use reST's ``code``; Markdown's single backticks read the same.
    return " ".join(first.split()).replace("``", "`")


def catalogue(docs: Path = DOCS) -> str:
    """The Markdown for every example in ``docs/examples``, in file name order."""
    guides = guides_by_example(docs)
    out = []
    for path in sorted((docs / "examples").glob("*.py")):
        out.append(f"## `{path.name}`\n")
        out.append(f"{_summary(path)}\n")
        run = f"Run it: `python docs/examples/{path.name}`."
        if path.name in guides:
            page, title = guides[path.name]
            out.append(f"{run} Shown beside its Go snippet in [{title}]({page}).\n")
        else:
            out.append(f"{run}\n")
            out.append(f'??? example "docs/examples/{path.name}"\n')
            out.append("    ```python")
            code = path.read_text(encoding="utf-8").rstrip("\n")
            out.extend(f"    {line}".rstrip() for line in code.split("\n"))
            out.append("    ```\n")
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """mkdocs hook: fill the Examples page's marker with :func:`catalogue`."""
    if MARKER in markdown:
        return markdown.replace(MARKER, catalogue())
    return markdown
