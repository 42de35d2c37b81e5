"""The shape of the code (#12's "done when"), read from the source, not run.

* **No import cycle** among the modules of ``src/sitewatch``.  The import graph is built from the AST of every
  module: module-level imports and imports inside functions alike (a deferred import still ties two modules
  together), but not the imports under ``if TYPE_CHECKING:`` (they never run).  ``from .pkg import name``
  depends on the submodule ``pkg.name`` when there is one, else on the package ``pkg`` (its ``__init__``).  A
  package's ``__init__`` importing its own submodules is how a package gathers its public names, not a
  dependency between layers, so those edges do not count.  A failure names every group of modules that import
  each other, with one cycle through it and the line of each import.
* **No long function without a reason.**  A function (or method) of more than ``MAX_LINES`` lines, counted from
  its ``def`` to its last line with its docstring, must say in its docstring why it stays long, in a sentence
  that starts with ``Long because`` followed by the reason, for example::

      \"\"\"Render one date of the world.

      Long because it is a recipe read top to bottom: each step paints over the last.
      \"\"\"

  Split it into well-named steps where that reads better.  A failure lists every offender at once.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sitewatch"
ROOT = PACKAGE.name
MAX_LINES = 60
REASON = re.compile(r"\bLong because\s+\S+(\s+\S+){2,}")  # the marker and a reason of three words or more


def _module_name(path: Path) -> str:
    parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements under ``node`` that run: every one but those under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _imports_in(other)
            continue
        yield from _imports_in(child)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _imports(node)


def _targets(name: str, is_package: bool, imp: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """The package's modules that one import statement of module ``name`` loads by name."""
    found: set[str] = set()
    if isinstance(imp, ast.Import):
        for alias in imp.names:
            if alias.name in modules:
                found.add(alias.name)
        return found
    if imp.level:
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[: len(base) - (imp.level - 1)]
        source = ".".join(base + ([imp.module] if imp.module else []))
    else:
        source = imp.module or ""
    for alias in imp.names:
        sub = f"{source}.{alias.name}"
        if sub in modules:
            found.add(sub)
        elif source in modules:
            found.add(source)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {module it imports: line of the first such import}, without a package's imports of its own
    submodules."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: dict[str, int] = {}
        for imp in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for target in _targets(name, is_package, imp, modules):
                own_submodule = is_package and target.startswith(name + ".")
                if target != name and not own_submodule:
                    edges.setdefault(target, imp.lineno)
        graph[name] = edges
    return graph


def _strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The groups of two or more modules that reach each other (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)


def _cycle_through(group: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A shortest cycle through the group's first module, within the group (breadth first)."""
    start, members = group[0], set(group)
    parent: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node]):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if child in members and child not in parent:
                parent[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")  # unreachable for a strongly connected group


def import_cycles() -> list[str]:
    """One line per group of modules that import each other: a cycle through it, with each import's line."""
    graph = import_graph()
    modules = _modules()
    out = []
    for group in _strongly_connected(graph):
        cycle = _cycle_through(group, graph)
        steps = [f"{a} ({modules[a].relative_to(PACKAGE.parent)}:{graph[a][b]})" for a, b in itertools.pairwise(cycle)]
        line = " -> ".join([*steps, cycle[-1]])
        others = [m for m in group if m not in cycle]
        out.append(line + (f"; in the same group: {', '.join(others)}" if others else ""))
    return out


def long_functions() -> list[str]:
    """Every function of more than ``MAX_LINES`` lines whose docstring gives no reason (``Long because ...``)."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_LINES and not REASON.search(ast.get_docstring(node) or ""):
                out.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return out


def test_the_package_has_no_import_cycle():
    cycles = import_cycles()
    assert cycles == [], (
        "modules that import each other (break the cycle: move what both need down a layer, or import a name "
        "for typing only under `if TYPE_CHECKING:`):\n" + "\n".join(cycles)
    )


def test_no_function_is_long_without_a_reason():
    found = long_functions()
    assert found == [], (
        f"functions over {MAX_LINES} lines without a reason: split them into named steps, or say why they stay "
        "long in a docstring sentence starting 'Long because' (see this module's docstring):\n" + "\n".join(found)
    )


# -- the checks' own logic, on small made-up graphs and sources -------------------------------------------------
def test_groups_and_cycles_are_found_and_a_tree_has_none():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}, "e": {"d": 5}}
    assert _strongly_connected(graph) == [["a", "b", "c"]]
    assert _cycle_through(["a", "b", "c"], graph) == ["a", "b", "c", "a"]
    assert _strongly_connected({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 2}}) == []


def test_imports_under_type_checking_do_not_count_but_function_level_ones_do():
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .a import A\nelse:\n    from .b import B\n"
        "def f():\n    from .c import C\n    if TYPE_CHECKING:\n        import x\n"
    )
    assert sorted(i.module or "" for i in _imports(tree) if isinstance(i, ast.ImportFrom)) == ["b", "c", "typing"]


def test_relative_imports_resolve_to_submodules_or_packages():
    modules = {m: Path() for m in ("sitewatch", "sitewatch.demo", "sitewatch.demo._spectra", "sitewatch.geo")}

    def targets(module: str, is_package: bool, source: str) -> set[str]:
        (imp,) = _imports(ast.parse(source))
        return _targets(module, is_package, imp, modules)

    assert targets("sitewatch.demo.world", False, "from . import _spectra as sp, helper") == {
        "sitewatch.demo._spectra", "sitewatch.demo"
    }
    assert targets("sitewatch.demo.world", False, "from ..geo import to_crs") == {"sitewatch.geo"}
    assert targets("sitewatch.demo", True, "from . import _spectra") == {"sitewatch.demo._spectra"}
    assert targets("sitewatch.demo", True, "from ..geo import to_crs") == {"sitewatch.geo"}
    assert targets("sitewatch.demo.world", False, "import sitewatch.geo, numpy") == {"sitewatch.geo"}


def test_the_reason_marker():
    assert REASON.search("Do it.\n\nLong because it is a recipe read top to bottom.")
    assert not REASON.search("Do it.  Long because.")
