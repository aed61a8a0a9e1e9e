"""The package's shape: no import cycle among corral's modules, no file over 600 lines.

Imports are read from the source with ``ast``, so the check sees what the interpreter
may import at any time: module-level imports *and* lazy ones inside functions and
methods. Only imports under ``if TYPE_CHECKING:`` are left out (they never run).

An edge ``a -> b`` means module ``a`` names module ``b`` in an import:
``from .x import y`` is an edge to ``x`` (and to ``x.y`` too when that is a module),
``from . import y`` an edge to ``y`` when it is a module, else to the package. Importing
a submodule also runs its parents' ``__init__``, but those implicit edges are not counted:
every module would then reach ``corral/__init__.py``, which imports the public names.

The layering this keeps (docs/design.md): ``_errors`` -> ``_core`` -> ``_shells`` ->
``_aio``/``_threads`` -> ``_patterns`` -> the public namespaces -> ``_bench``/``_demo``/``cli``.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "corral"
MAX_LINES = 600

# The layers, lowest first (docs/design.md, "Layout"), by module-name prefix: a module may
# import its own layer and the ones below, never one above. Modules of one layer may import
# each other (the asyncio shell runs plain functions on the thread shell's workers), but not
# in a cycle. A module that matches no prefix fails test_every_module_has_a_layer: place it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("errors", ("corral._errors",)),
    ("core", ("corral._core",)),
    ("shared shell", ("corral._shells", "corral._select")),
    ("flavour shells", ("corral._aio", "corral._threads")),
    ("patterns", ("corral._patterns", "corral._redis")),
    ("public namespaces", ("corral", "corral.threads", "corral.testing", "corral.redis")),
    ("tools", ("corral._bench", "corral._demo", "corral.cli", "corral.__main__")),
)


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    where: str  # "path:line", for the report


def _module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: anywhere, except under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)  # the `else:` branch does run
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _edges(modules: dict[str, Path], src: Path = SRC) -> list[Edge]:
    """The import edges among ``modules`` (name -> path under ``src``)."""
    edges: list[Edge] = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in _imports(tree):
            where = f"{path.relative_to(src)}:{node.lineno}"
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                named = [f"{mod}.{alias.name}" for alias in node.names]
                sub = [m for m in named if m in modules]
                # `from pkg import submodule` imports the submodule; any other name is
                # one of `mod`'s own (which `from .x import a, b` names once).
                if len(sub) < len(named):
                    targets.append(mod)
                targets.extend(sub)
            edges.extend(Edge(name, t, where) for t in targets if t in modules and t != name)
    return edges


def _graph(edges: list[Edge]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.src, set()).add(e.dst)
    return graph


def _path(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """The shortest import path from ``start`` to ``goal`` (BFS), or None."""
    prev: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            out = [node]
            while (p := prev[out[-1]]) is not None:
                out.append(p)
            return out[::-1]
        for nxt in sorted(graph.get(node, ())):
            if nxt not in prev:
                prev[nxt] = node
                queue.append(nxt)
    return None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each edge that closes one, without repeats."""
    seen: set[tuple[str, ...]] = set()
    cycles: list[list[str]] = []
    for a in sorted(graph):
        for b in sorted(graph[a]):
            back = _path(graph, b, a)
            if back is None:
                continue
            cycle = [a, *back]  # a -> b -> ... -> a
            ring = cycle[:-1]
            i = ring.index(min(ring))
            key = tuple(ring[i:] + ring[:i])
            if key not in seen:
                seen.add(key)
                cycles.append([*key, key[0]])
    return cycles


def _describe(cycle: list[str], edges: list[Edge]) -> str:
    where = {(e.src, e.dst): e.where for e in reversed(edges)}  # first occurrence wins
    steps = [f"    {a} -> {b}  ({where[a, b]})" for a, b in itertools.pairwise(cycle)]
    return "\n".join(steps)


def test_no_import_cycles() -> None:
    edges = _edges(_modules())
    cycles = _cycles(_graph(edges))
    report = "\n\n".join(_describe(c, edges) for c in cycles)
    assert not cycles, (
        f"{len(cycles)} import cycle(s) inside src/corral (lazy imports count; only "
        f"`if TYPE_CHECKING:` imports do not). Invert the dependency: the lower layer must "
        f"not import the upper one.\n\n{report}"
    )


def _layer(module: str) -> int | None:
    """The index in LAYERS of ``module``'s layer (longest matching prefix), or None."""
    best: tuple[int, int] | None = None  # (prefix length, layer index)
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            under = module == prefix or module.startswith(prefix + ".")
            # "corral" names the package itself only, not everything under it
            if prefix == "corral" and module != prefix:
                under = False
            if under and (best is None or len(prefix) > best[0]):
                best = (len(prefix), i)
    return None if best is None else best[1]


def _upward(edges: list[Edge]) -> list[str]:
    out = []
    for e in edges:
        src, dst = _layer(e.src), _layer(e.dst)
        if src is not None and dst is not None and dst > src:
            out.append(f"    {e.src} ({LAYERS[src][0]}) -> {e.dst} ({LAYERS[dst][0]})  ({e.where})")
    return out


def _core_breaks(edges: list[Edge]) -> list[str]:
    return [
        f"    {e.src} -> {e.dst}  ({e.where})"
        for e in edges
        if (e.src == "corral._core" or e.src.startswith("corral._core."))
        and not (e.dst in ("corral._errors", "corral._core") or e.dst.startswith("corral._core."))
    ]


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in _modules() if _layer(m) is None)
    assert not unplaced, f"add these modules' layer to LAYERS in {__file__}: {unplaced}"


def test_core_imports_only_the_core_and_errors() -> None:
    """The I/O-free core (``corral._core``) imports nothing above it, lazily or not: no
    shell, pattern or public namespace. What it needs from a shell, the shell registers
    (``_core/views.py``: ``Context.done()`` builds the asyncio Channel from there)."""
    bad = _core_breaks(_edges(_modules()))
    assert not bad, "the core imports a layer above it:\n" + "\n".join(bad)


def test_imports_only_go_down_the_layers() -> None:
    bad = _upward(_edges(_modules()))
    assert not bad, (
        "imports that go up the layering (docs/design.md, Layout; lazy imports count):\n"
        + "\n".join(bad)
    )


def test_no_file_over_600_lines() -> None:
    # Generated files (the _threads_* twins) count too: they are as long as their sources.
    long = {
        str(p.relative_to(SRC.parent)): n
        for p in sorted(PACKAGE.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these along their seams (max {MAX_LINES} lines): {long}"


# -- the checker checks what it claims -------------------------------------------------------


def _fake_package(src: Path, files: dict[str, str]) -> dict[str, Path]:
    root = src / "corral"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {_module_name(p, src): p for p in sorted(root.rglob("*.py"))}


def test_checker_sees_lazy_imports_and_skips_type_checking(tmp_path: Path) -> None:
    modules = _fake_package(
        tmp_path,
        {
            "__init__.py": "",
            "_low.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from ._high import X\n"  # never runs: no edge
                "else:\n"
                "    from . import _other\n"  # runs: an edge
                "def f():\n"
                "    from ._high import g\n"  # lazy: an edge
                "    return g\n"
            ),
            "_high.py": "from ._low import f\ndef g(): ...\n",
            "_other.py": "",
            "pkg/__init__.py": "",
            "pkg/mod.py": "from .. import _other\nfrom ..pkg import mod2 as m\n",
            "pkg/mod2.py": "from . import VALUE\n",
        },
    )
    edges = _edges(modules, tmp_path)
    pairs = {(e.src, e.dst) for e in edges}
    assert pairs == {
        ("corral._low", "corral._other"),
        ("corral._low", "corral._high"),
        ("corral._high", "corral._low"),
        ("corral.pkg.mod", "corral._other"),
        ("corral.pkg.mod", "corral.pkg.mod2"),
        ("corral.pkg.mod2", "corral.pkg"),
    }
    cycles = _cycles(_graph(edges))
    assert cycles == [["corral._high", "corral._low", "corral._high"]]
    assert "corral._low -> corral._high  (corral/_low.py:7)" in _describe(cycles[0], edges)


def test_checker_finds_a_longer_cycle_once(tmp_path: Path) -> None:
    modules = _fake_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "import corral.b\n",
            "b.py": "from corral import c\n",
            "c.py": "from .a import x\n",
        },
    )
    edges = _edges(modules, tmp_path)
    assert _cycles(_graph(edges)) == [["corral.a", "corral.b", "corral.c", "corral.a"]]
    # Without the edge that closes it, no cycle is left.
    assert _cycles(_graph([e for e in edges if e.src != "corral.c"])) == []


def _layer_name(module: str) -> str | None:
    i = _layer(module)
    return None if i is None else LAYERS[i][0]


def test_layers_are_found_by_longest_prefix() -> None:
    assert _layer_name("corral._core.views") == "core"
    assert _layer_name("corral") == "public namespaces"
    assert _layer_name("corral.threads") == "public namespaces"
    assert _layer_name("corral.testing._sweep") == "public namespaces"
    assert _layer_name("corral._bench.rows.channels") == "tools"
    assert _layer("corral._corex") is None  # a prefix is a whole name segment
    assert _layer("corral.newthing") is None  # not swallowed by "corral"


def test_checker_sees_an_upward_import_out_of_the_core(tmp_path: Path) -> None:
    modules = _fake_package(
        tmp_path,
        {
            "__init__.py": "",
            "_errors.py": "",
            "_shells.py": "from ._core import state\n",  # down: fine
            "_core/__init__.py": "",
            "_core/state.py": (
                "from typing import TYPE_CHECKING\n"
                "from .. import _errors\n"  # down: fine
                "if TYPE_CHECKING:\n"
                "    from .._aio.chan import Chan\n"  # never runs: fine
                "def done():\n"
                "    from .._aio.chan import Chan\n"  # lazy, up: a break
                "    return Chan()\n"
            ),
            "_aio/__init__.py": "",
            "_aio/chan.py": "from .._shells import x\n",
        },
    )
    edges = _edges(modules, tmp_path)
    assert _core_breaks(edges) == [
        "    corral._core.state -> corral._aio.chan  (corral/_core/state.py:6)"
    ]
    assert _upward(edges) == [
        "    corral._core.state (core) -> corral._aio.chan (flavour shells)  "
        "(corral/_core/state.py:6)"
    ]
