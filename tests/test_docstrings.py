"""The examples in the package's docstrings run and give what they show; every module says
what it is for."""

import ast
import doctest
import importlib
import pkgutil

import pytest

import prcrs_batch

MODULES = [
    m.name
    for m in pkgutil.walk_packages(prcrs_batch.__path__, prefix="prcrs_batch.")
    if not m.name.endswith("__main__")
]


def test_the_walk_reaches_the_sub_packages():
    assert "prcrs_batch.task.target" in MODULES and len(MODULES) > 60


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


@pytest.mark.parametrize("name", MODULES)
def test_every_module_has_a_docstring(name):
    module = importlib.import_module(name)
    assert module.__file__ and ast.get_docstring(ast.parse(open(module.__file__).read()))
