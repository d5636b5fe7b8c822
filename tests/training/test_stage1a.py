import torch
from diffusers.training_utils import EMAModel

from tokenizer_zoo.data import EmbeddedPhotos
from tokenizer_zoo.layers.weight_norm import ForcedWeightNorm
from tokenizer_zoo.losses import FlowMatchingLoss
from tokenizer_zoo.presets import build_tokenizer
from tokenizer_zoo.training.stage1a import Stage1AModel, draw_flow_noise


def _tiny_model(**loss_kwargs):
    parts = build_tokenizer("flowmo_tiny")
    return Stage1AModel(parts.encoder, parts.quantizer, parts.decoder, FlowMatchingLoss(perceptual_weight=0, **loss_kwargs))


def test_ema_follows_the_warmed_up_update_formula():
    param = torch.nn.Parameter(torch.zeros(3))
    ema = EMAModel([param], decay=0.9)
    shadow = torch.zeros(3)
    for step in range(1, 8):
        with torch.no_grad():
            param.add_(torch.tensor([1.0, -2.0, 0.5]) * step)
        ema.step([param])
        # diffusers' schedule: decay_s = min(decay, (1 + s') / (10 + s')) with s' = step - 1, and 0 at the first step
        s = step - 1
        decay = 0.0 if s <= 0 else min(0.9, (1 + s) / (10 + s))
        shadow = decay * shadow + (1 - decay) * param.detach()
        torch.testing.assert_close(ema.shadow_params[0], shadow, atol=1e-6, rtol=0)


def test_global_noise_is_split_across_processes_exactly():
    loss = FlowMatchingLoss(perceptual_weight=0)
    images = torch.zeros(6, 3, 8, 8)
    whole = draw_flow_noise(images, 0, 1, loss, seed=3, micro_step=5)
    halves = [draw_flow_noise(images[:3], rank, 2, loss, seed=3, micro_step=5) for rank in (0, 1)]
    for part in range(3):
        torch.testing.assert_close(torch.cat([halves[0][part], halves[1][part]]), whole[part], rtol=0, atol=0)
    other_step = draw_flow_noise(images, 0, 1, loss, seed=3, micro_step=6)
    assert not torch.equal(other_step.noise, whole.noise)


def test_total_loss_is_flow_plus_quantizer_aux():
    model = _tiny_model()
    images = torch.stack([EmbeddedPhotos("eval", image_size=32)[i]["pixel_values"] for i in range(2)])
    out = model(images, generator=torch.Generator().manual_seed(0))
    logs = out.logs
    torch.testing.assert_close(out.loss.detach(), logs["flow"] + logs["quantizer"], atol=1e-6, rtol=0)
    assert logs["perceptual"] == 0


def test_tiny_model_overfits_four_images():
    """Flow loss on a fixed noise draw falls by at least 3x in 120 Adam steps on 4 images."""
    torch.manual_seed(0)
    model = _tiny_model(cfg_dropout=0.0)
    images = torch.stack([EmbeddedPhotos("eval", image_size=32)[i]["pixel_values"] for i in range(4)])
    probe = model.loss.draw(images, torch.Generator().manual_seed(123))
    normalizer = ForcedWeightNorm(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.9, 0.95))

    def probe_loss():
        with torch.no_grad():
            return model(images, noise=probe).logs["flow"].item()

    before = probe_loss()
    for step in range(120):
        loss = model(images, generator=torch.Generator().manual_seed(step)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        normalizer()
    after = probe_loss()
    print(f"overfit: probe flow loss {before:.4f} -> {after:.4f} ({before / after:.1f}x)")
    assert after < before / 3, (before, after)
