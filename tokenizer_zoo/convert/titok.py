"""TiTok (bytedance/1d-tokenizer) Hub folders -> a zoo :class:`TokenizerPipeline`.

    tokenizer-zoo convert path/to/tokenizer_titok_l32_imagenet -o titok_l32   # the folder: config.json + weights

A release folder holds ``config.json`` (an OmegaConf dump: ``model.vq_model.*`` and
``dataset.preprocessing.crop_size``) and ``model.safetensors``: ``TiTok.state_dict()``, which has no
training-only tensors, so every key is mapped. The older ``tokenizer_titok_l32.bin`` (a ``torch.save`` of
the same state dict) reads too. Only the released two-stage (``finetune_decoder``) VQ models convert.

From the shapes: patch size, width, depth, latent tokens, token size, codebook size and the pixel
decoder's layout. From the config (the folder's ``config.json``, or ``config``): the image size and the
ViT size *names* (small / base / large), which give the number of heads; without one, the released
sizes are recognised by their width. A JSON with ``values.num_heads.value`` (the tiny fixture's
``tiny_config.json``) gives the heads of sizes the release has no name for.

Switches recorded for the release: encoder ``input_range="unit"`` and ``legacy_reshape=True``, decoder
``output_range="unit"``; the quantizer is the zoo's VQ with ``distance="cosine"`` (TiTok's
``use_l2_norm``, True in every released two-stage model).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from tokenizer_zoo.convert.keys import DroppedKeys, KeyRule, load_mapped, map_keys, record_dropped
from tokenizer_zoo.convert.reading import Checkpoint, config_of
from tokenizer_zoo.decoders.titok import TiTokDecoder
from tokenizer_zoo.encoders.titok import RELEASED_SIZES, TiTokEncoder
from tokenizer_zoo.errors import ConversionError
from tokenizer_zoo.quantizers.vq import VectorQuantizer
from tokenizer_zoo.registry import PIPELINES
from tokenizer_zoo.release_presets.titok import RELEASE_REPOS

NAME = "titok"
EXPECTS = ("a TiTok folder (config.json + model.safetensors) or state dict: latent_tokens, encoder.patch_embed.*, "
           "quantize.*, pixel_decoder.* tensors")
WHAT = "a TiTok two-stage VQ tokenizer"
RELEASES = {name: (repo, "model.safetensors") for name, repo in RELEASE_REPOS.items()}
_BLOCK = r"(encoder|decoder)\.transformer\.(\d+)\."
RULES = [KeyRule(r"latent_tokens", "encoder.latent_tokens"),
         KeyRule(_BLOCK + r"attn\.in_proj_(weight|bias)", r"\1.transformer.\2.qkv.\3"),
         KeyRule(_BLOCK + r"attn\.out_proj\.(.+)", r"\1.transformer.\2.proj.\3"),
         KeyRule(_BLOCK + r"mlp\.c_fc\.(.+)", r"\1.transformer.\2.mlp.0.\3"),
         KeyRule(_BLOCK + r"mlp\.c_proj\.(.+)", r"\1.transformer.\2.mlp.2.\3"),
         KeyRule(r"quantize\.embedding\.weight", "quantizer.codebook"),
         KeyRule(r"pixel_quantize\.embedding\.weight", "decoder.pixel_codebook"),
         KeyRule(r"pixel_decoder\.up\.(\d+)\.upsample_conv\.(.+)", r"decoder.pixel_decoder.up.\1.upsample.conv.\2"),
         KeyRule(r"pixel_decoder\.(.+)", r"decoder.pixel_decoder.\1"),
         KeyRule(r"(encoder|decoder)\.(.+)", r"\1.\2")]


def detect(checkpoint: Checkpoint) -> bool:
    return any("latent_tokens" in state and "encoder.patch_embed.weight" in state
               for state in checkpoint.state_dicts.values())


def _count(keys, pattern: str) -> int:
    return len({m.group(1) for key in keys for m in [re.match(pattern, key)] if m})


def _heads(trees: list[dict], side: str, width: int) -> int:
    """Attention heads of the encoder (``side="enc"``) or decoder: from a config.json's size name, a fixture
    JSON's ``values.num_heads.value``, or the released size of that width."""
    for tree in trees:
        size = tree.get("model", {}).get("vq_model", {}).get(f"vit_{side}_model_size")
        if size in RELEASED_SIZES:
            return RELEASED_SIZES[size][2]
        if "num_heads" in tree.get("values", {}):
            return int(tree["values"]["num_heads"]["value"])
    by_width = {w: heads for w, _, heads in RELEASED_SIZES.values()}
    if width not in by_width:
        raise ConversionError(f"the TiTok {side}oder's width {width} is none of the released sizes "
                              f"{RELEASED_SIZES}: give a config naming its size, or a JSON with values.num_heads.value")
    return by_width[width]


def _vit(shapes: dict[str, tuple], side: str, trees: list[dict], width: int) -> dict[str, Any]:
    return dict(width=width, num_layers=_count(shapes, rf"{side}oder\.transformer\.(\d+)\."),
                num_heads=_heads(trees, side, width),
                mlp_ratio=shapes[f"{side}oder.transformer.0.mlp.c_fc.weight"][0] / width)


def infer_config(shapes: dict[str, tuple], trees: list[dict] = ()) -> tuple[dict, dict, dict]:
    """(encoder, quantizer, decoder) constructor arguments from the release's shapes (key -> shape) and configs."""
    width, _, patch, _ = shapes["encoder.patch_embed.weight"]
    image_size = patch * math.isqrt(shapes["encoder.positional_embedding"][0] - 1)
    for tree in trees:
        image_size = int(tree.get("dataset", {}).get("preprocessing", {}).get("crop_size", image_size))
    codebook, code_dim = shapes["quantize.embedding.weight"]
    common = dict(image_size=image_size, code_length=shapes["latent_tokens"][0], code_dim=code_dim)
    encoder = dict(common, patch_size=patch, **_vit(shapes, "enc", trees, width), input_range="unit",
                   legacy_reshape=True)
    pixel_channels = shapes["pixel_decoder.conv_out.weight"][1]
    levels = _count(shapes, r"pixel_decoder\.up\.(\d+)\.")
    decoder = dict(common, patch_size=image_size // math.isqrt(shapes["decoder.positional_embedding"][0] - 1),
                   **_vit(shapes, "dec", trees, shapes["decoder.decoder_embed.weight"][0]),
                   pixel_codebook_size=shapes["pixel_quantize.embedding.weight"][0],
                   pixel_code_dim=shapes["pixel_quantize.embedding.weight"][1], pixel_channels=pixel_channels,
                   pixel_channel_mult=[shapes[f"pixel_decoder.up.{i}.block.0.conv1.weight"][0] // pixel_channels
                                       for i in range(levels)],
                   pixel_num_res_blocks=_count(shapes, r"pixel_decoder\.up\.0\.block\.(\d+)\."),
                   out_channels=shapes["pixel_decoder.conv_out.weight"][0], output_range="unit")
    return encoder, dict(dim=code_dim, codebook_size=codebook, distance="cosine"), decoder


def load(checkpoint: Checkpoint, config=None, weights: str = "ema"):
    """A TokenizerPipeline from a read TiTok release (in memory, nothing written). A TiTok release holds one set
    of weights, so ``weights`` other than the default is an error."""
    name = checkpoint.name
    if weights != "ema":
        raise ConversionError(f"{name}: a TiTok release holds one set of weights (no EMA / raw pair); leave weights "
                              "at its default")
    _, state = checkpoint.state_dict(("",), WHAT)
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    if "pixel_decoder.conv_in.weight" not in shapes or "quantize.embedding.weight" not in shapes:
        raise ConversionError(f"{name}: not {WHAT}: it has no pixel_decoder.* / quantize.* tensors (a stage-1 or "
                              "VAE TiTok); only the released two-stage VQ tokenizers convert")
    given, _ = config_of(checkpoint, config)
    trees = [tree for tree in (given, checkpoint.config) if tree]
    dropped = DroppedKeys()
    parts = map_keys(state, RULES, {}, dropped, name, WHAT)
    enc, quant, dec = infer_config(shapes, trees)
    with torch.device("meta"):
        encoder, decoder = TiTokEncoder(**enc), TiTokDecoder(**dec)
    quantizer = VectorQuantizer(**quant)
    for module, part in ((encoder, "encoder"), (quantizer, "quantizer"), (decoder, "decoder")):
        load_mapped(module, parts.get(part, {}), name, WHAT)
    pipe = PIPELINES.get("TokenizerPipeline")(encoder=encoder, quantizer=quantizer, decoder=decoder)
    pipe.info = {"preset": name if name in RELEASES else None, "weights": "the release's only set",
                 "source": f"TiTok release {checkpoint.path.name}",
                 "dataset": "ImageNet-1K (the release's weights)" if name in RELEASES else
                 "unknown (a release checkpoint)"}
    record_dropped(pipe, dropped)
    return pipe
