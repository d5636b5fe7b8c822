"""vector-quantize-pytorch's quantizers as tokenizer-zoo quantizers (entry points in pyproject.toml).

Axes: b batch, s tokens, d channels, g groups, q residual levels, p index positions per token.

Every class's config is its constructor's arguments: the settings people change, named as in
vector-quantize-pytorch, plus ``options``, a dict of any further keyword arguments of the wrapped
class (JSON values only, so the config saves with the pipeline). Index positions per token:

| entry point                  | wraps             | ids per token (p)   | vocab_size            |
| vqtorch_vq                   | VectorQuantize    | 1: (B, S)           | codebook_size         |
| vqtorch_simvq                | SimVQ             | 1: (B, S)           | codebook_size         |
| vqtorch_residual_vq          | ResidualVQ        | q: (B, S, q)        | codebook_size         |
| vqtorch_grouped_residual_vq  | GroupedResidualVQ | g*q: (B, S, g*q)    | codebook_size         |
| vqtorch_residual_fsq         | ResidualFSQ       | q: (B, S, q)        | prod(levels)          |
| vqtorch_residual_lfq         | ResidualLFQ       | q: (B, S, q)        | codebook_size (2^k)   |

Grouped residual ids are ordered group-major: position g*q + l is level l of group g.
"""

from __future__ import annotations

import math

import torch
import vector_quantize_pytorch as vqtorch
from diffusers import ConfigMixin, ModelMixin  # noqa: F401  (diffusers looks the base classes up here)
from diffusers.configuration_utils import register_to_config
from einops import rearrange

from tokenizer_zoo_vqtorch.base import VQTorchQuantizer


class VQTorchVectorQuantize(VQTorchQuantizer):
    """``VectorQuantize``: one codebook with k-means init, EMA updates, dead-code reset, rotation trick.

    dim, codebook_size; decay (EMA of the codebook); commitment_weight; kmeans_init, kmeans_iters;
    threshold_ema_dead_code (codes whose EMA cluster size, in tokens per batch, falls below it are
    replaced by batch vectors; 0 = off); rotation_trick (else straight-through); use_cosine_sim.
    """

    @register_to_config
    def __init__(self, dim: int, codebook_size: int, decay: float = 0.8, commitment_weight: float = 1.0,
                 kmeans_init: bool = False, kmeans_iters: int = 10, threshold_ema_dead_code: float = 0.0,
                 rotation_trick: bool = True, use_cosine_sim: bool = False, options: dict | None = None):
        super().__init__()
        self.vq = vqtorch.VectorQuantize(
            dim=dim, codebook_size=codebook_size, decay=decay, commitment_weight=commitment_weight,
            kmeans_init=kmeans_init, kmeans_iters=kmeans_iters, threshold_ema_dead_code=threshold_ema_dead_code,
            rotation_trick=rotation_trick, use_cosine_sim=use_cosine_sim, **(options or {}))

    def _quantize(self, z):
        quantized, indices, _, parts = self.vq(z, return_loss_breakdown=True)
        weights = {"commitment": self.vq.commitment_weight,
                   "codebook_diversity": self.vq.codebook_diversity_loss_weight,
                   "orthogonal_reg": self.vq.orthogonal_reg_weight}
        losses = {name: getattr(parts, name) * weight for name, weight in weights.items() if weight}
        return quantized, indices, losses

    def _decode(self, indices):
        return self.vq.get_output_from_indices(indices[..., 0])


class VQTorchSimVQ(VQTorchQuantizer):
    """``SimVQ``: a frozen random codebook seen through a learned linear map (no dead codes by design).

    dim, codebook_size; rotation_trick (else straight-through); commitment_weight and
    input_to_quantize_commit_loss_weight as in vector-quantize-pytorch.
    """

    @register_to_config
    def __init__(self, dim: int, codebook_size: int, rotation_trick: bool = True, commitment_weight: float = 1.0,
                 input_to_quantize_commit_loss_weight: float = 0.25, options: dict | None = None):
        super().__init__()
        self.vq = vqtorch.SimVQ(
            dim=dim, codebook_size=codebook_size, rotation_trick=rotation_trick, commitment_weight=commitment_weight,
            input_to_quantize_commit_loss_weight=input_to_quantize_commit_loss_weight, **(options or {}))

    def _quantize(self, z):
        quantized, indices, commitment = self.vq(z)
        return quantized, indices, {"commitment": commitment}

    def _decode(self, indices):
        return self.vq.indices_to_codes(indices[..., 0])


class VQTorchResidualVQ(VQTorchQuantizer):
    """``ResidualVQ``: ``num_quantizers`` VQ levels, each quantising what the previous left (ids (B, S, q)).

    Further arguments of ``VectorQuantize`` (k-means init, EMA decay, dead-code threshold ...) go in options.
    """

    @register_to_config
    def __init__(self, dim: int, codebook_size: int, num_quantizers: int = 2, commitment_weight: float = 1.0,
                 options: dict | None = None):
        super().__init__()
        self.vq = vqtorch.ResidualVQ(dim=dim, codebook_size=codebook_size, num_quantizers=num_quantizers,
                                            commitment_weight=commitment_weight, **(options or {}))

    def _quantize(self, z):
        quantized, indices, commitment = self.vq(z)
        return quantized, indices, {"commitment": commitment}


class VQTorchGroupedResidualVQ(VQTorchQuantizer):
    """``GroupedResidualVQ``: the channels split into ``groups``, each with its own residual VQ (ids (B, S, g*q))."""

    @register_to_config
    def __init__(self, dim: int, codebook_size: int, groups: int = 2, num_quantizers: int = 2,
                 commitment_weight: float = 1.0, options: dict | None = None):
        super().__init__()
        if groups < 1 or dim % groups:
            raise ValueError(f"GroupedResidualVQ splits dim={dim} into groups={groups}: dim must be a multiple "
                             f"of groups, e.g. groups={math.gcd(dim, groups) or 1}.")
        self.vq = vqtorch.GroupedResidualVQ(
            dim=dim, codebook_size=codebook_size, groups=groups, num_quantizers=num_quantizers,
            commitment_weight=commitment_weight, **(options or {}))

    @property
    def positions(self) -> int:
        return self.config.groups * self.config.num_quantizers

    def _quantize(self, z):
        quantized, indices, commitment = self.vq(z)
        return quantized, rearrange(indices, "g b s q -> b s (g q)"), {"commitment": commitment}

    def _decode(self, indices):
        return self.vq.get_output_from_indices(rearrange(indices, "b s (g q) -> g b s q", g=self.config.groups))


class VQTorchResidualFSQ(VQTorchQuantizer):
    """``ResidualFSQ``: ``num_quantizers`` FSQ levels of ``levels`` (projections when dim != len(levels))."""

    @register_to_config
    def __init__(self, dim: int, levels: list[int], num_quantizers: int = 2, options: dict | None = None):
        super().__init__()
        self.vq = vqtorch.ResidualFSQ(dim=dim, levels=list(levels), num_quantizers=num_quantizers,
                                             **(options or {}))

    @property
    def vocab_size(self) -> int:
        return math.prod(self.config.levels)

    def _quantize(self, z):
        quantized, indices = self.vq(z)
        return quantized, indices, {}


class VQTorchResidualLFQ(VQTorchQuantizer):
    """``ResidualLFQ``: ``num_quantizers`` lookup-free levels of log2(codebook_size) bits (entropy loss inside)."""

    @register_to_config
    def __init__(self, dim: int, codebook_size: int, num_quantizers: int = 2, options: dict | None = None):
        super().__init__()
        if codebook_size < 2 or codebook_size & (codebook_size - 1):
            raise ValueError(f"ResidualLFQ needs a power-of-two codebook_size (2^bits), got {codebook_size}.")
        self.vq = vqtorch.ResidualLFQ(dim=dim, codebook_size=codebook_size, num_quantizers=num_quantizers,
                                             **(options or {}))

    def _quantize(self, z):
        quantized, indices, aux = self.vq(z)
        return quantized, indices, {"entropy_and_commitment": aux}
