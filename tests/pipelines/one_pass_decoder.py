"""A tiny one-pass (regression) decoder for testing TokenizerPipeline: linear codes -> pixels.

Registered as the decoder ``linear_test``, as a plugin would be: pipeline folders may only name registered classes."""

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange

from tokenizer_zoo.registry import DECODERS


@DECODERS.register("linear_test")
class LinearTestDecoder(ModelMixin, ConfigMixin):
    is_generative = False

    @register_to_config
    def __init__(self, image_size: int = 32, code_length: int = 16, code_dim: int = 18):
        super().__init__()
        self.proj = torch.nn.Linear(code_length * code_dim, 3 * image_size * image_size)

    def forward(self, codes):
        flat = self.proj(rearrange(codes, "b s d -> b (s d)"))
        return torch.tanh(rearrange(flat, "b (c h w) -> b c h w", c=3, h=self.config.image_size))
