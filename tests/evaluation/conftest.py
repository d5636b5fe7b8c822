"""Kinds of model for compare and demo: two zoo pipelines saved once per session and two published-release
fixtures converted on the fly. All are tiny and random (untrained pipelines; fixtures of random weights):
the tests check wiring and numbers against independent computations, not image quality."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState

from tests.pipelines.conftest import tiny_pipeline
from tokenizer_zoo.pipelines import TokenizerPipeline
from tokenizer_zoo.presets import build_tokenizer

FIXTURES = Path(__file__).parents[1] / "fixtures"
FLOWMO_RELEASE = (f"{FIXTURES / 'flowmo_reference_tiny' / 'flowmo_ref_tiny.pth'},"
                  f"config={FIXTURES / 'flowmo_reference_tiny' / 'config.yaml'}")
"""The FlowMo reference release's checkpoint with its yaml, as a MODEL argument (32 px, 16 x 18 bits)."""
LLAMAGEN_RELEASE = FIXTURES / "llamagen_vq_reference_tiny" / "vq_ds8_c2i_tiny.pt"
"""LlamaGen's VQ release layout at 256 px (1024 tokens x 9 bits); format detected from its keys."""


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """A FlowMo pipeline and a one-pass CNN + FSQ pipeline, saved."""
    root = tmp_path_factory.mktemp("models")
    tiny_pipeline().save_pretrained(root / "flowmo")
    torch.manual_seed(0)
    parts = build_tokenizer("cnn_fsq_tiny")
    TokenizerPipeline(parts.encoder, parts.quantizer, parts.decoder).save_pretrained(root / "cnn_fsq")
    return {"flowmo": root / "flowmo", "cnn_fsq": root / "cnn_fsq"}


def fresh_accelerate_state() -> None:
    """Each in-process command builds its Accelerator from scratch, as a new process would."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
