"""End-to-end tests of recipes/flowmo_1b.py on a tiny stage-1A pipeline built in the test."""


import pytest
import torch
from torch import nn

from tests.pipelines.conftest import tiny_pipeline
from tests.test_recipe_flowmo_1a import _weights
from tests.recipes import assert_trained, run_recipe
from tokenizer_zoo.data import EmbeddedPhotos
from tokenizer_zoo.losses import PERCEPTUAL, FlowMatchingLoss
from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.training.stage1a import draw_flow_noise
from tokenizer_zoo.training.stage1b import SampleLoss, Stage1BModel, draw_chain_noise



class PixelDistance(nn.Module):
    """A user-registered perceptual network (weight-free, so the test needs no downloads)."""

    def forward(self, prediction, target):
        return (prediction - target).square().flatten(1).mean(dim=1)


class ConstantDistance(nn.Module):
    """A held-out metric that never improves: the stopping rule must end the run."""

    def forward(self, prediction, target):
        return torch.ones(prediction.shape[0])


for _name, _net in (("test_pixel_mse", PixelDistance), ("test_constant", ConstantDistance)):
    if _name not in PERCEPTUAL.names():
        PERCEPTUAL.register(_name, _net)

FAST = ["sample_net=test_pixel_mse", "batch_size=2", "eval_images=2", "eval_steps=2", "log_every=1", "ema_decay=0.9",
        "lr=1e-3", "sample_steps=3", "patience=100"]


@pytest.fixture(scope="module")
def stage1a(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stage1a") / "pipeline"
    tiny_pipeline().save_pretrained(folder)
    return folder


@torch.no_grad()
def _heldout_1b_loss(folder, count: int = 8) -> float:
    """The stage-1B objective (flow matching + 0.01 x the pixel distance of a 3-step chain) on held-out
    embedded photos with fixed noise, chain times and no guidance dropout."""
    pipe = FlowMoPipeline.from_pretrained(folder)
    data = EmbeddedPhotos("eval", image_size=32)
    images = torch.stack([data[i]["pixel_values"] for i in range(count)])
    loss = FlowMatchingLoss(perceptual_weight=0, cfg_dropout=0.0)
    model = Stage1BModel(pipe.encoder, pipe.quantizer, pipe.decoder, loss,
                         SampleLoss(PixelDistance(), num_steps=3, checkpointing=False), sample_weight=0.01).eval()
    noise, chain = (draw_flow_noise(images, 0, 1, loss, seed=5, micro_step=0),
                    draw_chain_noise(images, 0, 1, num_steps=3, seed=5, micro_step=0))
    return model(images, noise, chain).loss.item()


def _run(argv):
    return run_recipe("flowmo_1b", argv)


def test_resume_equals_uninterrupted_training_and_writes_a_loadable_pipeline(tmp_path, stage1a):
    common = FAST + [f"init_from={stage1a}", "checkpoint_every=2", "eval_every=2"]
    _run(common + [f"output_dir={tmp_path / 'straight'}", "max_steps=4"])
    _run(common + [f"output_dir={tmp_path / 'resumed'}", "max_steps=2"])
    _run(common + [f"output_dir={tmp_path / 'resumed'}", "max_steps=4"])
    straight, resumed, initial = (_weights(p) for p in (tmp_path / "straight" / "pipeline",
                                                        tmp_path / "resumed" / "pipeline", stage1a))
    assert straight.keys() == resumed.keys() == initial.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], atol=1e-6, rtol=0, msg=name)
        if not name.startswith("decoder."):
            assert torch.equal(straight[name], initial[name]), name  # frozen: bit-identical
    decoder = [n for n in straight if n.startswith("decoder.")]
    assert_trained({n: initial[n] for n in decoder}, {n: straight[n] for n in decoder},
                   _heldout_1b_loss(stage1a), _heldout_1b_loss(tmp_path / "straight" / "pipeline"))
    pipe = FlowMoPipeline.from_pretrained(tmp_path / "resumed" / "pipeline")
    assert pipe.info["recipe"] == "flowmo_1b" and pipe.info["init_from"] == str(stage1a)
    assert pipe.info["best_step"] in (0, 2, 4)
    grids = sorted(p.name for p in (tmp_path / "resumed" / "grids").glob("*.png"))
    assert grids == ["step_00000000.png", "step_00000002.png", "step_00000004.png"]
    assert list((tmp_path / "resumed" / "logs").rglob("events.out.tfevents.*"))


def test_stops_after_patience_and_keeps_the_best_weights(tmp_path, stage1a):
    out = tmp_path / "stop"
    _run(FAST + [f"init_from={stage1a}", f"output_dir={out}", "max_steps=50", "eval_every=1", "patience=2",
                 "stop_metric=test_constant", "checkpoint_every=100"])
    pipe = FlowMoPipeline.from_pretrained(out / "pipeline")
    assert pipe.info["stopped_early"] and pipe.info["steps"] == 2 and pipe.info["best_step"] == 0
    final, initial = _weights(out / "pipeline"), _weights(stage1a)
    for name in initial:  # the best evaluation was the stage-1A model itself
        assert torch.equal(final[name], initial[name]), name
