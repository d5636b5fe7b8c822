"""ShiftedEulerScheduler and ShiftedHeunScheduler against closed forms, and their diffusers contract."""

import math

import pytest
import torch

from tokenizer_zoo.registry import SAMPLERS
from tokenizer_zoo.samplers import ShiftedEulerScheduler, ShiftedHeunScheduler, shifted_schedule

SCHEDULERS = [ShiftedEulerScheduler, ShiftedHeunScheduler]
LAMBDA, C = 1.5, 0.7  # dx/dt = LAMBDA x + C t


def linear_solution(x1: torch.Tensor) -> torch.Tensor:
    """x(0) for dx/dt = LAMBDA x + C t with x(1) = x1: x(t) = A e^{LAMBDA (t-1)} - C t / LAMBDA - C / LAMBDA^2."""
    amplitude = x1 + C / LAMBDA + C / LAMBDA**2
    return amplitude * math.exp(-LAMBDA) - C / LAMBDA**2


def sample_loop(scheduler, model, x):
    """The pipeline's loop."""
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t), t, x).prev_sample
    return x


def linear_field(x, t):
    return LAMBDA * x + C * t.to(x.dtype)


@pytest.mark.parametrize("n, rho", [(1, 4.0), (4, 1.0), (5, 4.0), (25, 2.5)])
def test_shifted_schedule_values(n, rho):
    times = shifted_schedule(n, rho)
    expected = [((n - i + 1) / n) ** rho for i in range(1, n + 1)] + [0.0]
    assert times.dtype == torch.float64 and times.tolist() == pytest.approx(expected, abs=1e-15)
    assert times[0] == 1 and times[-1] == 0 and (times.diff() < 0).all()
    torch.testing.assert_close(shifted_schedule(n, 1.0), torch.linspace(1, 0, n + 1, dtype=torch.float64))


def test_shifted_schedule_errors():
    with pytest.raises(ValueError, match="num_inference_steps must be >= 1"):
        shifted_schedule(0)
    with pytest.raises(ValueError, match="rho must be > 0"):
        shifted_schedule(3, 0.0)


def test_euler_timesteps_and_registry():
    scheduler = SAMPLERS.build("shifted_euler", num_inference_steps=6, rho=3.0)
    assert isinstance(scheduler, ShiftedEulerScheduler) and len(scheduler) == 6
    torch.testing.assert_close(scheduler.timesteps, shifted_schedule(6, 3.0)[:-1].float())
    assert SAMPLERS.get("shifted_heun") is ShiftedHeunScheduler


@pytest.mark.parametrize("n", [1, 2, 5])
def test_heun_timesteps_are_repeated(n):
    scheduler = ShiftedHeunScheduler(num_inference_steps=n, rho=2.0)
    times = shifted_schedule(n, 2.0).float()
    expected = [times[0].item()] + [times[i].item() for i in range(1, n) for _ in range(2)]
    assert scheduler.order == 2 and scheduler.timesteps.tolist() == expected
    assert len(scheduler.timesteps) == 2 * n - 1 and len(scheduler) == n


@pytest.mark.parametrize("cls", SCHEDULERS)
@pytest.mark.parametrize("rho", [1.0, 4.0])
def test_constant_velocity_lands_exactly(cls, rho):
    data = torch.rand(3, 2, dtype=torch.float64) * 1.6 - 0.8
    c = torch.randn(3, 2, dtype=torch.float64)
    # x_t = data + t c has velocity c; x_1 = data + c
    out = sample_loop(cls(num_inference_steps=7, rho=rho, clip_sample=False), lambda x, t: c, data + c)
    torch.testing.assert_close(out, data, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cls", SCHEDULERS)
def test_output_is_clipped_only_at_the_end(cls):
    scheduler = cls(num_inference_steps=3, rho=1.0)
    x, seen = torch.zeros(2, 4), []
    for t in scheduler.timesteps:
        x = scheduler.step(torch.full_like(x, -3.0), t, x).prev_sample  # heads to +3
        seen.append(x.max().item())
    assert max(seen[:-1]) > 1.0 and x.max() == 1.0 and seen[-1] == 1.0
    unclipped = sample_loop(cls(num_inference_steps=3, rho=1.0, clip_sample=False),
                            lambda x, t: torch.full_like(x, -3.0), torch.zeros(2, 4))
    torch.testing.assert_close(unclipped, torch.full((2, 4), 3.0))


@pytest.mark.parametrize("cls", SCHEDULERS)
def test_set_timesteps_resets(cls):
    scheduler = cls(num_inference_steps=4, rho=2.0, clip_sample=False)
    x1 = torch.randn(2, 3, dtype=torch.float64)
    fresh = sample_loop(cls(num_inference_steps=4, rho=2.0, clip_sample=False), linear_field, x1)
    scheduler.step(linear_field(x1, scheduler.timesteps[0]), scheduler.timesteps[0], x1)  # half a run
    scheduler.set_timesteps(4)
    torch.testing.assert_close(sample_loop(scheduler, linear_field, x1), fresh)
    with pytest.raises(RuntimeError, match="call set_timesteps"):
        scheduler.step(x1, 0.0, x1)
    scheduler.set_timesteps(2)
    assert scheduler.timesteps[0] == 1.0 and len(scheduler) == 2
    uniform = cls.from_config(scheduler.config, rho=1.0)  # another rho: a scheduler with that config
    uniform.set_timesteps(2)
    assert uniform.timesteps.tolist()[:2] == [1.0, 0.5] and scheduler.config.rho == 2.0


@pytest.mark.parametrize("cls", SCHEDULERS)
def test_config_round_trip(cls, tmp_path):
    scheduler = cls(num_inference_steps=9, rho=3.0, clip_sample=False)
    scheduler.save_pretrained(tmp_path)
    loaded = cls.from_pretrained(tmp_path)
    assert type(loaded) is cls and loaded.config.num_inference_steps == 9
    assert loaded.config.rho == 3.0 and loaded.config.clip_sample is False
    torch.testing.assert_close(loaded.timesteps, scheduler.timesteps)


def test_heun_is_second_order_and_beats_euler():
    x1 = torch.randn(4, 3, dtype=torch.float64)
    exact = linear_solution(x1)

    def error(cls, n):
        out = sample_loop(cls(num_inference_steps=n, rho=1.0, clip_sample=False), linear_field, x1)
        return (out - exact).abs().max().item()

    heun = [error(ShiftedHeunScheduler, n) for n in (8, 16, 32)]
    euler = [error(ShiftedEulerScheduler, n) for n in (8, 16, 32)]
    assert heun[1] < euler[1] / 10
    for coarse, fine in zip(heun[:-1], heun[1:]):
        assert 1.7 < math.log2(coarse / fine) < 2.3
    for coarse, fine in zip(euler[:-1], euler[1:]):
        assert 0.8 < math.log2(coarse / fine) < 1.2


def test_heun_on_the_default_shifted_schedule_beats_euler():
    x1 = torch.randn(4, 3, dtype=torch.float64)
    exact = linear_solution(x1)
    heun = sample_loop(ShiftedHeunScheduler(num_inference_steps=25, clip_sample=False), linear_field, x1)
    euler = sample_loop(ShiftedEulerScheduler(num_inference_steps=25, clip_sample=False), linear_field, x1)
    assert (heun - exact).abs().max() < (euler - exact).abs().max() / 10


def test_matches_diffusers_flow_match_euler():
    diffusers = pytest.importorskip("diffusers")
    n, rho = 6, 4.0
    ours = ShiftedEulerScheduler(num_inference_steps=n, rho=rho, clip_sample=False)
    reference = diffusers.FlowMatchEulerDiscreteScheduler(shift=1.0)
    reference.set_timesteps(sigmas=shifted_schedule(n, rho)[:-1].tolist())
    torch.testing.assert_close(reference.sigmas.float(), ours.sigmas)
    x1 = torch.randn(2, 3)
    expected = sample_loop(ours, lambda x, t: torch.sin(3 * x) + t, x1)
    x = x1
    for timestep, sigma in zip(reference.timesteps, reference.sigmas):
        x = reference.step(torch.sin(3 * x) + sigma, timestep, x).prev_sample
    torch.testing.assert_close(x, expected)


def test_heun_in_a_flowmo_pipeline():
    from tokenizer_zoo.pipelines.flowmo import FlowMoPipeline
    from tokenizer_zoo.presets import build_tokenizer

    tokenizer = build_tokenizer("flowmo_tiny")
    pipe = FlowMoPipeline(tokenizer.encoder, tokenizer.quantizer, tokenizer.decoder,
                          ShiftedHeunScheduler(num_inference_steps=3))
    pipe.set_progress_bar_config(disable=True)
    calls = []
    tokenizer.decoder.register_forward_hook(lambda module, args, output: calls.append(args[2][0].item()))
    size = tokenizer.decoder.config.image_size
    images = pipe(torch.rand(1, 3, size, size), num_inference_steps=3, guidance_scale=1.0, output_type="pt").images
    assert images.shape == (1, 3, size, size) and images.min() >= 0 and images.max() <= 1
    assert calls == pytest.approx(pipe.scheduler.timesteps.tolist()) and len(calls) == 5
