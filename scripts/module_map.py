"""The README's module map, made from the package's own docstrings: each sub-package's
first line, then each of its modules' first sentence, in the order of the layers contract
(pyproject.toml, bottom layer first: the order data flows in).

Usage: python scripts/module_map.py [--write]   (prints it; --write puts it in README.md)
tests/test_docs.py checks that README.md holds exactly this.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "prcrs_batch"
START, END = "<!-- modules:start -->\n", "<!-- modules:end -->"


def _first_sentence(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text("utf-8"))) or ""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    return re.split(r"(?<=[.?!])\s", paragraph)[0].replace("|", "\\|")


def _layer_order() -> list[str]:
    """The root package's layers, bottom first, siblings in the order written."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    contract = next(
        c for c in config["tool"]["importlinter"]["contracts"] if c["containers"] == ["prcrs_batch"]
    )
    return [name.strip() for layer in reversed(contract["layers"]) for name in layer.split("|")]


def module_map() -> str:
    """The Markdown table, one row per sub-package and per module."""
    rows = ["| module | what it owns |", "|---|---|"]
    for name in _layer_order():
        package = PACKAGE / name
        if not package.is_dir():
            rows.append(f"| `{name}.py` | {_first_sentence(PACKAGE / f'{name}.py')} |")
            continue
        rows.append(f"| **`{name}/`** | **{_first_sentence(package / '__init__.py')}** |")
        for module in sorted(package.glob("*.py")):
            if module.name != "__init__.py":
                rows.append(f"| `{name}/{module.name}` | {_first_sentence(module)} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the map in README.md")
    args = parser.parse_args()
    table = module_map()
    if not args.write:
        print(table, end="")
        return
    readme = ROOT / "README.md"
    text = readme.read_text("utf-8")
    before, rest = text.split(START)
    after = rest.split(END)[1]
    readme.write_text(before + START + table + END + after, "utf-8")


if __name__ == "__main__":
    main()
