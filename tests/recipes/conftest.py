"""Fixtures for the recipe smoke tests: recipes are scripts, not modules, so they are loaded by path."""

import importlib.util
import pathlib
import sys
from types import ModuleType

import pytest

RECIPES = pathlib.Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture(scope="session")
def load_recipe():
    """``load_recipe("qm9")`` imports ``recipes/qm9.py`` as the module ``recipe_qm9``."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return load
