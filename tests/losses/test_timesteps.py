import numpy as np
import pytest
import torch
from scipy.special import logit
from scipy.stats import norm

from tokenizer_zoo.losses import TIMESTEP_SAMPLERS, build_timestep_sampler

N = 200_000
KS_BOUND = 1.95 / np.sqrt(N)  # Kolmogorov 99.9 % quantile


def _ks_distance(samples, cdf):
    samples = np.sort(samples.astype(np.float64))
    theoretical = cdf(samples)
    upper = np.arange(1, len(samples) + 1) / len(samples)
    lower = np.arange(0, len(samples)) / len(samples)
    return max(np.max(upper - theoretical), np.max(theoretical - lower))


def mixture_cdf(t):
    return 0.9 * norm.cdf(logit(t)) + 0.1 * t


def logit_normal_cdf(t):
    return norm.cdf(logit(t))


def _sample(name, seed=0, n=N):
    return build_timestep_sampler(name).draw(n, generator=torch.Generator().manual_seed(seed))


def test_registry_names():
    assert {"thick_tailed_logit_normal", "logit_normal", "uniform"} <= set(TIMESTEP_SAMPLERS.names())


def test_thick_tailed_matches_the_mixture_cdf_and_not_the_plain_one():
    t = _sample("thick_tailed_logit_normal").t.numpy()
    assert 0.0 <= t.min() and t.max() <= 1.0
    assert _ks_distance(t, mixture_cdf) < KS_BOUND
    assert _ks_distance(t, logit_normal_cdf) > 2 * KS_BOUND


def test_plain_logit_normal_matches_its_cdf_and_not_the_mixture():
    t = _sample("logit_normal").t.numpy()
    assert _ks_distance(t, logit_normal_cdf) < KS_BOUND
    assert _ks_distance(t, mixture_cdf) > 2 * KS_BOUND


def test_uniform_matches_identity_cdf():
    assert _ks_distance(_sample("uniform").t.numpy(), lambda t: t) < KS_BOUND


def test_ten_percent_come_from_the_uniform_part():
    draw = _sample("thick_tailed_logit_normal")
    fraction = draw.from_uniform.float().mean().item()
    assert abs(fraction - 0.1) < 5 * np.sqrt(0.09 / N)
    uniform_part = draw.t[draw.from_uniform].numpy()
    assert _ks_distance(uniform_part, lambda t: t) < 1.95 / np.sqrt(len(uniform_part))
    normal_part = draw.t[~draw.from_uniform].numpy()
    assert _ks_distance(normal_part, logit_normal_cdf) < 1.95 / np.sqrt(len(normal_part))


def test_tails_thick_versus_plain():
    thick, plain = _sample("thick_tailed_logit_normal").t, _sample("logit_normal").t
    for threshold in (0.99, 0.995):
        expected_thick = 0.1 * (1 - threshold) + 0.9 * norm.sf(logit(threshold))
        observed = (thick > threshold).float().mean().item()
        assert abs(observed - expected_thick) < 5 * np.sqrt(expected_thick / N)
        assert (plain > threshold).float().mean().item() < 0.1 * expected_thick
    assert (thick < 0.01).float().mean() > 10 * (plain < 0.01).float().mean().clamp_min(1 / N)


def test_generator_reproducibility():
    a, b = _sample("thick_tailed_logit_normal", seed=5, n=64), _sample("thick_tailed_logit_normal", seed=5, n=64)
    c = _sample("thick_tailed_logit_normal", seed=6, n=64)
    assert torch.equal(a.t, b.t) and torch.equal(a.from_uniform, b.from_uniform)
    assert not torch.equal(a.t, c.t)


def test_invalid_parameters():
    with pytest.raises(ValueError):
        build_timestep_sampler("thick_tailed_logit_normal", uniform_prob=1.5)
    with pytest.raises(ValueError):
        build_timestep_sampler("logit_normal", scale=0.0)


@pytest.mark.parametrize("shift", [0.5, 3.0])
def test_shifted_noise_levels_follow_the_transformed_cdf(shift):
    from tokenizer_zoo.losses.timesteps import shift_timesteps

    t = shift_timesteps(_sample("thick_tailed_logit_normal").t.double(), shift).numpy()
    # t' = s t / (1 + (s - 1) t) is increasing, with inverse t = t' / (s - (s - 1) t')
    assert _ks_distance(t, lambda u: mixture_cdf(u / (shift - (shift - 1) * u))) < KS_BOUND
    assert _ks_distance(t, mixture_cdf) > 2 * KS_BOUND
    ends = shift_timesteps(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64), shift)
    assert ends[0] == 0 and ends[2] == 1 and ends[1] == pytest.approx(shift / (1 + shift))


def test_shift_one_is_the_identity_and_nonpositive_shifts_are_refused():
    from tokenizer_zoo.losses.timesteps import shift_timesteps

    t = torch.rand(10)
    assert shift_timesteps(t, 1.0) is t
    with pytest.raises(ValueError, match="shift"):
        shift_timesteps(t, 0.0)
