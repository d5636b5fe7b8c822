"""TiTok (bytedance/1d-tokenizer) Hub folders -> a zoo tokenizer pipeline.

    tokenizer-zoo convert path/to/tokenizer_titok_l32_imagenet -o titok_l32   # the folder: config.json + weights

A release folder holds ``config.json`` (an OmegaConf dump: ``model.vq_model.*`` and
``dataset.preprocessing.crop_size``) and ``model.safetensors``: ``TiTok.state_dict()`` with no
training-only tensors, so every key is mapped. The older ``tokenizer_titok_l32.bin`` (a
``torch.save`` of the same state dict) reads too.

From the shapes: patch size, width, depth, latent tokens, token size, codebook size, the pixel
decoder's layout; from the config (if given): the image size and the ViT size *names*
(small / base / large), which give the number of heads; without one, the released sizes are
recognised by their width. The fixture's ``tiny_config.json`` gives ``values.num_heads.value``.

Switches recorded for the release: encoder ``input_range="unit"`` and ``legacy_reshape=True``,
decoder ``output_range="unit"``; the quantizer is the zoo's VQ with ``distance="cosine"``
(TiTok's ``use_l2_norm``, True in every released two-stage model).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from tokenizer_zoo.decoders.titok import TiTokDecoder
from tokenizer_zoo.encoders.titok import TiTokEncoder
from tokenizer_zoo.quantizers.vq import VectorQuantizer

NAME = "titok"
EXPECTS = ("a TiTok folder (config.json + model.safetensors) or state dict: latent_tokens, encoder.*, quantize.*, "
           "decoder.ffn.*, pixel_decoder.* tensors")
SIZES = {"small": (512, 8, 8), "base": (768, 12, 12), "large": (1024, 24, 16)}
"""The release's ViT size names -> (width, num_layers, num_heads)."""
_RENAMES = ((r"^latent_tokens$", "encoder.latent_tokens"),
            (r"\.attn\.in_proj_(weight|bias)$", r".qkv.\1"),
            (r"\.attn\.out_proj\.", ".proj."),
            (r"\.mlp\.c_fc\.", ".mlp.0."),
            (r"\.mlp\.c_proj\.", ".mlp.2."),
            (r"^quantize\.embedding\.weight$", "quantizer.codebook"),
            (r"^pixel_quantize\.embedding\.weight$", "decoder.pixel_codebook"),
            (r"\.upsample_conv\.", ".upsample.conv."),
            (r"^pixel_decoder\.", "decoder.pixel_decoder."))


def our_key(key: str) -> str:
    """The zoo's name (``encoder.*`` / ``quantizer.*`` / ``decoder.*``) of a release tensor."""
    for pattern, replacement in _RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def _count(shape: dict[str, tuple], pattern: str) -> int:
    return len({m.group(1) for k in shape for m in [re.match(pattern, k)] if m})


def _heads(trees: list[dict], side: str, width: int) -> int:
    """Attention heads of the encoder (``side="enc"``) or decoder: from the size name of a config.json, the
    ``num_heads`` of the fixture's tiny_config.json, or the released size of that width."""
    for tree in trees:
        name = tree.get("model", {}).get("vq_model", {}).get(f"vit_{side}_model_size")
        if name in SIZES:
            return SIZES[name][2]
        if "num_heads" in tree.get("values", {}):
            return int(tree["values"]["num_heads"]["value"])
    by_width = {w: heads for w, _, heads in SIZES.values()}
    if width not in by_width:
        raise ValueError(f"the {side}oder's width {width} is none of the released sizes {SIZES}; pass the config "
                         f"that names its size, or a JSON giving values.num_heads.value")
    return by_width[width]


def infer_config(state: dict[str, Any], trees: list[dict] = ()) -> tuple[dict, dict, dict]:
    """(encoder, quantizer, decoder) constructor arguments from the tensor shapes and the configs ``trees``."""
    shape = {key: tuple(getattr(value, "shape", value)) for key, value in state.items()}
    width, _, patch, _ = shape["encoder.patch_embed.weight"]
    grid = math.isqrt(shape["encoder.positional_embedding"][0] - 1)
    codebook, code_dim = shape["quantize.embedding.weight"]
    code_length = shape["latent_tokens"][0]
    image_size = patch * grid
    for tree in trees:
        image_size = int(tree.get("dataset", {}).get("preprocessing", {}).get("crop_size", image_size))
    encoder = dict(image_size=image_size, patch_size=patch, width=width,
                   num_layers=_count(shape, r"^encoder\.transformer\.(\d+)\."), num_heads=_heads(trees, "enc", width),
                   mlp_ratio=shape["encoder.transformer.0.mlp.c_fc.weight"][0] / width, code_length=code_length,
                   code_dim=code_dim, input_range="unit", legacy_reshape=True)
    dec_width = shape["decoder.decoder_embed.weight"][0]
    pixel_channels = shape["pixel_decoder.conv_out.weight"][1]
    levels = _count(shape, r"^pixel_decoder\.up\.(\d+)\.")
    decoder = dict(image_size=image_size, patch_size=image_size // math.isqrt(shape["decoder.positional_embedding"][0] - 1),
                   width=dec_width, num_layers=_count(shape, r"^decoder\.transformer\.(\d+)\."),
                   num_heads=_heads(trees, "dec", dec_width),
                   mlp_ratio=shape["decoder.transformer.0.mlp.c_fc.weight"][0] / dec_width, code_length=code_length,
                   code_dim=code_dim, pixel_codebook_size=shape["pixel_quantize.embedding.weight"][0],
                   pixel_code_dim=shape["pixel_quantize.embedding.weight"][1], pixel_channels=pixel_channels,
                   pixel_channel_mult=[shape[f"pixel_decoder.up.{i}.block.0.conv1.weight"][0] // pixel_channels
                                       for i in range(levels)],
                   pixel_num_res_blocks=_count(shape, r"^pixel_decoder\.up\.0\.block\.(\d+)\."),
                   out_channels=shape["pixel_decoder.conv_out.weight"][0], output_range="unit")
    return encoder, dict(dim=code_dim, codebook_size=codebook, distance="cosine"), decoder


def build_components(state: dict[str, torch.Tensor], trees: list[dict] = ()):
    """(encoder, quantizer, decoder) with the release's weights loaded strictly (every key mapped)."""
    enc, quant, dec = infer_config(state, trees)
    parts = {"encoder": TiTokEncoder(**enc), "quantizer": VectorQuantizer(**quant), "decoder": TiTokDecoder(**dec)}
    mapped = {our_key(k): v for k, v in state.items()}
    for name, module in parts.items():
        prefix = name + "."
        module.load_state_dict({k[len(prefix):]: v for k, v in mapped.items() if k.startswith(prefix)}, strict=True)
        module.eval()
    return parts["encoder"], parts["quantizer"], parts["decoder"]
