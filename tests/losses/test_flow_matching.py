import numpy as np
import pytest
import torch
from torch import nn

import tokenizer_zoo.losses.perceptual as perceptual_module
from tokenizer_zoo.losses import FlowMatchingLoss, interpolate, one_step_prediction, sample_cfg_dropout, velocity_target


class TinyRandomPerceptual(nn.Module):
    """A tiny randomly initialised stand-in for LPIPS (loss mechanics only; not a real perceptual metric)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, a, b):
        return (self.conv(a) - self.conv(b)).abs().mean(dim=(1, 2, 3), keepdim=True)


class FakeDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.7))
        self.calls = []

    def forward(self, codes, x_t, t, drop_code):
        self.calls.append(drop_code)
        code_term = codes.mean(dim=(1, 2)) * (~drop_code).float()
        return self.scale * x_t + t[:, None, None, None] * 0.3 + code_term[:, None, None, None]


def _batch(b=6, size=8):
    generator = torch.Generator().manual_seed(11)
    return torch.rand(b, 3, size, size, generator=generator) * 2 - 1, torch.randn(b, 5, 4, generator=generator)


def test_one_step_prediction_recovers_x_for_the_exact_velocity():
    x, _ = _batch()
    noise = torch.randn_like(x)
    t = torch.rand(x.shape[0])
    x_t = interpolate(x, noise, t)
    torch.testing.assert_close(one_step_prediction(x_t, t, velocity_target(x, noise)), x, atol=1e-6, rtol=0)


def test_oracle_decoder_gives_zero_flow_loss_and_exact_prediction():
    x, codes = _batch()
    loss = FlowMatchingLoss(perceptual_weight=0.0, timestep_sampler="uniform")

    def oracle(codes, x_t, t, drop_code):  # knows x, hence v = (x_t - x) / t = z - x
        return (x_t - x) / t[:, None, None, None].clamp_min(1e-3)

    out = loss(oracle, x, codes, generator=torch.Generator().manual_seed(0))
    assert out.t.min() > 1e-3
    assert out.flow.item() < 1e-8
    torch.testing.assert_close(out.x_hat, x, atol=1e-5, rtol=0)


def test_loss_matches_a_hand_computation():
    x, codes = _batch()
    perceptual = TinyRandomPerceptual()
    loss = FlowMatchingLoss(perceptual_weight=0.1, cfg_dropout=0.5, perceptual=perceptual)
    decoder = FakeDecoder()
    out = loss(decoder, x, codes, generator=torch.Generator().manual_seed(3))
    xs, zs, ts = x.double().numpy(), out.noise.double().numpy(), out.t.double().numpy()
    keep = (~out.drop_code).double().numpy()
    flow_terms, x_hats = [], []
    for i in range(x.shape[0]):
        x_t = (1 - ts[i]) * xs[i] + ts[i] * zs[i]
        v = 0.7 * x_t + 0.3 * ts[i] + codes[i].double().mean().item() * keep[i]
        flow_terms.append(((zs[i] - xs[i] - v) ** 2).mean())
        x_hats.append(x_t - ts[i] * v)
    expected_flow = float(np.mean(flow_terms))
    expected_perceptual = perceptual(torch.tensor(np.stack(x_hats)).float(), x).mean().item()
    assert out.flow.item() == pytest.approx(expected_flow, rel=1e-5)
    assert out.perceptual.item() == pytest.approx(expected_perceptual, rel=1e-4)
    assert out.total.item() == pytest.approx(expected_flow + 0.1 * expected_perceptual, rel=1e-5)
    out.total.backward()
    assert decoder.scale.grad is not None and decoder.scale.grad.abs() > 0
    drop = decoder.calls[0]
    assert drop.dtype == torch.bool and drop.shape == (x.shape[0],)


def test_cfg_dropout_rate():
    n = 100_000
    mask = sample_cfg_dropout(n, 0.1, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.shape == (n,)
    assert abs(mask.float().mean().item() - 0.1) < 5 * np.sqrt(0.09 / n)
    assert not sample_cfg_dropout(100, 0.0).any() and sample_cfg_dropout(100, 1.0).all()
    with pytest.raises(ValueError):
        sample_cfg_dropout(4, 1.2)


def test_loss_uses_the_configured_dropout_rate():
    x, codes = _batch(b=4000, size=1)
    decoder = FakeDecoder()
    FlowMatchingLoss(perceptual_weight=0.0, cfg_dropout=0.25)(decoder, x, codes)
    assert abs(decoder.calls[0].float().mean().item() - 0.25) < 5 * np.sqrt(0.25 * 0.75 / 4000)


def test_zero_perceptual_weight_builds_no_network(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("an LPIPS network was built although perceptual_weight=0")

    monkeypatch.setattr(perceptual_module, "build_lpips", forbidden)
    monkeypatch.setattr(perceptual_module.PERCEPTUAL, "build", forbidden)
    loss = FlowMatchingLoss(perceptual_weight=0.0)
    assert loss.perceptual is None and not list(loss.parameters())
    x, codes = _batch()
    out = loss(FakeDecoder(), x, codes)
    assert out.perceptual.item() == 0.0 and out.total.item() == out.flow.item()


def test_default_builds_lpips_vgg_through_the_registry(monkeypatch):
    built = []
    monkeypatch.setattr(perceptual_module.PERCEPTUAL, "build", lambda name, **kw: built.append(name) or TinyRandomPerceptual())
    assert isinstance(FlowMatchingLoss().perceptual, TinyRandomPerceptual) and built == ["lpips_vgg"]


def test_wrong_velocity_shape_is_reported():
    x, codes = _batch()
    with pytest.raises(ValueError, match="velocity of shape"):
        FlowMatchingLoss(perceptual_weight=0.0)(lambda c, x_t, t, drop_code: x_t[:, :1], x, codes)


def test_t1_rows_train_the_one_pass_reconstruction():
    """At t = 1 the flow residual z - x - v is x_hat - x: the loss is the MSE of the one-step prediction."""
    x, codes = _batch(b=2000, size=2)
    loss = FlowMatchingLoss(perceptual_weight=0.0, t1_prob=0.3)
    out = loss(FakeDecoder(), x, codes, generator=torch.Generator().manual_seed(1))
    at_one = out.t == 1.0
    assert abs(at_one.float().mean().item() - 0.3) < 5 * np.sqrt(0.21 / 2000)
    torch.testing.assert_close(out.x_t[at_one], out.noise[at_one])
    everywhere = FlowMatchingLoss(perceptual_weight=0.0, t1_prob=1.0)(FakeDecoder(), x, codes,
                                                                     generator=torch.Generator().manual_seed(2))
    mse = (everywhere.x_hat.double() - x.double()).square().mean().item()
    assert everywhere.flow.item() == pytest.approx(mse, rel=1e-5)


def test_switches_off_keep_the_papers_random_stream():
    x, codes = _batch()
    paper = FlowMatchingLoss(perceptual_weight=0.0).draw(x, torch.Generator().manual_seed(4))
    switched_off = FlowMatchingLoss(perceptual_weight=0.0, timestep_shift=1.0, t1_prob=0.0)
    for a, b in zip(paper, switched_off.draw(x, torch.Generator().manual_seed(4))):
        assert torch.equal(a, b)
    shifted = FlowMatchingLoss(perceptual_weight=0.0, timestep_shift=3.0).draw(x, torch.Generator().manual_seed(4))
    torch.testing.assert_close(shifted.t, 3 * paper.t / (1 + 2 * paper.t))
    assert torch.equal(shifted.noise, paper.noise)
    with pytest.raises(ValueError, match="t1_prob"):
        FlowMatchingLoss(perceptual_weight=0.0, t1_prob=2.0)


def test_x0_weight_adds_the_one_pass_loss_of_every_image_at_t1():
    x, codes = _batch()
    perceptual = TinyRandomPerceptual()
    plain = FlowMatchingLoss(perceptual_weight=0.1, perceptual=perceptual)
    loss = FlowMatchingLoss(perceptual_weight=0.1, perceptual=perceptual, x0_weight=0.5)
    out = loss(FakeDecoder(), x, codes, generator=torch.Generator().manual_seed(3))
    reference = plain(FakeDecoder(), x, codes, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out.flow, reference.flow)  # the flow part and its draws are unchanged
    # by hand: x_hat_1 = z - v(code, z, 1) with the code kept for every image
    v_one = 0.7 * out.noise + 0.3 + codes.mean(dim=(1, 2))[:, None, None, None]
    x_hat_one = out.noise - v_one
    expected_x0 = (x_hat_one - x).square().mean() + 0.1 * perceptual(x_hat_one, x).mean()
    assert out.x0.item() == pytest.approx(expected_x0.item(), rel=1e-5)
    assert out.total.item() == pytest.approx(reference.total.item() + 0.5 * expected_x0.item(), rel=1e-5)
    assert reference.x0.item() == 0.0
    with pytest.raises(ValueError, match="x0_weight"):
        FlowMatchingLoss(perceptual_weight=0.0, x0_weight=-1.0)
