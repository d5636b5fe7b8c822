"""Building blocks shared by the transformer encoders and decoders."""

from tokenizer_zoo.layers.attention import HeadRMSNorm, joint_attention, mup_attention_scale
from tokenizer_zoo.layers.heads import OutputHead
from tokenizer_zoo.layers.mmdit import FeedForward, MMDiTBlock, MMDiTStack, StreamLayers, TanhGELU, layer_norm
from tokenizer_zoo.layers.modulation import (IDENTITY, AdaLNModulation, ShiftScaleGate, TimestepEmbedder,
                                             sinusoidal_embedding)
from tokenizer_zoo.layers.patchify import check_images, patch_grid, patchify, unpatchify
from tokenizer_zoo.layers.rope import (RotaryAngles, RotaryEmbedding, apply_rope, default_axes_dims,
                                       flowmo_positions, validate_axes_dims)
from tokenizer_zoo.layers.weight_norm import ForcedWeightNorm

__all__ = [
    "IDENTITY", "AdaLNModulation", "FeedForward", "ForcedWeightNorm", "HeadRMSNorm", "MMDiTBlock", "MMDiTStack",
    "OutputHead", "RotaryAngles", "RotaryEmbedding", "ShiftScaleGate", "StreamLayers", "TanhGELU", "TimestepEmbedder",
    "apply_rope", "check_images", "default_axes_dims", "flowmo_positions", "joint_attention", "layer_norm",
    "mup_attention_scale", "patch_grid", "patchify", "sinusoidal_embedding", "unpatchify", "validate_axes_dims",
]
