"""Brute-force references for the quantizer tests (independent of the library's implementations)."""

from __future__ import annotations

import itertools

import torch


def all_codes(k: int, scale: float = 1.0) -> torch.Tensor:
    """(2^k, k) float64: every vector of {-scale, +scale}^k."""
    return torch.tensor(list(itertools.product([-scale, scale], repeat=k)), dtype=torch.float64)


def brute_entropy_terms(x: torch.Tensor, temperature: float, eps: float = 0.0, scale: float = 1.0):
    """Spec formula with the full softmax: (mean_i H(p_i), H(mean_i p_i)), p_i = softmax(2 x_i.C / T).

    x: (n, k). ``eps`` is the spec's log(p + eps) (eps=0 gives the exact entropy, 0 log 0 = 0).
    """
    codes = all_codes(x.shape[1], scale).to(x.dtype)
    p = torch.softmax(2 * x @ codes.T / temperature, dim=-1)  # (n, 2^k)
    mean_p = p.mean(0)

    def entropy(q):
        return -(q * torch.log(q + eps)).sum(-1) if eps else -torch.special.xlogy(q, q).sum(-1)

    return entropy(p).mean(), entropy(mean_p)
