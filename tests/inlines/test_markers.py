"""A marked copy without a check, or a check without a copy, fails here (see registry.py)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from .registry import INLINES

pytestmark = pytest.mark.timeout(60)

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
MARKER = re.compile(r"#\s*inline of\s+(corral(?:\.\w+)+)")


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _enclosing(tree: ast.Module, line: int) -> list[str]:
    """The qualified name parts of the innermost function or class around ``line``."""
    best: list[str] = []

    def visit(node: ast.AST, prefix: list[str]) -> None:
        nonlocal best
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                end = child.end_lineno or child.lineno
                if child.lineno <= line <= end:
                    name = [*prefix, child.name]
                    if len(name) > len(best):
                        best = name
                    visit(child, name)

    visit(tree, [])
    return best


def find_markers() -> list[tuple[str, str, str]]:
    """``(original, copy, "path:line")`` for every marker under src/corral."""
    found = []
    for path in sorted((SRC / "corral").rglob("*.py")):
        text = path.read_text()
        if "inline of" not in text:
            continue
        tree = ast.parse(text)
        for lineno, line in enumerate(text.splitlines(), 1):
            m = MARKER.search(line)
            if m is None:
                continue
            where = _enclosing(tree, lineno)
            copy = ".".join([_module(path), *where])
            found.append((m.group(1), copy, f"{path.relative_to(SRC)}:{lineno}"))
    return found


def resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


MARKERS = find_markers()


def test_markers_are_found() -> None:
    assert len(MARKERS) >= len(INLINES)


@pytest.mark.parametrize(("original", "copy", "where"), MARKERS, ids=[m[2] for m in MARKERS])
def test_every_marked_copy_names_a_real_original_with_a_registered_check(
    original: str, copy: str, where: str
) -> None:
    try:
        resolve(original)
    except (ImportError, AttributeError):
        pytest.fail(f"{where}: '# inline of {original}' names nothing that exists")
    assert original in INLINES, (
        f"{where}: a copy of {original} with no equivalence check: add it to "
        "tests/inlines/registry.py (see docs/testing.md, 'Inlined copies')"
    )
    assert copy in INLINES[original].copies, (
        f"{where}: {copy} holds a copy of {original} but is not listed in its registry "
        "entry's copies, so no check is known to drive it"
    )


@pytest.mark.parametrize("original", sorted(INLINES))
def test_every_registered_inline_has_its_copies_and_its_checks(original: str) -> None:
    entry = INLINES[original]
    marked = {c for o, c, _ in MARKERS if o == original}
    stale = set(entry.copies) - marked
    assert not stale, f"{original}: listed copies with no marker left: {sorted(stale)}"
    assert entry.checks
    for check in entry.checks:
        file, _, name = check.partition("::")
        path = HERE / file
        assert path.exists(), f"{original}: check file {file} is missing"
        tree = ast.parse(path.read_text())
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        assert name in names, f"{original}: check {check} does not exist"
