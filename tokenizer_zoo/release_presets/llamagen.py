"""LlamaGen's VQ image tokenizers (Sun et al. 2024, "Autoregressive Model Beats Diffusion: Llama for Scalable
Image Generation"; FoundationVision/LlamaGen, ``tokenizer/tokenizer_image/vq_model.py``).

A VQGAN-family CNN (our ``cnn`` encoder and decoder with LlamaGen's two switches: a ``latent_channels``
= 256 wide CNN with 1x1 ``quant_conv`` / ``post_quant_conv`` to the 8-dim codes, and self-attention at
the deepest level) around a 16384-entry codebook of dimension 8 looked up by cosine similarity
(our ``vq`` quantizer with ``distance="cosine"``: tokens and codebook rows are l2-normalised, as the
release's ``codebook_l2_norm=True``).

| preset        | release file (Hub: FoundationVision/LlamaGen) | layout              | tokens at 256 px | BPP    |
| llamagen_vq16 | vq_ds16_c2i.pt                               | ch 128 x [1,1,2,2,4] | 16 x 16 x 14 bits | 0.0547 |
| llamagen_vq8  | vq_ds8_c2i.pt ("LlamaGen-32")                | ch 128 x [1,2,2,4]   | 32 x 32 x 14 bits | 0.2188 |

Published parameter counts (LlamaGen's README, "Image tokenizers" table): 72M for vq_ds16_c2i.pt, 70M for
vq_ds8_c2i.pt; the presets have 71.9 M and 70.1 M (tests/convert/test_llamagen.py counts them).
"""

from __future__ import annotations

from tokenizer_zoo.presets import ComponentSpec, TokenizerPreset, register_preset

LLAMAGEN_REPO = "FoundationVision/LlamaGen"
RELEASE_FILES = {"llamagen_vq16": "vq_ds16_c2i.pt", "llamagen_vq8": "vq_ds8_c2i.pt"}
"""Preset -> file of the released weights in :data:`LLAMAGEN_REPO`."""


def llamagen_preset(name: str, *, image_size: int, block_out_channels: list[int], latent_channels: int = 256,
                    code_dim: int = 8, codebook_size: int = 16384, layers_per_block: int = 2,
                    mid_block_attention: bool = True, description: str = "") -> TokenizerPreset:
    """LlamaGen's VQModel at any size: ``block_out_channels`` = ch x ch_mult (ch_mult[0] = 1), ``latent_channels``
    = z_channels, ``layers_per_block`` = num_res_blocks (the decoder has one more per level, as diffusers' does)."""
    grid = image_size // 2 ** (len(block_out_channels) - 1)
    cnn = dict(image_size=image_size, block_out_channels=list(block_out_channels), layers_per_block=layers_per_block,
               norm_num_groups=32, code_dim=code_dim, code_length=grid**2, mid_block_attention=mid_block_attention,
               latent_channels=latent_channels, deepest_level_attention=True)
    return TokenizerPreset(name=name, image_size=image_size, description=description,
                           encoder=ComponentSpec("cnn", dict(cnn)),
                           quantizer=ComponentSpec("vq", dict(dim=code_dim, codebook_size=codebook_size,
                                                              distance="cosine")),
                           decoder=ComponentSpec("cnn", dict(cnn)))


@register_preset
def llamagen_vq16() -> TokenizerPreset:
    return llamagen_preset("llamagen_vq16", image_size=256, block_out_channels=[128, 128, 256, 256, 512],
                           description="LlamaGen VQ-16 (vq_ds16_c2i.pt): 16x16 tokens x 14 bits, 0.0547 BPP")


@register_preset
def llamagen_vq8() -> TokenizerPreset:
    return llamagen_preset("llamagen_vq8", image_size=256, block_out_channels=[128, 256, 256, 512],
                           description="LlamaGen VQ-8 (vq_ds8_c2i.pt, LlamaGen-32): 32x32 tokens x 14 bits, 0.219 BPP")
