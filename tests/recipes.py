"""Run a recipe script's ``main`` in this process, with a fresh Accelerate state each time."""

import importlib.util
import sys
from pathlib import Path

from accelerate.state import AcceleratorState, GradientState

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def load_recipe(name: str):
    """The module of ``recipes/NAME.py`` (imported under ``NAME_recipe``)."""
    spec = importlib.util.spec_from_file_location(f"{name}_recipe", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_recipe(name: str, argv: list[str]):
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return load_recipe(name).main(argv)
