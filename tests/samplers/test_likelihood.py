"""flow_log_likelihood against closed forms.

Gaussian data x0 ~ N(mu, Sigma), Sigma = Q diag(lam) Q^T, and x_t = (1 - t) x0 + t z. Then
x_t ~ N((1 - t) mu, S_t) with S_t = (1 - t)^2 Sigma + t^2 I, and u = z - x0 has E[u] = -mu and
Cov(u, x_t) = t I - (1 - t) Sigma, so the exact marginal velocity E[u | x_t] is linear:

    v(x, t) = -mu + (t I - (1 - t) Sigma) S_t^{-1} (x - (1 - t) mu)
            = -mu + Q diag(a_k(t)) Q^T (x - (1 - t) mu),   a_k = (t - (1 - t) lam_k) / ((1 - t)^2 lam_k + t^2).

(a_k = d/dt log sigma_k(t), so the flow map is x_t = (1 - t) mu + Q diag(sigma_k(t)/sigma_k(0)) Q^T (x - mu)
and the ODE's log-likelihood is exactly log N(x; mu, Sigma).) A non-diagonal Q makes the Jacobian
non-diagonal, so Rademacher probes have non-zero variance.
"""

import math

import pytest
import torch

from tokenizer_zoo.samplers.likelihood import (LikelihoodOutput, bits_per_dim, conditional_velocity,
                                               flow_log_likelihood, sample_probes, standard_normal_logp,
                                               velocity_and_divergence)

SHAPE = (2, 3)  # one sample; D = 6
D = 6


def gaussian_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    lam = torch.rand(D, generator=g, dtype=torch.float64) * 2.0 + 0.1  # variances in [0.1, 2.1]
    mu = torch.randn(D, generator=g, dtype=torch.float64) * 0.5

    def velocity(x, t):
        flat, t = x.reshape(x.shape[0], D), t[:, None]
        a = (t - (1 - t) * lam) / ((1 - t) ** 2 * lam + t**2)  # (B, D)
        centred = flat - (1 - t) * mu
        return (-mu + ((centred @ q) * a) @ q.T).reshape(x.shape)

    exact = torch.distributions.MultivariateNormal(mu, covariance_matrix=q @ torch.diag(lam) @ q.T)
    x = (mu + (torch.randn(5, D, generator=g, dtype=torch.float64) * lam.sqrt()) @ q.T).reshape(5, *SHAPE)
    return velocity, x, exact.log_prob(x.reshape(5, D)), (q, lam, mu)


def random_field(seed=0, dim=D, hidden=16):
    """A small nonlinear field acting on each sample separately."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(dim, hidden, generator=g, dtype=torch.float64) / math.sqrt(dim)
    w2 = torch.randn(hidden, dim, generator=g, dtype=torch.float64) / math.sqrt(hidden)
    b = torch.randn(hidden, generator=g, dtype=torch.float64)

    def velocity(x, t):
        flat = x.reshape(x.shape[0], -1)
        return (torch.tanh(flat @ w1 + t[:, None] * b) @ w2 + torch.sin(flat) * t[:, None]).reshape(x.shape)

    return velocity


@pytest.mark.parametrize("rho, num_steps, tolerance", [(1.0, 64, 3e-4), (2.0, 128, 4e-4)])
def test_gaussian_exact_divergence_matches_closed_form(rho, num_steps, tolerance):
    velocity, x, expected, _ = gaussian_problem()
    out = flow_log_likelihood(velocity, x, num_steps=num_steps, rho=rho, divergence="exact", discrete_levels=None)
    assert isinstance(out, LikelihoodOutput) and out.num_function_evals == 2 * num_steps
    assert out.log_likelihood_nats.shape == (5,) and out.x_1.shape == x.shape
    torch.testing.assert_close(out.log_likelihood_nats, expected, atol=tolerance, rtol=0)
    torch.testing.assert_close(out.prior_logp + out.delta_logp, out.log_likelihood_nats)


def test_gaussian_delta_logp_and_noise_match_flow_map():
    velocity, x, _, (q, lam, mu) = gaussian_problem()
    out = flow_log_likelihood(velocity, x, num_steps=64, divergence="exact", discrete_levels=None)
    z = ((x.reshape(5, D) - mu) @ q / lam.sqrt()) @ q.T  # x_1 = Sigma^{-1/2} (x - mu)
    # int_0^1 a_k dt = log sigma_k(1) - log sigma_k(0) = -0.5 log lam_k, summed over k
    torch.testing.assert_close(out.x_1.reshape(5, D), z, atol=3e-4, rtol=0)
    torch.testing.assert_close(out.delta_logp, torch.full((5,), -0.5 * lam.log().sum().item(), dtype=torch.float64),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(out.prior_logp, standard_normal_logp(z), atol=1e-3, rtol=0)


def test_heun_converges_at_second_order_and_beats_euler():
    velocity, x, expected, _ = gaussian_problem()

    def error(method, n):
        out = flow_log_likelihood(velocity, x, num_steps=n, method=method, divergence="exact", discrete_levels=None)
        return (out.log_likelihood_nats - expected).abs().max().item()

    heun = [error("heun", n) for n in (32, 64, 128)]
    euler = [error("euler", n) for n in (32, 64, 128)]
    assert heun[0] < euler[0] / 100
    for coarse, fine in zip(heun[:-1], heun[1:]):
        assert 1.6 < math.log2(coarse / fine) < 2.4
    for coarse, fine in zip(euler[:-1], euler[1:]):
        assert 0.7 < math.log2(coarse / fine) < 1.3


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_gaussian_hutchinson_matches_closed_form_on_average(probe):
    velocity, x, expected, _ = gaussian_problem()
    reps = 512  # each copy of x gets its own probe: averaging the copies averages many probes
    many = x.repeat_interleave(reps, dim=0)
    out = flow_log_likelihood(velocity, many, num_steps=32, divergence="hutchinson", probe=probe,
                              generator=torch.Generator().manual_seed(1), discrete_levels=None)
    per_copy = out.log_likelihood_nats.reshape(5, reps)
    assert per_copy.std(dim=1).min() > 1e-3  # the estimate does vary: the test is not vacuous
    mean, stderr = per_copy.mean(dim=1), per_copy.std(dim=1) / math.sqrt(reps)
    assert ((mean - expected).abs() < 4 * stderr + 1e-3).all()


def test_auto_picks_exact_for_small_and_hutchinson_for_large_inputs():
    velocity = random_field(dim=D)
    x = torch.randn(3, *SHAPE, dtype=torch.float64)
    exact = flow_log_likelihood(velocity, x, num_steps=4, divergence="exact")
    auto = flow_log_likelihood(velocity, x, num_steps=4, divergence="auto")
    hutch = flow_log_likelihood(velocity, x, num_steps=4, divergence="hutchinson", generator=torch.Generator().manual_seed(0))
    forced = flow_log_likelihood(velocity, x, num_steps=4, divergence="auto", exact_max_dims=5,
                                 generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(auto.log_likelihood_nats, exact.log_likelihood_nats)
    torch.testing.assert_close(forced.log_likelihood_nats, hutch.log_likelihood_nats)
    assert not torch.allclose(hutch.log_likelihood_nats, exact.log_likelihood_nats)


def test_exact_divergence_is_the_jacobian_trace():
    velocity = random_field(seed=3)
    x = torch.randn(4, *SHAPE, dtype=torch.float64)
    t = torch.rand(4, dtype=torch.float64)
    v, div = velocity_and_divergence(velocity, x, t)
    torch.testing.assert_close(v, velocity(x, t))
    for b in range(4):
        jac = torch.autograd.functional.jacobian(lambda xb: velocity(xb[None], t[b:b + 1])[0], x[b])
        torch.testing.assert_close(div[b], jac.reshape(D, D).trace(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_and_seeded(probe):
    velocity = random_field(seed=5)
    point, t = torch.randn(1, *SHAPE, dtype=torch.float64), torch.full((1,), 0.3, dtype=torch.float64)
    _, exact = velocity_and_divergence(velocity, point, t)
    n = 20_000  # one probe per copy of the point: one backward pass for all of them
    copies = point.expand(n, *SHAPE)
    probes = sample_probes(copies, 1, probe, torch.Generator().manual_seed(7))
    _, estimates = velocity_and_divergence(velocity, copies, t.expand(n), probes)
    assert estimates.std() > 0.05
    assert (estimates.mean() - exact[0]).abs() < 4 * estimates.std() / math.sqrt(n)
    again = sample_probes(copies, 1, probe, torch.Generator().manual_seed(7))
    other = sample_probes(copies, 1, probe, torch.Generator().manual_seed(8))
    assert torch.equal(probes, again) and not torch.equal(probes, other)
    if probe == "rademacher":
        assert set(probes.unique().tolist()) == {-1.0, 1.0}


def test_averaging_probes_within_a_call():
    velocity = random_field(seed=5)
    x, t = torch.randn(2, *SHAPE, dtype=torch.float64), torch.full((2,), 0.6, dtype=torch.float64)
    probes = sample_probes(x, 3, "gaussian", torch.Generator().manual_seed(0))
    _, averaged = velocity_and_divergence(velocity, x, t, probes)
    singles = torch.stack([velocity_and_divergence(velocity, x, t, p[None])[1] for p in probes])
    torch.testing.assert_close(averaged, singles.mean(dim=0))


def test_likelihood_is_deterministic_under_a_seeded_generator():
    velocity = random_field(seed=2)
    x = torch.randn(3, *SHAPE, dtype=torch.float64)

    def run(seed):
        return flow_log_likelihood(velocity, x, num_steps=3, divergence="hutchinson", num_probes=2,
                                   dequantize=True, generator=torch.Generator().manual_seed(seed))

    first, second, other = run(11), run(11), run(12)
    assert torch.equal(first.log_likelihood_nats, second.log_likelihood_nats)
    assert torch.equal(first.x_1, second.x_1)
    assert not torch.allclose(first.log_likelihood_nats, other.log_likelihood_nats)


def test_bits_per_dim_arithmetic():
    # a uniform density on [-1, 1]^D is log p = -D ln 2: over 256 levels that is 8 bits exactly
    assert bits_per_dim(torch.tensor([-D * math.log(2)]), D).item() == pytest.approx(8.0)
    nats = torch.tensor([0.0, -3 * D * math.log(2), 2 * D * math.log(2)], dtype=torch.float64)
    torch.testing.assert_close(bits_per_dim(nats, D), torch.tensor([7.0, 10.0, 5.0], dtype=torch.float64))
    torch.testing.assert_close(bits_per_dim(nats, D, discrete_levels=None),
                               torch.tensor([0.0, 3.0, -2.0], dtype=torch.float64))
    # data in [0, 1] (range 1) from 256 levels: + log2(256) = 8; 5-bit data in [-1, 1]: + log2(16) = 4
    torch.testing.assert_close(bits_per_dim(nats, D, data_range=1.0), torch.tensor([8.0, 11.0, 6.0], dtype=torch.float64))
    torch.testing.assert_close(bits_per_dim(nats, D, discrete_levels=32), torch.tensor([4.0, 7.0, 2.0], dtype=torch.float64))


def test_output_bits_per_dim_uses_all_dimensions():
    velocity, x, expected, _ = gaussian_problem()
    out = flow_log_likelihood(velocity, x, num_steps=4, divergence="exact")
    torch.testing.assert_close(out.bits_per_dim, -out.log_likelihood_nats / (D * math.log(2)) + 7.0)


def test_dequantize_stays_within_half_a_bin():
    x = torch.zeros(2, *SHAPE, dtype=torch.float64)
    identity_flow = flow_log_likelihood(lambda x, t: torch.zeros_like(x), x, num_steps=1, dequantize=True,
                                        discrete_levels=4, generator=torch.Generator().manual_seed(0))
    jitter = identity_flow.x_1  # v = 0: x_1 is the dequantised input
    assert 0 < jitter.abs().max() <= 0.25 and jitter.abs().min() >= 0  # bin width 2 / 4 = 0.5
    torch.testing.assert_close(identity_flow.delta_logp, torch.zeros(2, dtype=torch.float64))


def test_no_gradients_reach_the_model():
    model = torch.nn.Sequential(torch.nn.Linear(D, 8), torch.nn.Tanh(), torch.nn.Linear(8, D))

    def velocity(x, t):
        return model(x.reshape(x.shape[0], D) * (1 + t[:, None])).reshape(x.shape)

    out = flow_log_likelihood(velocity, torch.randn(2, *SHAPE), num_steps=2)
    assert all(p.grad is None for p in model.parameters())
    assert out.log_likelihood_nats.grad_fn is None and out.x_1.grad_fn is None
    assert out.x_1.dtype == torch.float32 and out.log_likelihood_nats.dtype == torch.float64


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="rk4"), "method must be one of"),
    (dict(divergence="trace"), "divergence must be one of"),
    (dict(num_steps=0), "num_steps must be a positive int"),
    (dict(num_steps=2.5), "num_steps must be a positive int"),
    (dict(num_probes=0), "num_probes must be a positive int"),
    (dict(probe="sphere", divergence="hutchinson"), "probe must be one of"),
    (dict(discrete_levels=1), "discrete_levels must be an int >= 2"),
    (dict(data_range=0.0), "data_range must be > 0"),
    (dict(dequantize=True, discrete_levels=None), "dequantize=True needs discrete_levels"),
    (dict(exact_max_dims=-1), "exact_max_dims must be a non-negative int"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        flow_log_likelihood(random_field(), torch.randn(1, *SHAPE, dtype=torch.float64), **kwargs)


def test_bad_inputs_and_fields():
    field = random_field()
    with pytest.raises(ValueError, match="floating-point batch"):
        flow_log_likelihood(field, torch.zeros(1, *SHAPE, dtype=torch.long))
    with pytest.raises(ValueError, match="floating-point batch"):
        flow_log_likelihood(field, torch.zeros(D, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN or infinite"):
        flow_log_likelihood(field, torch.full((1, *SHAPE), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="shaped like x"):
        flow_log_likelihood(lambda x, t: x.flatten(1), torch.randn(1, *SHAPE))
    with pytest.raises(ValueError, match="num_dims must be a positive int"):
        bits_per_dim(torch.zeros(1), 0)
    with pytest.raises(ValueError, match="guidance_interval"):
        conditional_velocity(lambda *a, **k: None, None, 2.0, (0.5, 0.1))
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        flow_log_likelihood(field, torch.randn(1, *SHAPE, dtype=torch.float64))


def test_conditional_velocity_with_a_flowmo_decoder():
    from tokenizer_zoo.decoders.flowmo import FlowMoDecoder

    decoder = FlowMoDecoder(image_size=8, patch_size=4, hidden_size=64, depth=1, num_heads=2, code_length=3, code_dim=4)
    with torch.no_grad():
        for p in decoder.parameters():  # leave the zero-initialised gates behind so the output depends on x
            p.normal_(0, 0.2)
    codes, x = torch.randn(2, 3, 4), torch.rand(2, 3, 8, 8) * 2 - 1
    t = torch.full((2,), 0.3)
    with torch.no_grad():
        v_cond = decoder(codes, x, t)
        v_uncond = decoder(codes, x, t, drop_code=True)
        torch.testing.assert_close(conditional_velocity(decoder, codes)(x, t), v_cond)
        guided = conditional_velocity(decoder, codes, 2.0, (0.1, 0.5))
        torch.testing.assert_close(guided(x, t), v_uncond + 2.0 * (v_cond - v_uncond))
        torch.testing.assert_close(guided(x, torch.full((2,), 0.8)), decoder(codes, x, torch.full((2,), 0.8)))
    out = flow_log_likelihood(conditional_velocity(decoder, codes), x, num_steps=2,
                              generator=torch.Generator().manual_seed(0))  # D = 192 > 64: Hutchinson
    assert out.bits_per_dim.shape == (2,) and torch.isfinite(out.bits_per_dim).all()
    assert (out.delta_logp != 0).all()
    assert all(p.grad is None for p in decoder.parameters())
