"""FlowMo decoder: an MMDiT that predicts the rectified-flow velocity of an image given codes."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from tokenizer_zoo.layers import (MMDiTStack, OutputHead, TimestepEmbedder, check_images, patch_grid, patchify,
                                  unpatchify)
from tokenizer_zoo.registry import DECODERS


@DECODERS.register("flowmo")
class FlowMoDecoder(ModelMixin, ConfigMixin):
    """``forward(codes (B, S, d), x_t (B, C, H, W), t (B,), drop_code=None) -> velocity (B, C, H, W)``.

    x_t = (1 - t) x + t z, so the target velocity is z - x. Both streams are adaLN-modulated by
    vec = MLP(sinusoidal(1000 t)). The code input is Linear(d + 1, H) on ``concat([code, 1])``;
    the extra "present" channel lets the all-zero input mean "unconditional". ``drop_code`` (bool
    tensor (B,), or a Python bool for the whole batch) zeroes code and flag for the marked samples:
    use it for CFG dropout in training and for the unconditional branch of guidance.

    Output head (``output_norm``): by default ("once") ONE adaLN-modulated LayerNorm, then a
    linear readout to patch channels and unpatchify. The reference release applies the LayerNorm
    a second time after the modulation, LN(modulate(LN(x))), which removes the mean over channels
    and the overall scale that the modulation adds; ``output_norm="twice"`` computes exactly that,
    for checkpoints converted from the release (:mod:`tokenizer_zoo.convert.flowmo`).
    Other differences from the reference (parameters unused there): no code output head, and the
    last block's code stream has no query / output projection / MLP / post-attention modulation.

    Few-step students (recipes/flowmo_distill.py) switch on two extra inputs, each embedded like t
    and added to ``vec``: ``step_embed`` takes ``step_size`` = t - t_next (the step the sampler
    takes), ``guidance_embed`` takes ``guidance`` = the classifier-free guidance scale that one pass
    stands for. Each adds ``embed(value) - embed(neutral)`` (neutral: step size 0, scale 1) and its
    last layer starts at zero, so a student built from a teacher computes the teacher's velocity
    until it trains, and at the neutral values always ignores the switch. A teacher's config has
    both off; its weights load unchanged.
    """

    _supports_gradient_checkpointing = True
    is_generative = True

    @register_to_config
    def __init__(self, image_size: int = 256, patch_size: int = 4, hidden_size: int = 1152, depth: int = 16,
                 num_heads: int = 12, mlp_ratio: float = 4.0, code_length: int = 256, code_dim: int = 18,
                 in_channels: int = 3, qkv_bias: bool = True, rope_theta: float = 10_000.0,
                 rope_axes_dims: list[int] | None = None, time_embed_dim: int = 256, time_factor: float = 1000.0,
                 output_norm: str = "once", step_embed: bool = False, guidance_embed: bool = False):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} must be divisible by patch_size {patch_size}")
        if output_norm not in ("once", "twice"):
            raise ValueError(f"output_norm must be 'once' (ours) or 'twice' (the reference release), got {output_norm!r}")
        patch_channels = in_channels * patch_size**2
        self.time_embed = TimestepEmbedder(hidden_size, time_embed_dim, time_factor)
        # the students' switches: (embedder, neutral value), the embedder's output layer zero-initialised
        self.step_embedder = self._switch_embedder(step_embed, hidden_size, time_embed_dim, time_factor)
        self.guidance_embedder = self._switch_embedder(guidance_embed, hidden_size, time_embed_dim, time_factor)
        self.image_in = nn.Linear(patch_channels, hidden_size)
        self.code_in = nn.Linear(code_dim + 1, hidden_size)
        self.transformer = MMDiTStack(hidden_size, depth, num_heads, mlp_ratio, modulated=True, output_stream="image",
                                      qkv_bias=qkv_bias, rope_axes_dims=rope_axes_dims, rope_theta=rope_theta)
        self.image_out = OutputHead(hidden_size, patch_channels, modulated=True, norm_twice=output_norm == "twice")

    @staticmethod
    def _switch_embedder(on: bool, hidden_size: int, frequency_dim: int, time_factor: float) -> nn.Module | None:
        if not on:
            return None
        embedder = TimestepEmbedder(hidden_size, frequency_dim, time_factor)
        nn.init.zeros_(embedder.mlp[-1].weight)
        nn.init.zeros_(embedder.mlp[-1].bias)
        return embedder

    def check_inputs(self, codes: torch.Tensor, x_t: torch.Tensor | None, t, drop_code=None, step_size=None,
                     guidance=None) -> None:
        """Raise a clear error for inputs that :meth:`forward` cannot take.

        ``forward`` runs this in eager mode only; under ``torch.compile`` the traced graph skips it, so
        callers of a compiled decoder validate once, outside the compiled region (the pipeline does).
        """
        if x_t is None:
            raise ValueError("FlowMoDecoder is a diffusion decoder: pass x_t (B, C, H, W) and t (B,)")
        check_images(x_t, self.config.patch_size, self.config.in_channels, name="x_t")
        batch = x_t.shape[0]
        expected = (batch, self.config.code_length, self.config.code_dim)
        if not isinstance(codes, torch.Tensor) or codes.ndim != 3 or tuple(codes.shape) != expected:
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise ValueError(f"codes must have shape (B, code_length, code_dim) = {expected}, got {shape}; "
                             f"check the encoder/quantizer config matches the decoder's")
        if not codes.is_floating_point():
            raise TypeError(f"codes must be floating point, got {codes.dtype}; map indices to codes with "
                            f"quantizer.indices_to_codes first")
        if t is None:
            raise ValueError("FlowMoDecoder is a diffusion decoder: pass x_t and the noise level t (B,) in [0, 1]")
        t = torch.as_tensor(t)
        if not t.is_floating_point():
            raise TypeError(f"t must be floating point in [0, 1], got {t.dtype}")
        if t.shape not in ((), (batch,)):
            raise ValueError(f"t must have shape ({batch},) or be a scalar, got {tuple(t.shape)}")
        drop_shape = None if drop_code is None else tuple(torch.as_tensor(drop_code).shape)
        if drop_shape not in (None, (), (batch,)):
            raise ValueError(f"drop_code must be a bool or a bool tensor of shape ({batch},), got {drop_shape}")
        for name, value, switch in (("step_size", step_size, "step_embed"), ("guidance", guidance, "guidance_embed")):
            if value is not None and not self.config.get(switch, False):
                raise ValueError(f"this decoder takes no {name} ({switch} is off in its config); a few-step student "
                                 f"of recipes/flowmo_distill.py does")
            if value is not None and tuple(torch.as_tensor(value).shape) not in ((), (batch,)):
                raise ValueError(f"{name} must be a number or a tensor of shape ({batch},), "
                                 f"got {tuple(torch.as_tensor(value).shape)}")

    def code_condition(self, codes: torch.Tensor, drop_code: torch.Tensor | bool | None = None) -> torch.Tensor:
        """The code stream's input (B, S, d + 1): ``concat([codes, 1])``, all zero where ``drop_code``."""
        batch = codes.shape[0]
        code_input = torch.cat([codes, torch.ones_like(codes[..., :1])], dim=-1)
        if drop_code is None:
            return code_input
        keep = ~torch.as_tensor(drop_code, dtype=torch.bool, device=codes.device).expand(batch)
        return code_input * keep[:, None, None].to(code_input.dtype)

    def forward(self, codes: torch.Tensor, x_t: torch.Tensor | None = None, t: torch.Tensor | float | None = None,
                drop_code: torch.Tensor | bool | None = None, step_size: torch.Tensor | float | None = None,
                guidance: torch.Tensor | float | None = None) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            self.check_inputs(codes, x_t, t, drop_code, step_size, guidance)
        config = self.config
        batch, grid = x_t.shape[0], patch_grid(x_t, config.patch_size)
        vec = self.time_embed(torch.as_tensor(t, device=x_t.device).expand(batch))
        for embedder, value, neutral in ((self.step_embedder, step_size, 0.0), (self.guidance_embedder, guidance, 1.0)):
            if value is not None:
                both = torch.stack([torch.as_tensor(value, device=x_t.device, dtype=torch.float32).expand(batch),
                                    torch.full((batch,), neutral, device=x_t.device)])
                embedded, at_neutral = embedder(both.flatten()).unflatten(0, (2, batch))
                vec = vec + embedded - at_neutral
        code_input = self.code_condition(codes, drop_code)
        dtype = self.image_in.weight.dtype
        image = self.image_in(patchify(x_t, config.patch_size).to(dtype))
        image = self.transformer(self.code_in(code_input.to(dtype)), image, grid, vec)
        return unpatchify(self.image_out(image, vec), config.patch_size, *grid)
