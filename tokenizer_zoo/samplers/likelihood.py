"""Exact log-likelihoods of a rectified flow: log p(x | code) in nats and bits per dimension.

FLOWMO_SPEC §5: "solving the flow ODE backwards gives sample log-likelihoods". The decoder defines
the probability-flow ODE

    dx/dt = v(x, t),      t = 1: noise z ~ N(0, I),   t = 0: data,

(x_t = (1 - t) x + t z, v ~ z - x). Sampling integrates it from t = 1 down to t = 0; the likelihood
integrates it the other way, from the image x_0 = x at t = 0 up to its noise x_1 at t = 1.

Derivation (instantaneous change of variables). Let p_t be the density of x_t when x_1 ~ N(0, I)
is pushed through the ODE. The continuity equation dp_t/dt + div(p_t v) = 0, read along a
trajectory x_t of the ODE, gives

    d/dt log p_t(x_t) = d/dt log p_t + grad log p_t . v = -div v(x_t, t).

Integrating from t = 0 to t = 1:  log p_1(x_1) - log p_0(x_0) = -int_0^1 div v(x_t, t) dt, so

    log p_0(x) = log N(x_1; 0, I) + int_0^1 div v(x_t, t) dt          (*)

with x_t the solution started at x_0 = x. ``prior_logp`` is the first term, ``delta_logp`` the
integral. Sanity check of the sign: for v = a x (a > 0) the flow expands volumes by e^{aD} from
t = 0 to 1, so the data density must be *higher* than the prior's by that factor: + a D. The same
integral with time running from 1 to 0 would flip the sign -- we always integrate upwards.

The divergence is either exact (one backward pass per dimension: small inputs only) or
Hutchinson's unbiased estimate div v = E[eps^T (dv/dx) eps] with Rademacher or Gaussian probes
eps, drawn once per call and held fixed along the trajectory (so the augmented ODE stays smooth
and fixed-step Heun keeps its order). The ODE is solved with fixed-step Heun (2nd order, two
velocity evaluations per step) or Euler on the time grid ``shifted_schedule(num_steps, rho)``
reversed (rho = 1: uniform; rho > 1: fine steps near the data, where the field is least smooth).

Bits per dimension. ``log p`` is a density over the model's pixel space ([-1, 1] for images). For
images that came from ``discrete_levels`` integer levels (256 for 8-bit), the standard convention
(RealNVP, Glow, FFJORD, ...) measures the density in the integer scale y in [0, L): the affine map
x = y * data_range / L + const has Jacobian (data_range / L)^D, so
log p_y(y) = log p_x(x) + D log(data_range / L) and

    bpd = -log p_y / (D ln 2) = -log p_x(x) / (D ln 2) + log2(L / data_range),

i.e. + log2(128) = + 7 bits for L = 256, data_range = 2. With ``dequantize=True`` the pixels are
first jittered uniformly within their bin (width data_range / L, centred on the pixel), which
makes the number an upper bound (in expectation) on the discrete model's bits per dimension;
without it the number is the continuous density at the bin centres, the usual quick estimate.
With ``discrete_levels=None`` no rescaling is done: bits per dimension of the continuous density
in the model's own units (can be negative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from tokenizer_zoo.samplers.shifted_euler import shifted_schedule

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

METHODS = ("heun", "euler")
DIVERGENCES = ("auto", "exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


@dataclass
class LikelihoodOutput:
    """Per-sample results of :func:`flow_log_likelihood` (float64 tensors of shape (B,) unless noted).

    log_likelihood_nats: log p(x) in the model's pixel units, = prior_logp + delta_logp.
    bits_per_dim: see :func:`bits_per_dim` for the convention.
    prior_logp: log N(x_1; 0, I).
    delta_logp: int_0^1 div v(x_t, t) dt.
    x_1: the noise the image maps to (shape and dtype of the input).
    num_function_evals: velocity evaluations per sample (2 per Heun step, 1 per Euler step).
    """

    log_likelihood_nats: torch.Tensor
    bits_per_dim: torch.Tensor
    prior_logp: torch.Tensor
    delta_logp: torch.Tensor
    x_1: torch.Tensor
    num_function_evals: int


def standard_normal_logp(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per sample: sum over every axis but the first, float64."""
    flat = z.reshape(z.shape[0], -1).double()
    return -0.5 * (flat.square().sum(dim=1) + flat.shape[1] * math.log(2 * math.pi))


def bits_per_dim(log_likelihood_nats: torch.Tensor, num_dims: int, discrete_levels: int | None = 256,
                 data_range: float = 2.0) -> torch.Tensor:
    """-log p / (D ln 2) + log2(discrete_levels / data_range): bits per dimension in the integer scale.

    ``data_range`` is the width of the model's pixel interval (2 for [-1, 1]); ``discrete_levels``
    the number of integer levels the data came from (256 for 8-bit), or None for the continuous
    density in the model's own units. See the module docstring for the derivation.
    """
    if not isinstance(num_dims, int) or num_dims < 1:
        raise ValueError(f"num_dims must be a positive int (values per sample, e.g. 3*H*W), got {num_dims!r}")
    _check_scale(discrete_levels, data_range)
    bpd = -log_likelihood_nats / (num_dims * math.log(2))
    return bpd if discrete_levels is None else bpd + math.log2(discrete_levels / data_range)


def _check_scale(discrete_levels, data_range) -> None:
    if discrete_levels is not None and (isinstance(discrete_levels, bool) or not isinstance(discrete_levels, int)
                                        or discrete_levels < 2):
        raise ValueError(f"discrete_levels must be an int >= 2 (256 for 8-bit images) or None, got {discrete_levels!r}")
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0 (2.0 for images in [-1, 1]), got {data_range!r}")


def sample_probes(like: torch.Tensor, num_probes: int, kind: str = "rademacher",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``num_probes`` Hutchinson probes shaped like ``like``: (num_probes, *like.shape), E[eps eps^T] = I."""
    if kind not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {kind!r}")
    device = generator.device if generator is not None else like.device
    shape = (num_probes, *like.shape)
    if kind == "gaussian":
        probes = torch.randn(shape, generator=generator, device=device, dtype=like.dtype)
    else:
        probes = torch.randint(0, 2, shape, generator=generator, device=device).to(like.dtype) * 2 - 1
    return probes.to(like.device)


def velocity_and_divergence(velocity_fn: VelocityFn, x: torch.Tensor, t: torch.Tensor,
                            probes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(v(x, t), div_x v(x, t) per sample as float64 (B,)); exact when ``probes`` is None, else Hutchinson.

    ``t`` is (B,). The divergence assumes the samples of the batch do not interact (true for a
    decoder without batch statistics). Gradients are taken with respect to ``x`` only, so the
    parameters of the model behind ``velocity_fn`` accumulate nothing.
    """
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        v = velocity_fn(x_in, t)
        if not isinstance(v, torch.Tensor) or v.shape != x.shape:
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"velocity_fn(x, t) must return a tensor shaped like x {tuple(x.shape)}, got {got}")
        div = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        if v.requires_grad:  # else v does not depend on x: div = 0
            div = _divergence(v, x_in, probes, div)
    return v.detach(), div


def _divergence(v: torch.Tensor, x_in: torch.Tensor, probes: torch.Tensor | None, div: torch.Tensor) -> torch.Tensor:
    def vjp(weights: torch.Tensor) -> torch.Tensor:  # weights^T dv/dx, per sample, flattened
        (grad,) = torch.autograd.grad(v, x_in, grad_outputs=weights, retain_graph=True, allow_unused=True)
        return torch.zeros_like(x_in).flatten(1) if grad is None else grad.flatten(1)

    if probes is None:
        basis = torch.zeros_like(v).flatten(1)
        for i in range(basis.shape[1]):
            basis[:, i] = 1
            div = div + vjp(basis.view_as(v))[:, i].double()
            basis[:, i] = 0
        return div
    for eps in probes:
        div = div + (vjp(eps) * eps.flatten(1)).sum(dim=1).double()
    return div / probes.shape[0]


@torch.no_grad()
def flow_log_likelihood(
    velocity_fn: VelocityFn,
    x: torch.Tensor,
    num_steps: int = 32,
    method: str = "heun",
    rho: float = 1.0,
    divergence: str = "auto",
    num_probes: int = 1,
    probe: str = "rademacher",
    exact_max_dims: int = 64,
    generator: torch.Generator | None = None,
    discrete_levels: int | None = 256,
    data_range: float = 2.0,
    dequantize: bool = False,
) -> LikelihoodOutput:
    """log p(x) under the flow ``dx/dt = velocity_fn(x, t)`` by integrating (*) from t = 0 to t = 1.

    Args:
        velocity_fn: ``(x (B, ...), t (B,)) -> v`` shaped like x; t = 0 is data, t = 1 noise. For a
            FlowMo decoder use :func:`conditional_velocity`.
        x: data (B, ...), e.g. images (B, 3, H, W) in [-1, 1].
        num_steps: fixed steps of the solver; ``method``: "heun" (2nd order) or "euler".
        rho: time grid = ``shifted_schedule(num_steps, rho)`` reversed; 1 is uniform.
        divergence: "exact" (one backward pass per dimension), "hutchinson" (``num_probes``
            probes of kind ``probe``: "rademacher" or "gaussian"), or "auto": exact when a sample
            has at most ``exact_max_dims`` values, Hutchinson otherwise.
        generator: seeds the dequantisation noise (drawn first) and the probes.
        discrete_levels, data_range: bits-per-dimension convention, see :func:`bits_per_dim`.
        dequantize: jitter x uniformly within its bin of width data_range / discrete_levels.

    Runs under ``torch.no_grad``; gradients are enabled only for the divergence, with respect to
    the input. Not usable inside ``torch.inference_mode`` (the divergence needs autograd).
    """
    _check_arguments(x, num_steps, method, divergence, num_probes, exact_max_dims)
    _check_scale(discrete_levels, data_range)
    if dequantize:
        if discrete_levels is None:
            raise ValueError("dequantize=True needs discrete_levels (the bin width is data_range / discrete_levels)")
        noise = torch.rand(x.shape, generator=generator, device=generator.device if generator else x.device)
        x = x + (noise.to(x.device, x.dtype) - 0.5) * (data_range / discrete_levels)
    num_dims = x[0].numel()
    exact = divergence == "exact" or (divergence == "auto" and num_dims <= exact_max_dims)
    probes = None if exact else sample_probes(x, num_probes, probe, generator)

    times = shifted_schedule(num_steps, rho).flip(0).tolist()  # 0 = s_0 < s_1 < ... < s_n = 1
    delta = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    state = x
    for t, t_next in zip(times[:-1], times[1:]):
        state, delta = _solver_step(velocity_fn, state, delta, t, t_next, method, probes)

    prior = standard_normal_logp(state)
    log_likelihood = prior + delta
    return LikelihoodOutput(
        log_likelihood_nats=log_likelihood,
        bits_per_dim=bits_per_dim(log_likelihood, num_dims, discrete_levels, data_range),
        prior_logp=prior,
        delta_logp=delta,
        x_1=state,
        num_function_evals=num_steps * (2 if method == "heun" else 1),
    )


def _solver_step(velocity_fn, x, delta, t: float, t_next: float, method: str, probes):
    """One Euler or Heun step of the augmented ODE d(x, delta)/dt = (v, div v) from t up to t_next."""
    h = t_next - t

    def times(value: float) -> torch.Tensor:
        return torch.full((x.shape[0],), value, dtype=x.dtype, device=x.device)

    v, div = velocity_and_divergence(velocity_fn, x, times(t), probes)
    x_euler = x + h * v
    if method == "euler":
        return x_euler, delta + h * div
    v_end, div_end = velocity_and_divergence(velocity_fn, x_euler, times(t_next), probes)
    return x + (0.5 * h) * (v + v_end), delta + (0.5 * h) * (div + div_end)


def _check_arguments(x, num_steps, method, divergence, num_probes, exact_max_dims) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
        got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a floating-point batch (B, ...) such as images (B, 3, H, W), got {got}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes must be a positive int (Hutchinson probes per step), got {num_probes!r}")
    if not isinstance(exact_max_dims, int) or exact_max_dims < 0:
        raise ValueError(f"exact_max_dims must be a non-negative int, got {exact_max_dims!r}")
    if torch.is_inference_mode_enabled():
        raise RuntimeError("flow_log_likelihood needs autograd for the divergence: call it outside "
                           "torch.inference_mode() (it already runs under torch.no_grad)")


def conditional_velocity(decoder: Callable, codes: torch.Tensor, guidance_scale: float = 1.0,
                         guidance_interval: tuple[float, float] | None = None) -> VelocityFn:
    """``velocity_fn(x, t)`` of a FlowMo-style decoder ``decoder(codes, x_t, t, drop_code=None)`` for fixed codes.

    With ``guidance_scale`` != 1, classifier-free guidance v_u + w (v_c - v_u) (unconditional:
    ``drop_code=True``) is applied where t lies in ``guidance_interval`` (everywhere if None).
    The default, no guidance, is the likelihood of the conditional model itself. The flow with
    guidance is still a valid flow, so its likelihood is well defined, but it is another model's.
    """
    if guidance_interval is not None and not guidance_interval[0] <= guidance_interval[1]:
        raise ValueError(f"guidance_interval must be (low, high) with low <= high, got {guidance_interval}")

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v_cond = decoder(codes, x, t)
        if guidance_scale == 1.0:
            return v_cond
        if guidance_interval is not None and not guidance_interval[0] <= float(t[0]) <= guidance_interval[1]:
            return v_cond
        v_uncond = decoder(codes, x, t, drop_code=True)
        return v_uncond + guidance_scale * (v_cond - v_uncond)

    return velocity
