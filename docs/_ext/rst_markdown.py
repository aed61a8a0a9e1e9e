"""corral's reST docstring habits as Markdown, for the docs site (no dependencies).

corral's docstrings are plain prose (no Google/NumPy sections) with a few reST habits that
also read well in ``help()``: ``:class:`X``` roles, doctest examples (which
tests/test_doctests.py runs) and ``::`` literal blocks. Markdown shows a role as noise and
runs a doctest's lines together into one paragraph, so :func:`to_markdown` turns roles into
inline code, and doctests and literal blocks into fenced code blocks. griffe_corral.py
applies it to every docstring before mkdocstrings renders it; the sources stay as they are.
tests/test_docs_site.py tests it.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:class|func|meth|attr|data|exc|mod|obj):`~?\.?([^`]+)`")


def to_markdown(text: str) -> str:
    """Rewrite one docstring (already dedented) from corral's reST habits to Markdown."""
    text = _ROLE.sub(r"`\1`", text)
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith(">>>"):
            # A doctest block runs to the next blank line (doctest's own rule).
            out.append(f"{indent}```pycon")
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            out.append(f"{indent}```")
            continue
        if stripped.endswith("::") and not stripped.startswith(("..", ">>>")):
            # A reST literal block: "Go::", a blank line, then an indented block.
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            body_indent = len(lines[j]) - len(lines[j].lstrip()) if j < len(lines) else 0
            if j < len(lines) and body_indent > len(indent):
                head = stripped[:-2].rstrip()
                if head:
                    out.append(f"{indent}{head}:")
                out.append("")
                out.append(f"{indent}```")
                k = j
                while k < len(lines) and (
                    not lines[k].strip() or len(lines[k]) - len(lines[k].lstrip()) >= body_indent
                ):
                    k += 1
                while k > j and not lines[k - 1].strip():
                    k -= 1  # trailing blank lines belong after the block
                out.extend(indent + ln[body_indent:] for ln in lines[j:k])
                out.append(f"{indent}```")
                i = k
                continue
        out.append(line)
        i += 1
    return "\n".join(out)
