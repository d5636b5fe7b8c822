"""Three kinds of model for compare and demo, saved once per session. All are tiny and randomly initialised
(untrained): the tests check wiring and numbers against independent computations, not image quality."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState

from tests.pipelines.conftest import tiny_pipeline
from tokenizer_zoo.cli import main
from tokenizer_zoo.pipelines import TokenizerPipeline
from tokenizer_zoo.presets import build_tokenizer

RELEASE = Path(__file__).parents[1] / "fixtures" / "flowmo_reference_tiny"


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """A FlowMo pipeline, a one-pass CNN + FSQ pipeline and the FlowMo release fixture converted by the CLI."""
    root = tmp_path_factory.mktemp("models")
    tiny_pipeline().save_pretrained(root / "flowmo")
    torch.manual_seed(0)
    parts = build_tokenizer("cnn_fsq_tiny")
    TokenizerPipeline(parts.encoder, parts.quantizer, parts.decoder).save_pretrained(root / "cnn_fsq")
    assert main(["convert", RELEASE / "flowmo_ref_tiny.pth", "--config", RELEASE / "config.yaml",
                 "-o", root / "release", "--quiet"]) == 0
    return {"flowmo": root / "flowmo", "cnn_fsq": root / "cnn_fsq", "release": root / "release"}


def fresh_accelerate_state() -> None:
    """Each in-process command builds its Accelerator from scratch, as a new process would."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
