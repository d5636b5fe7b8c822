"""Lookup-free quantisation (LFQ, MagViT-v2), FlowMo's quantizer: every channel becomes one bit.

Axes: b batch, s tokens, d channels (= bits), g groups (sub-tokens) per token, k bits per group,
n flattened sub-tokens of the batch, c codes of one half of a group's bits.

Entropy loss (FLOWMO_SPEC §2). A sub-token x (k channels) scores the 2^k codes C in {-1,+1}^k with
logits 2 x.C / T and p = softmax. The softmax factorises over bits: p(C) = prod_j q_j(C_j) with
q_j(+1) = sigmoid(4 x_j / T). Hence
  * per-sample entropy H(p_i) = sum_j h(q_ij), a sum of binary entropies (n x k work);
  * the batch-mean distribution mean_i p_i is computed exactly without an n x 2^k matrix: split the
    k bits into halves of k1 and k2 bits; with a_i, b_i the product distributions of sample i over
    each half (n x 2^k1 and n x 2^k2), mean_i p_i(c1, c2) = (a^T b)[c1, c2] / n, a 2^k1 x 2^k2 matrix.
At k = 14 that is two n x 128 matrices and a 128 x 128 one. Entropies are exact (0 log 0 = 0);
the spec's brute force writes log(p + 1e-5), which differs by at most 2^k * 1e-5 per term.

Bit order: in a group of k channels, channel j (0-based) is bit k-1-j of the index: the group's
first channel is the most significant bit. Bit 1 means x > 0 (code +1); x <= 0 gives -1.

Layout of the reference release (for converted checkpoints): ``group_layout="interleaved"`` makes
sub-token g of a token the channels g, g + G, g + 2G, ... (the release's
``b t (fg fh) -> b fg (t fh)`` with fg = k bits, fh = G groups), and ``bit_order="lsb_first"`` makes
a group's first channel the least significant bit of its index. Both change only which channels
form an index and the batch-entropy term of the loss; the codes themselves are the same.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange

from tokenizer_zoo.outputs import QuantizerOutput
from tokenizer_zoo.quantizers._checks import add_save_marker, check_codes, check_indices
from tokenizer_zoo.registry import QUANTIZERS


def _shifts(k: int, device: torch.device | None) -> torch.Tensor:
    """(k,) bit positions of a group's channels: the first channel is the most significant bit."""
    return torch.arange(k - 1, -1, -1, device=device)


def bit_table(k: int, device: torch.device | None = None) -> torch.Tensor:
    """(2^k, k) int64 table: row c holds the bits of index c, most significant first."""
    return (torch.arange(2**k, device=device)[:, None] >> _shifts(k, device)) & 1


def bits_to_indices(bits: torch.Tensor, k: int) -> torch.Tensor:
    """(b, s, g*k) bool/int bits -> (b, s, g) int64 indices, first channel of a group most significant."""
    bits = rearrange(bits.long(), "b s (g k) -> b s g k", k=k)
    return (bits << _shifts(k, bits.device)).sum(-1)


def indices_to_bits(indices: torch.Tensor, k: int) -> torch.Tensor:
    """(b, s, g) int64 indices -> (b, s, g*k) int64 bits in {0, 1}; inverse of :func:`bits_to_indices`."""
    bits = (indices[..., None] >> _shifts(k, indices.device)) & 1
    return rearrange(bits, "b s g k -> b s (g k)")


GROUP_LAYOUTS = {"contiguous": "b s (g k) -> b s g k", "interleaved": "b s (k g) -> b s g k"}
BIT_ORDERS = ("msb_first", "lsb_first")


def _half_distribution(log_q1: torch.Tensor, log_q0: torch.Tensor) -> torch.Tensor:
    """(n, h) log-probabilities of bit 1 / bit 0 -> (n, 2^h) product distribution over the h bits."""
    table = bit_table(log_q1.shape[1], log_q1.device).to(log_q1.dtype)
    return torch.exp(log_q1 @ table.T + log_q0 @ (1 - table).T)


def _mean_over_processes(mean_p: torch.Tensor) -> torch.Tensor:
    """The batch-mean distribution of the global batch under data parallelism (equal local batches).

    A differentiable all-reduce: with DDP averaging gradients, every process then gets exactly the
    gradient a single process would get for the whole global batch.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return mean_p
    from torch.distributed.nn.functional import all_reduce  # differentiable, unlike dist.all_reduce

    return all_reduce(mean_p) / dist.get_world_size()


def lfq_entropy_terms(
    x: torch.Tensor, temperature: float, sync_processes: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean per-sample entropy and entropy of the mean, in nats, of softmax(2 x.C / T) over C in {-1,1}^k.

    x: (n, k) sub-tokens. Exact and O(n (k + 2^(k/2))) memory; see the module docstring.
    sync_processes: average the batch distribution over all processes (training under DDP).
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    with torch.autocast(x.device.type, enabled=False):
        logits = 4 * x.to(dtype) / temperature  # (n, k): log-odds of each bit being +1
        log_q1, log_q0 = torch.nn.functional.logsigmoid(logits), torch.nn.functional.logsigmoid(-logits)
        per_sample = -(log_q1.exp() * log_q1 + log_q0.exp() * log_q0).sum(-1).mean()
        k1 = x.shape[1] // 2
        a = _half_distribution(log_q1[:, :k1], log_q0[:, :k1])  # (n, 2^k1)
        b = _half_distribution(log_q1[:, k1:], log_q0[:, k1:])  # (n, 2^k2)
        mean_p = a.T @ b / x.shape[0]  # (2^k1, 2^k2): batch-mean distribution over all 2^k codes
        if sync_processes:
            mean_p = _mean_over_processes(mean_p)
        batch = -(mean_p * mean_p.clamp_min(1e-30).log()).sum()
    return per_sample, batch


@QUANTIZERS.register("lfq")
class LFQuantizer(ModelMixin, ConfigMixin):
    """Binary codes q = sign(x) with straight-through gradients, an entropy loss and a commitment loss.

    dim: code channels (= bits per token). bits_per_group: k, the bits of one sub-token for the entropy
    loss and for the indices (dim must be a multiple of k). group_layout ("contiguous" or
    "interleaved") and bit_order ("msb_first" or "lsb_first"): which channels form a sub-token and
    in which order they make its index (see the module docstring; the release uses "interleaved",
    "lsb_first"). The quantizer has no parameters.
    """

    @register_to_config
    def __init__(
        self,
        dim: int,
        bits_per_group: int = 9,
        entropy_weight: float = 0.0025,
        commitment_weight: float = 0.000625,
        temperature: float = 0.1,
        group_layout: str = "contiguous",
        bit_order: str = "msb_first",
    ):
        super().__init__()
        if group_layout not in GROUP_LAYOUTS or bit_order not in BIT_ORDERS:
            raise ValueError(f"LFQuantizer group_layout must be one of {sorted(GROUP_LAYOUTS)} and bit_order one of "
                             f"{list(BIT_ORDERS)}, got {group_layout!r}, {bit_order!r}")
        if dim <= 0 or bits_per_group <= 0 or dim % bits_per_group:
            raise ValueError(
                f"LFQuantizer needs dim to be a positive multiple of bits_per_group, got dim={dim}, "
                f"bits_per_group={bits_per_group}; choose e.g. bits_per_group={_largest_divisor(dim, 14)}."
            )
        if bits_per_group > 62:
            raise ValueError(f"bits_per_group={bits_per_group} does not fit int64 indices; use at most 62.")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        add_save_marker(self)

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def bits_per_token(self) -> float:
        return float(self.config.dim)

    @property
    def vocab_size(self) -> int:
        """Number of distinct ids at each index position (one position per group of k bits)."""
        return 2**self.config.bits_per_group

    @property
    def code_scale(self) -> float:
        """Magnitude of every code channel (1 here; subclasses such as BSQ scale codes onto a sphere)."""
        return 1.0

    def prequantize(self, z: torch.Tensor) -> torch.Tensor:
        """The differentiable map before rounding (identity): gradients of ``quantized`` equal its gradients."""
        return z

    def _groups(self, x: torch.Tensor) -> torch.Tensor:
        """(b, s, dim) -> (b, s, g, k): the channels of each sub-token, most significant bit first."""
        cfg = self.config
        groups = rearrange(x, GROUP_LAYOUTS[cfg.group_layout], k=cfg.bits_per_group)
        return groups.flip(-1) if cfg.bit_order == "lsb_first" else groups

    def _ungroup(self, groups: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_groups`."""
        cfg = self.config
        groups = groups.flip(-1) if cfg.bit_order == "lsb_first" else groups
        source, target = GROUP_LAYOUTS[cfg.group_layout].split(" -> ")
        return rearrange(groups, f"{target} -> {source}")

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        check_codes(z, self.dim, type(self).__name__)
        cfg = self.config
        pre = self.prequantize(z)
        codes = torch.where(pre > 0, 1.0, -1.0).to(pre.dtype) * self.code_scale
        quantized = codes + (pre - pre.detach())  # value exactly codes, gradient of prequantize
        # entropy over the codes {-scale, +scale}^k: logits 2 pre.c / T = 2 (scale pre).C / T, C in {-1, 1}^k
        groups = rearrange(self._groups(pre * self.code_scale), "b s g k -> (b s g) k")
        # in training the batch entropy covers the global batch of all processes
        sync = self.training and torch.is_grad_enabled()
        per_sample, batch = lfq_entropy_terms(groups, cfg.temperature, sync_processes=sync)
        entropy = per_sample - batch
        commitment = (pre - codes).pow(2).mean()
        aux = cfg.entropy_weight * entropy + cfg.commitment_weight * commitment
        losses = {"entropy": entropy, "per_sample_entropy": per_sample, "batch_entropy": batch, "commitment": commitment}
        indices = bits_to_indices(rearrange(self._groups(pre > 0), "b s g k -> b s (g k)"), cfg.bits_per_group)
        return QuantizerOutput(quantized, indices, aux, {n: v.detach() for n, v in losses.items()})

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, S, G) int64 -> (B, S, dim) codes in {-code_scale, +code_scale} (float32)."""
        k = self.config.bits_per_group
        check_indices(indices, (self.dim // k,), self.vocab_size, type(self).__name__)
        bits = rearrange(indices_to_bits(indices, k), "b s (g k) -> b s g k", k=k)
        return (self._ungroup(bits).float() * 2 - 1) * self.code_scale


def _largest_divisor(n: int, at_most: int) -> int:
    return max((d for d in range(1, min(n, at_most) + 1) if n % d == 0), default=1)


def factorize_indices(indices: torch.Tensor, bits: list[int]) -> tuple[torch.Tensor, ...]:
    """Split ids of sum(bits)-bit tokens into parts: part j holds the next ``bits[j]`` bits, least significant
    first (Open-MAGVIT2's AR stage: ``factorize_indices(ids, [6, 12])`` gives its (pre, post) ids)."""
    parts, shift = [], 0
    for width in bits:
        parts.append((indices >> shift) & ((1 << width) - 1))
        shift += width
    return tuple(parts)


def merge_factorized(parts: tuple[torch.Tensor, ...] | list[torch.Tensor], bits: list[int]) -> torch.Tensor:
    """Inverse of :func:`factorize_indices`: the full ids ``sum_j parts[j] << (bits[0] + ... + bits[j-1])``."""
    if len(parts) != len(bits):
        raise ValueError(f"got {len(parts)} parts of ids for {len(bits)} bit widths {list(bits)}; give one per width")
    shifts = [sum(bits[:j]) for j in range(len(bits))]
    return sum(part.long() << shift for part, shift in zip(parts, shifts))
