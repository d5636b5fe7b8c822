import pytest
import torch

from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.presets import build_tokenizer
from tokenizer_zoo.samplers import ShiftedEulerScheduler


def tiny_pipeline(**overrides) -> FlowMoPipeline:
    torch.manual_seed(0)
    parts = build_tokenizer("flowmo_tiny", **overrides)
    # a freshly initialised decoder has zero gates and ignores its input: perturb every weight so
    # that codes, noise and guidance all change the output
    with torch.no_grad():
        for p in parts.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    pipe = FlowMoPipeline(parts.encoder, parts.quantizer, parts.decoder, ShiftedEulerScheduler())
    pipe.info = {"preset": "flowmo_tiny", "dataset": "embedded", "steps": 0}
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture()
def images():
    from tokenizer_zoo.data import EmbeddedPhotos

    data = EmbeddedPhotos("eval", image_size=32)
    return torch.stack([data[i]["pixel_values"] for i in range(3)])
