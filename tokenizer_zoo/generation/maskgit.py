"""MaskGiT (Chang et al., 2022) on the tokens of any tokenizer in the zoo, class-conditional.

A bidirectional transformer (a ``transformers`` BERT encoder) reads a class token followed by the
image's sub-tokens (:mod:`tokenizer_zoo.generation.sub_tokens`), some replaced by ``[MASK]``, and
predicts every masked sub-token at once.

* Training (:meth:`MaskGiT.masked_loss`): per image draw ``u ~ U(0, 1)``, mask
  ``ceil(cos(pi/2 * u) * L)`` random positions (at least one) and take the cross-entropy of the
  masked positions. With probability ``label_dropout`` the class is replaced by the null class,
  which is what classifier-free guidance needs.
* Decoding (:meth:`MaskGiT.generate`): start fully masked; at step ``i`` of ``N`` sample every
  masked position (``temperature``), score each sample by its log-probability plus Gumbel noise
  of scale ``choice_temperature * (1 - i / N)``, keep the most confident and mask again the
  ``masked_after_step[i]`` least confident of the new ones (the cosine schedule of
  :func:`masking_schedule`). After exactly ``N`` steps no position is masked.
* Guidance: ``logits = uncond + w * (cond - uncond)`` (``w = 1``: the conditional logits).

Axes: b batch, l = s * m sub-token positions, v sub-token values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from transformers import BertConfig, BertModel

from tokenizer_zoo.generation.sub_tokens import SubTokenSplit
from tokenizer_zoo.random_draws import draw


def cosine_mask_ratio(progress: torch.Tensor | float) -> torch.Tensor:
    """Fraction of positions masked at decoding progress ``r`` in [0, 1]: ``cos(pi/2 * r)``
    (1 = all masked at the start, 0 = none at the end)."""
    return torch.cos(torch.pi / 2 * torch.as_tensor(progress, dtype=torch.float64))


def masking_schedule(num_steps: int, seq_len: int) -> list[int]:
    """Positions still masked after each of ``num_steps`` decoding steps: ``floor(L cos(pi/2 i/N))``,
    adjusted so that every step reveals at least one position and the last step reveals the rest."""
    if not 1 <= num_steps <= seq_len:
        raise ValueError(f"num_steps must lie in [1, {seq_len}] (one position revealed per step at least), "
                         f"got {num_steps}")
    progress = torch.arange(1, num_steps + 1, dtype=torch.float64) / num_steps
    counts = [math.floor(seq_len * float(r)) for r in cosine_mask_ratio(progress)]
    counts[-1] = 0
    for i in range(num_steps):  # strictly decreasing from seq_len ...
        counts[i] = min(counts[i], (counts[i - 1] if i else seq_len) - 1)
    for i in range(num_steps - 1):  # ... and leaving one position per remaining step
        counts[i] = max(counts[i], num_steps - 1 - i)
    return counts


@dataclass
class MaskedLossOutput:
    loss: torch.Tensor
    logs: dict[str, torch.Tensor]


def _gumbel(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    return -torch.log((-torch.log(draw("uniform", shape, generator, device).clamp_min(1e-20))).clamp_min(1e-20))


class MaskGiT(ModelMixin, ConfigMixin):
    """Class-conditional masked token transformer over a tokenizer's tokens.

    Args:
        token_shape: shape of one image's token indices, ``[S]`` or ``[S, G]`` (as the tokenizer's
            quantizer returns them; a token file's ``token_shape``).
        index_vocab_size: values of one index (LFQ: ``2**bits_per_group``; FSQ/VQ: the codebook size).
        num_sub_tokens: sub-tokens per token (e.g. 2 for 18-bit LFQ tokens as 2 x 9 bits).
        num_classes: class labels ``0 .. num_classes - 1``; label ``num_classes`` is the null class.
        hidden_size, num_layers, num_heads, mlp_ratio, dropout: the BERT encoder.
        label_dropout: probability of training with the null class (classifier-free guidance).
    """

    @register_to_config
    def __init__(self, token_shape: list[int], index_vocab_size: int, num_sub_tokens: int = 1, num_classes: int = 10,
                 hidden_size: int = 256, num_layers: int = 4, num_heads: int = 8, mlp_ratio: float = 4.0,
                 dropout: float = 0.1, label_dropout: float = 0.1):
        super().__init__()
        if len(token_shape) not in (1, 2):
            raise ValueError(f"token_shape must be [S] or [S, G], got {token_shape}")
        self.split = SubTokenSplit(index_vocab_size, token_shape[1] if len(token_shape) == 2 else 1, num_sub_tokens)
        self.seq_len = token_shape[0] * num_sub_tokens
        self.sub_vocab_size = self.split.sub_vocab_size
        self.mask_id = self.sub_vocab_size
        self.null_label = num_classes
        # one embedding table: sub-token values, [MASK], then num_classes + 1 class tokens
        bert = BertConfig(vocab_size=self.sub_vocab_size + 1 + num_classes + 1, hidden_size=hidden_size,
                          num_hidden_layers=num_layers, num_attention_heads=num_heads,
                          intermediate_size=int(hidden_size * mlp_ratio), hidden_dropout_prob=dropout,
                          attention_probs_dropout_prob=dropout, max_position_embeddings=self.seq_len + 1,
                          type_vocab_size=1, pad_token_id=None)  # no padding: every id's embedding is trained
        self.transformer = BertModel(bert, add_pooling_layer=False)
        self.head = nn.Linear(hidden_size, self.sub_vocab_size)
        # sub-token position j takes radices[j] values; larger ids are never valid there
        radices = torch.tensor(self.split.radices).repeat(token_shape[0])
        self.register_buffer("invalid", torch.arange(self.sub_vocab_size)[None] >= radices[:, None], persistent=False)

    def forward(self, sub_tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits (b, l, v) of every position given sub-tokens (b, l) (``mask_id`` where masked) and
        class labels (b,) (``num_classes`` = null class). Values invalid at a position get ``-inf``."""
        if not torch.compiler.is_compiling():  # compiled graphs skip it: callers validate once
            self.check_inputs(sub_tokens, labels)
        class_ids = (self.mask_id + 1 + labels.long())[:, None]
        hidden = self.transformer(input_ids=torch.cat([class_ids, sub_tokens.long()], dim=1)).last_hidden_state
        logits = self.head(hidden[:, 1:])
        return logits.masked_fill(self.invalid, float("-inf"))

    def check_inputs(self, sub_tokens: torch.Tensor, labels: torch.Tensor) -> None:
        """Raise a clear error unless sub-tokens are (b, seq_len) and labels (b,)."""
        if sub_tokens.shape[1:] != (self.seq_len,):
            raise ValueError(f"expected sub-tokens (batch, {self.seq_len}), got {tuple(sub_tokens.shape)}")
        if labels.shape != sub_tokens.shape[:1]:
            raise ValueError(f"expected one label per sequence ({sub_tokens.shape[0]}), got {tuple(labels.shape)}")

    def check_labels(self, labels) -> torch.Tensor:
        """Class labels (ints, list or tensor) as int64 (b,) on the model's device; out of range raises."""
        labels = torch.as_tensor(labels, device=self.device).long().reshape(-1)
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.config.num_classes):
            raise ValueError(f"class labels must lie in [0, {self.config.num_classes}), got "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        return labels

    # --- training -----------------------------------------------------------------------------
    def masked_loss(self, sub_tokens: torch.Tensor, labels: torch.Tensor,
                    generator: torch.Generator | None = None) -> MaskedLossOutput:
        """Cross-entropy of the masked positions under a cosine-distributed masking ratio."""
        batch, device = sub_tokens.shape[0], sub_tokens.device
        ratio = cosine_mask_ratio(draw("uniform", batch, generator, device)).float().to(device)
        num_masked = (ratio * self.seq_len).ceil().clamp(1, self.seq_len)
        # random permutations
        ranks = draw("uniform", (batch, self.seq_len), generator, device).argsort(dim=1).argsort(dim=1)
        masked = ranks < num_masked[:, None]
        dropped = draw("uniform", batch, generator, device) < self.config.label_dropout
        labels = torch.where(dropped, torch.full_like(labels, self.null_label), labels.long())
        logits = self(sub_tokens.masked_fill(masked, self.mask_id), labels)
        loss = F.cross_entropy(logits[masked].float(), sub_tokens[masked].long())
        accuracy = (logits[masked].argmax(-1) == sub_tokens[masked]).float().mean()
        return MaskedLossOutput(loss, {"loss": loss.detach(), "masked_accuracy": accuracy,
                                       "mask_ratio": masked.float().mean()})

    # --- decoding -----------------------------------------------------------------------------
    def guided_logits(self, sub_tokens: torch.Tensor, labels: torch.Tensor, guidance_scale: float = 1.0) -> torch.Tensor:
        """``uncond + w * (cond - uncond)``, both passes in one batch; ``w = 1`` runs the conditional only."""
        if guidance_scale == 1.0:
            return self(sub_tokens, labels)
        both = self(torch.cat([sub_tokens, sub_tokens]), torch.cat([labels, torch.full_like(labels, self.null_label)]))
        cond, uncond = both.chunk(2)
        guided = uncond + guidance_scale * (cond - uncond)
        return guided.masked_fill(self.invalid, float("-inf"))  # -inf - -inf is nan at invalid values

    @torch.no_grad()
    def generate(self, labels, num_steps: int = 8, guidance_scale: float = 1.0, temperature: float = 1.0,
                 choice_temperature: float = 4.5, generator: torch.Generator | None = None,
                 callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Token indices (b, *token_shape) for class ``labels`` (b,) by iterative parallel decoding.

        ``temperature`` divides the logits before sampling (0 = argmax); ``choice_temperature``
        scales the Gumbel noise on the confidences that decide what is re-masked. ``callback(i,
        sub_tokens)`` sees the sequence after each step ``i`` (masked positions hold ``mask_id``).
        """
        labels = self.check_labels(labels)
        schedule = masking_schedule(num_steps, self.seq_len)
        tokens = torch.full((labels.shape[0], self.seq_len), self.mask_id, device=self.device)
        for step, still_masked in enumerate(schedule):
            logits = self.guided_logits(tokens, labels, guidance_scale).float()
            if temperature > 0:
                logits = logits / temperature
                sampled = (logits + _gumbel(logits.shape, generator, logits.device)).argmax(-1)
            else:
                sampled = logits.argmax(-1)
            unknown = tokens == self.mask_id
            sampled = torch.where(unknown, sampled, tokens)
            confidence = logits.log_softmax(-1).gather(-1, sampled[..., None])[..., 0]
            noise_scale = choice_temperature * (1 - (step + 1) / num_steps)
            confidence = confidence + noise_scale * _gumbel(confidence.shape, generator, confidence.device)
            confidence = confidence.masked_fill(~unknown, float("inf"))
            tokens = sampled
            if still_masked:
                remask = confidence.topk(still_masked, dim=1, largest=False).indices
                tokens = tokens.scatter(1, remask, self.mask_id)
            if callback is not None:
                callback(step, tokens)
        return self.split.merge(tokens, grouped=len(self.config.token_shape) == 2)
