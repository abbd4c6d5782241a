"""Where the job's own files are: sql/, templates/, models/, alembic/ and the bundled data.

The only module that knows the layout. A folder shipped inside the package (an installed
wheel) is used when present; otherwise the folder of the source checkout's root
(`pip install -e .`). The bundled cohorts are package data (`prcrs_batch/data/`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGE_DIR = Path(str(resources.files("prcrs_batch")))
SOURCE_ROOT = PACKAGE_DIR.parent  # the repository root in a source checkout


def _folder(name: str) -> Path:
    """The packaged folder (a wheel), else the checkout's (`pip install -e .`).

    In an installed wheel the parent folder is site-packages, where `alembic` or `models`
    may be another distribution: the checkout's folder counts only beside pyproject.toml.
    A folder found in neither place is reported at its packaged path.
    """
    packaged = PACKAGE_DIR / name
    checkout = SOURCE_ROOT / name
    if not packaged.is_dir() and (SOURCE_ROOT / "pyproject.toml").is_file() and checkout.is_dir():
        return checkout
    return packaged


def sql_dir() -> Path:
    """The warehouse queries, one per file."""
    return _folder("sql")


def template_dir() -> Path:
    """The Jinja templates of the report and the failure notice."""
    return _folder("templates")


def model_dir() -> Path:
    """The shipped models and manifest.json (the default of PRCRS_MODEL_DIR)."""
    return _folder("models")


def alembic_dir() -> Path:
    """The results schema's migrations."""
    return _folder("alembic")


def bundled_data(name: str) -> Path:
    """A file shipped as package data: `analytes.csv`, `cart_dev.csv`, `covid19.csv`.

    >>> bundled_data("analytes.csv").name
    'analytes.csv'
    """
    return PACKAGE_DIR / "data" / name
