"""The package keeps its shape: sub-packages by stage whose imports point down (import-linter's
contract in pyproject.toml, run by test_lint.py), no import cycle between modules, and one
module that knows where the job's files are."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "prcrs_batch"
LONG_MODULE_LINES = 400  # a hint to look at a module, not a rule


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _internal_imports(path: Path, known: set[str]) -> set[str]:
    """Every prcrs_batch module `path` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("prcrs_batch"):
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("prcrs_batch"))
    return (names & known) - {_module_name(path)}


def test_every_module_lives_in_a_stage():
    """At the root only what every layer uses; every other module in a sub-package."""
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert root == ["__init__.py", "__main__.py", "errors.py", "resources.py", "settings.py"]
    stages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert len(stages) >= 10, stages
    assert len(_modules()) > 60  # the walk below sees the sub-packages' modules


def test_long_modules_are_a_hint_not_a_rule():
    long = {
        _module_name(p): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > LONG_MODULE_LINES
    }
    if long:
        warnings.warn(f"modules over {LONG_MODULE_LINES} lines, worth a look: {long}", stacklevel=1)


def test_no_import_cycle_lazy_imports_included():
    known = {_module_name(p) for p in _modules()}
    graph = {_module_name(p): _internal_imports(p, known) for p in _modules()}
    # a package's __init__ imports nothing here; importing a module loads its package first
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, " -> ".join([*visiting[visiting.index(module) :], module])
        visiting.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        visiting.pop()
        done.add(module)

    assert sum(len(imports) for imports in graph.values()) > 150
    for module in graph:
        visit(module)


def test_only_resources_locates_the_repository():
    locating = [
        p.relative_to(PACKAGE).as_posix()
        for p in _modules()
        if "__file__" in p.read_text() or "importlib import resources" in p.read_text()
    ]
    assert locating == ["resources.py"]
