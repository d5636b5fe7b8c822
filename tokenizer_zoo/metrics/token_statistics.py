"""Bit rate and codebook statistics of token ids, streamed through a histogram of the vocabulary."""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric

MAX_VOCAB_SIZE = 2**24


class TokenStatistics(Metric):
    """BPP, codebook usage, perplexity and entropy of the token ids seen so far (by all processes).

    vocab_size: distinct values of one index (``quantizer.vocab_size``; for LFQ-style quantizers
    whose tokens are G groups of k bits, one index is a group and vocab_size is 2^k). The
    histogram over all index values of all positions (and groups) is the metric's state, so memory
    is ``8 * vocab_size`` bytes; vocabularies above ``max_vocab_size`` are refused.
    bits_per_token: bits of one token position, i.e. of one (b, s) entry (``quantizer.bits_per_token``);
    None means ``log2(vocab_size)`` per index value, which is the same for LFQ, FSQ and VQ.

    ``update(indices, image_size)``: int indices (B, S) or (B, S, G) in [0, vocab_size) of B images
    of ``image_size = (H, W)`` pixels. ``compute()`` returns a dict of 0-dim float64 tensors:

    * ``bpp``: bits per pixel, ``tokens x bits_per_token / pixels`` over all images;
    * ``codebook_usage``: fraction of the vocabulary that occurred at least once;
    * ``entropy_bits``: Shannon entropy (base 2) of the empirical distribution of index values;
    * ``perplexity``: ``2 ** entropy_bits``, the effective number of equally used ids.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, vocab_size: int, bits_per_token: float | None = None, max_vocab_size: int = MAX_VOCAB_SIZE, **kwargs):
        super().__init__(**kwargs)
        if int(vocab_size) != vocab_size or vocab_size < 1:
            raise ValueError(f"TokenStatistics needs a positive integer vocab_size, got {vocab_size!r}.")
        if vocab_size > max_vocab_size:
            raise ValueError(
                f"TokenStatistics keeps a histogram of vocab_size={vocab_size} entries, more than max_vocab_size="
                f"{max_vocab_size}; raise max_vocab_size if {8 * vocab_size / 2**20:.0f} MiB per process is acceptable."
            )
        if bits_per_token is not None and not bits_per_token > 0:
            raise ValueError(f"TokenStatistics needs bits_per_token > 0 (or None), got {bits_per_token!r}.")
        self.vocab_size = int(vocab_size)
        self.bits_per_token = None if bits_per_token is None else float(bits_per_token)
        self.add_state("histogram", torch.zeros(self.vocab_size, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("bits", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pixels", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    @classmethod
    def for_quantizer(cls, quantizer, **kwargs) -> "TokenStatistics":
        """Statistics for the tokens of ``quantizer`` (uses its ``vocab_size`` and ``bits_per_token``)."""
        return cls(quantizer.vocab_size, quantizer.bits_per_token, **kwargs)

    def _check(self, indices: torch.Tensor, image_size) -> tuple[int, int]:
        who = type(self).__name__
        is_tensor = isinstance(indices, torch.Tensor)
        if not is_tensor or indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            kind = indices.dtype if is_tensor else type(indices).__name__
            raise TypeError(f"{who}.update expects integer token ids (e.g. int64), got {kind}; use the quantizer's indices.")
        if indices.ndim not in (2, 3):
            raise ValueError(f"{who}.update expects indices of shape (B, S) or (B, S, G), got shape {tuple(indices.shape)}.")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.vocab_size):
            raise ValueError(
                f"{who}.update got ids in [{int(indices.min())}, {int(indices.max())}] but vocab_size={self.vocab_size} "
                f"allows [0, {self.vocab_size - 1}]; for grouped (LFQ) ids vocab_size is 2**bits_per_group."
            )
        try:
            height, width = (int(side) for side in image_size)
        except (TypeError, ValueError):
            raise TypeError(f"{who}.update expects image_size=(H, W), got {image_size!r}.") from None
        if height < 1 or width < 1:
            raise ValueError(f"{who}.update expects a positive image_size=(H, W), got {tuple(image_size)}.")
        return height, width

    def update(self, indices: torch.Tensor, image_size: tuple[int, int]) -> None:
        height, width = self._check(indices, image_size)
        batch, tokens = indices.shape[:2]
        if self.bits_per_token is None:
            bits = indices.numel() * math.log2(self.vocab_size)
        else:
            bits = batch * tokens * self.bits_per_token
        self.histogram += torch.bincount(indices.reshape(-1), minlength=self.vocab_size).to(self.histogram.device)
        self.bits += bits
        self.pixels += batch * height * width

    def compute(self) -> dict[str, torch.Tensor]:
        counts = self.histogram.double()
        probabilities = counts / counts.sum()
        seen = probabilities[probabilities > 0]
        entropy = -(seen * torch.log2(seen)).sum()
        return {
            "bpp": self.bits / self.pixels,
            "codebook_usage": (self.histogram > 0).double().mean(),
            "entropy_bits": entropy,
            "perplexity": torch.exp2(entropy),
        }


class FileRate(Metric):
    """The bit rate a file codec (JPEG, WebP) reached: its files' sizes, headers included, over all images seen.

    ``update(file_bits, qualities, image_size)``: the bits of each image's file, the quality each was written at,
    and the images' ``(H, W)``. ``compute()``: ``bpp`` (all files' bits over all pixels) and ``mean_quality``.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("bits", "quality", "images", "pixels"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, file_bits: list[int], qualities: list[int], image_size: tuple[int, int]) -> None:
        self.bits += sum(file_bits)
        self.quality += sum(qualities)
        self.images += len(file_bits)
        self.pixels += len(file_bits) * image_size[0] * image_size[1]

    def compute(self) -> dict[str, torch.Tensor]:
        return {"bpp": self.bits / self.pixels, "mean_quality": self.quality / self.images}
