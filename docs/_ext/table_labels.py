"""Label every table cell with its column's header, so a table can stack on a phone.

On a narrow screen docs/stylesheets/extra.css shows each row of a plain Markdown table as a
block, one cell under the other, each preceded by its column's name (``data-label``, set
here): the crosswalk's code then wraps at its spaces in a full-width cell instead of breaking
one character per line in a 60-pixel column. mkdocs.yml runs this as a hook
(``on_page_content``); tests/test_docs_site.py tests :func:`label_cells`.
"""

from __future__ import annotations

import html
import re
from typing import Any

_TABLE = re.compile(r"<table>(.*?)</table>", re.S)
_HEAD = re.compile(r"<thead>(.*?)</thead>", re.S)
_TH = re.compile(r"<th[^>]*>(.*?)</th>", re.S)
_ROW = re.compile(r"<tr>(.*?)</tr>", re.S)
_TD = re.compile(r"<td(?=[\s>])")
_TAG = re.compile(r"<[^>]+>")


def _label(th: str) -> str:
    return html.escape(html.unescape(_TAG.sub("", th)).strip(), quote=True)


def _table(match: re.Match[str]) -> str:
    body = match.group(1)
    head = _HEAD.search(body)
    if head is None:
        return match.group(0)
    labels = [_label(th) for th in _TH.findall(head.group(1))]

    def row(m: re.Match[str]) -> str:
        cells = iter(labels)
        cells_html = _TD.sub(lambda _: f'<td data-label="{next(cells, "")}"', m.group(1))
        return f"<tr>{cells_html}</tr>"

    rest = body[head.end() :]
    return "<table>" + body[: head.end()] + _ROW.sub(row, rest) + "</table>"


def label_cells(page_html: str) -> str:
    """Add ``data-label="<column header>"`` to every ``<td>`` of every headed table."""
    return _TABLE.sub(_table, page_html)


def on_page_content(html_text: str, **_: Any) -> str:
    return label_cells(html_text)
