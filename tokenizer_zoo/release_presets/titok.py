"""TiTok's 1-D image tokenizers (Yu et al. 2024, "An Image is Worth 32 Tokens for Reconstruction and Generation";
bytedance/1d-tokenizer, ``modeling/titok.py``), the released two-stage VQ models.

A ViT encoder reading patches and ``code_length`` latent tokens (our ``titok`` encoder), a 4096 x 12 codebook
looked up by cosine similarity (our ``vq`` with ``distance="cosine"``: TiTok's ``use_l2_norm``), and the
two-stage decoder (our ``titok`` decoder: a ViT predicting logits over the 1024 MaskGiT-VQGAN codes, whose
softmax mixes that codebook for the MaskGiT-VQGAN pixel decoder).

| preset              | Hub repo (config.json + model.safetensors) | ViT (enc = dec) | tokens at 256 px | BPP     |
| titok_l32_imagenet  | yucornetto/tokenizer_titok_l32_imagenet    | large 1024/24/16 | 32 x 12 bits    | 0.00586 |
| titok_b64_imagenet  | yucornetto/tokenizer_titok_b64_imagenet    | base 768/12/12   | 64 x 12 bits    | 0.0117  |
| titok_s128_imagenet | yucornetto/tokenizer_titok_s128_imagenet   | small 512/8/8    | 128 x 12 bits   | 0.0234  |

641.05 M, 204.81 M and 83.67 M parameters with the pixel decoder: the counts of the release's own ``TiTok``
at its ``configs/infer/TiTok/titok_{l32,b64,s128}.yaml`` (tests/convert/test_titok.py).
"""

from __future__ import annotations

from tokenizer_zoo.encoders.titok import RELEASED_SIZES
from tokenizer_zoo.presets import ComponentSpec, TokenizerPreset, register_preset

RELEASE_REPOS = {f"titok_{size}_imagenet": f"yucornetto/tokenizer_titok_{size}_imagenet"
                 for size in ("l32", "b64", "s128")}
"""Preset -> Hub repo of the released folder (``config.json`` + ``model.safetensors``)."""


def titok_release_preset(name: str, size: str, code_length: int) -> TokenizerPreset:
    """A released TiTok tokenizer: ViT ``size`` (small / base / large) for encoder and decoder, patch 16, 256 px."""
    width, layers, heads = RELEASED_SIZES[size]
    vit = dict(image_size=256, patch_size=16, width=width, num_layers=layers, num_heads=heads,
               code_length=code_length, code_dim=12)
    return TokenizerPreset(name, 256, ComponentSpec("titok", dict(vit, input_range="unit", legacy_reshape=True)),
                           ComponentSpec("vq", dict(dim=12, codebook_size=4096, distance="cosine")),
                           ComponentSpec("titok", dict(vit, output_range="unit")),
                           description=f"TiTok (ByteDance) tokenizer_{name}: {code_length} tokens x 12 bits, "
                                       f"ViT-{size} encoder and decoder, MaskGiT-VQGAN pixel decoder")


@register_preset
def titok_l32_imagenet() -> TokenizerPreset:
    return titok_release_preset("titok_l32_imagenet", "large", 32)


@register_preset
def titok_b64_imagenet() -> TokenizerPreset:
    return titok_release_preset("titok_b64_imagenet", "base", 64)


@register_preset
def titok_s128_imagenet() -> TokenizerPreset:
    return titok_release_preset("titok_s128_imagenet", "small", 128)
