"""The package keeps its shape: small modules, imports that never go round in a circle,
and one module that knows where the job's files are."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "prcrs_batch"
MAX_LINES = 400


def _internal_imports(path: Path) -> set[str]:
    """Every prcrs_batch module `path` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "prcrs_batch":
                names.update(alias.name for alias in node.names)
            elif node.module.startswith("prcrs_batch."):
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(
                a.name.split(".")[1] for a in node.names if a.name.startswith("prcrs_batch.")
            )
    return {n for n in names if (PACKAGE / f"{n}.py").exists()} - {path.stem}


def _modules() -> dict[str, set[str]]:
    return {p.stem: _internal_imports(p) for p in sorted(PACKAGE.glob("*.py"))}


def test_no_module_over_400_lines():
    long = {
        p.name: n
        for p in PACKAGE.glob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_no_import_cycle_lazy_imports_included():
    graph = _modules()
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

    for module in graph:
        visit(module)


def test_only_resources_locates_the_repository():
    locating = [
        p.name
        for p in PACKAGE.glob("*.py")
        if "__file__" in p.read_text() or "importlib import resources" in p.read_text()
    ]
    assert locating == ["resources.py"]


def test_stages_never_import_the_top():
    top = {"__main__", "cli", "console", "scheduler", "pipeline"}  # console: the CLI's printing
    graph = _modules()
    offenders = {m: graph[m] & top for m in graph if m not in top and graph[m] & top}
    assert not offenders, offenders
