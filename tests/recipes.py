"""Run a recipe script's ``main`` in this process, with a fresh Accelerate state each time."""

import importlib.util
import sys
from pathlib import Path

import torch
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


def initial_tokenizer(preset: str, seed: int = 0):
    """The parts a recipe builds for ``preset`` before training (Accelerate seeds, then the recipe builds)."""
    from accelerate.utils import set_seed

    from tokenizer_zoo.presets import build_tokenizer

    set_seed(seed)
    return build_tokenizer(preset)


@torch.no_grad()
def heldout_loss(encoder, quantizer, decoder, count: int = 8, size: int = 32) -> float:
    """The training loss on ``count`` held-out embedded photos with fixed noise and times: flow matching
    without guidance dropout for diffusion decoders, MSE for one-pass decoders."""
    from tokenizer_zoo.data import EmbeddedPhotos
    from tokenizer_zoo.losses import FlowMatchingLoss
    from tokenizer_zoo.training.regression import RegressionModel
    from tokenizer_zoo.training.stage1a import Stage1AModel, draw_flow_noise

    data = EmbeddedPhotos("eval", image_size=size)
    images = torch.stack([data[i]["pixel_values"] for i in range(count)])
    if not getattr(decoder, "is_generative", False):
        return RegressionModel(encoder, quantizer, decoder, None, 0.0).eval()(images).logs["mse"].item()
    loss = FlowMatchingLoss(perceptual_weight=0, cfg_dropout=0.0)
    noise = draw_flow_noise(images, 0, 1, loss, seed=1234, micro_step=0)
    return Stage1AModel(encoder, quantizer, decoder, loss).eval()(images, noise).logs["flow"].item()


def assert_trained(initial: dict, trained: dict, initial_loss: float, trained_loss: float) -> None:
    """Every weight tensor moved from its initial value, and the held-out loss fell."""
    assert initial.keys() == trained.keys() and initial
    unchanged = [name for name, value in initial.items() if torch.equal(trained[name], value)]
    assert unchanged == [], f"weights that did not train: {unchanged}"
    assert trained_loss < initial_loss, f"held-out loss did not fall: {initial_loss:.4f} -> {trained_loss:.4f}"
