import pytest
import torch
from torch import nn

from tests.pipelines.conftest import tiny_pipeline
from tokenizer_zoo.data import EmbeddedPhotos
from tokenizer_zoo.losses import FlowMatchingLoss
from tokenizer_zoo.training.stage1b import EarlyStopping, SampleLoss, Stage1BModel, draw_chain, draw_chain_noise


class PixelDistance(nn.Module):
    """A weight-free stand-in for the perceptual network: per-image MSE in pixels."""

    def forward(self, prediction, target):
        return (prediction - target).square().flatten(1).mean(dim=1)


def _model(**kwargs):
    pipe = tiny_pipeline()
    sample_loss = SampleLoss(PixelDistance(), num_steps=kwargs.pop("num_steps", 3))
    return Stage1BModel(pipe.encoder, pipe.quantizer, pipe.decoder, FlowMatchingLoss(perceptual_weight=0), sample_loss,
                        **kwargs)


def _images(count=2):
    data = EmbeddedPhotos("eval", image_size=32)
    return torch.stack([data[i]["pixel_values"] for i in range(count)])


def test_a_step_changes_the_decoder_only():
    model = _model()
    model.train()
    assert not model.encoder.training and not model.quantizer.training and model.decoder.training
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in model.decoder.parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(trainable, lr=1e-3)
    output = model(_images(), generator=torch.Generator().manual_seed(0))
    output.loss.backward()
    assert all(p.grad is None for p in [*model.encoder.parameters(), *model.quantizer.parameters()])
    optimizer.step()
    after = model.state_dict()
    for name, value in before.items():
        if name.startswith(("encoder.", "quantizer.")):
            assert torch.equal(after[name], value), name
    changed = [name for name in before if name.startswith("decoder.") and not torch.equal(after[name], before[name])]
    assert len(changed) > 10


def test_total_is_flow_plus_weighted_sample_distance():
    model = _model(sample_weight=0.25)
    logs = model(_images(), generator=torch.Generator().manual_seed(1)).logs
    torch.testing.assert_close(logs["loss"], logs["flow"] + 0.25 * logs["sample"], atol=1e-6, rtol=0)
    assert logs["sample"] > 0


def test_the_one_step_perceptual_term_must_be_off():
    pipe = tiny_pipeline()
    loss = FlowMatchingLoss(perceptual_weight=0.1, perceptual=PixelDistance())
    with pytest.raises(ValueError, match="perceptual_weight=0"):
        Stage1BModel(pipe.encoder, pipe.quantizer, pipe.decoder, loss, SampleLoss(PixelDistance()))


def test_chain_noise_is_split_across_processes_exactly():
    images = torch.zeros(6, 3, 8, 8)
    whole = draw_chain_noise(images, 0, 1, num_steps=8, seed=3, micro_step=5)
    halves = [draw_chain_noise(images[:3], rank, 2, num_steps=8, seed=3, micro_step=5) for rank in (0, 1)]
    for part in range(2):
        torch.testing.assert_close(torch.cat([halves[0][part], halves[1][part]]), whole[part], rtol=0, atol=0)
    assert whole.times.shape == (6, 9)
    assert not torch.equal(draw_chain_noise(images, 0, 1, 8, seed=3, micro_step=6).noise, whole.noise)


def test_sample_loss_rejects_a_chain_of_the_wrong_length():
    model = _model(num_steps=3)
    chain = draw_chain(_images(), 5, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="5 steps"):
        model(_images(), chain=chain, generator=torch.Generator().manual_seed(0))


def test_early_stopping_keeps_the_best_weights_and_resumes():
    param = nn.Parameter(torch.zeros(2))
    stopper = EarlyStopping(patience=2, higher_is_better=True)
    for step, (value, weight) in enumerate([(10.0, 1.0), (12.0, 2.0), (11.0, 3.0)]):
        param.data.fill_(weight)
        stopper.update(value, [param], step)
    assert (stopper.best, stopper.best_step, stopper.should_stop) == (12.0, 1, False)
    restored = EarlyStopping(patience=2, higher_is_better=True)
    restored.load_state_dict(stopper.state_dict())
    assert not restored.update(float("nan"), [param], 3) and restored.should_stop
    restored.copy_best_to([param])
    assert torch.equal(param.data, torch.full((2,), 2.0))
    lower = EarlyStopping(patience=1, higher_is_better=False)
    assert lower.update(0.5, [param], 0) and not lower.update(0.6, [param], 1) and lower.should_stop
