"""The layers as DESIGN.md draws them: no import cycle between modules, and `generation` and
`storage` import neither `bot` nor each other.

Read from the source with ast, not by importing: module-level and function-level imports count
alike (a deferred import still ties two modules together); imports under `if TYPE_CHECKING:`
do not run and only count for the layer rule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "generation", "storage")
FORBIDDEN = {"generation": ("bot", "storage"), "storage": ("bot", "generation")}


def module_files() -> dict[str, Path]:
    """Every module of the three packages by its dotted name (a package by its own name)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, bool]]:
    """(module imported, whether it runs) for each import in the file that names one of `modules`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    type_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                 for statement in block.body for node in ast.walk(statement)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        runs = id(node) not in type_only
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name, runs
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}" if base else alias.name
                if submodule in modules:  # `from x import y` where y is a module
                    yield submodule, runs
                elif base in modules:
                    yield base, runs


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    anchor = ".".join(parts[:len(parts) - node.level + 1])
    return f"{anchor}.{node.module}" if node.module else anchor


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The imports that run (for cycles), and all imports (for the layer rule), module → modules."""
    modules = module_files()
    running: dict[str, set[str]] = {name: set() for name in modules}
    every: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imported, runs in imports_of(name, path, modules):
            if imported != name:
                every[name].add(imported)
                if runs:
                    running[name].add(imported)
    return running, every


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import one another in a ring (strongly connected, Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            group.append(node)
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def describe(group: list[str], graph: dict[str, set[str]]) -> str:
    """The group and the imports that close it, for the failure message."""
    edges = [f"{module} → {imported}" for module in group for imported in sorted(graph[module] & set(group))]
    return " ↔ ".join(group) + ":\n    " + "\n    ".join(edges)


def test_no_module_imports_itself_through_others() -> None:
    running, _ = import_graph()
    found = cycles(running)
    assert not found, "import cycles:\n" + "\n".join(describe(group, running) for group in found)


def test_generation_and_storage_import_neither_bot_nor_each_other() -> None:
    _, every = import_graph()
    crossings = [f"{module} imports {imported}" for module, imported_modules in sorted(every.items())
                 for imported in sorted(imported_modules)
                 if imported.split(".")[0] in FORBIDDEN.get(module.split(".")[0], ())]
    assert not crossings, "\n".join(crossings)


def test_the_walk_sees_deferred_relative_and_submodule_imports(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert describe(["a", "b", "c"], graph) == "a ↔ b ↔ c:\n    a → b\n    b → c\n    c → a"
    package = tmp_path / "pkg"
    package.mkdir()
    source = package / "one.py"
    source.write_text("from typing import TYPE_CHECKING\nfrom . import two\nif TYPE_CHECKING:\n    import pkg.three\n"
                      "def later():\n    from .sub.deep import thing\n    from pkg import four\n")
    known = {name: source for name in ("pkg", "pkg.one", "pkg.two", "pkg.three", "pkg.four", "pkg.sub.deep")}
    assert sorted(imports_of("pkg.one", source, known)) == [
        ("pkg.four", True), ("pkg.sub.deep", True), ("pkg.three", False), ("pkg.two", True)]


def test_tests_and_benches_share_support_and_never_import_each_other() -> None:
    """What both need lives in support/; a bench importing a test module (or the reverse) ties them in a knot."""
    test_modules = {path.stem for path in (REPO / "tests").glob("*.py")} | {"tests"}
    crossings = []
    for folder, foreign in (("tests", {"bench"}), ("bench", test_modules), ("support", test_modules | {"bench"})):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                crossings += [f"{path.relative_to(REPO)} imports {name}" for name in names
                              if name.split(".")[0] in foreign]
    assert not crossings, "\n".join(crossings)
