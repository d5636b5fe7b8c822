"""LlamaGen's VQ tokenizer checkpoints (``vq_ds16_c2i.pt``, ``vq_ds8_c2i.pt``) -> :class:`TokenizerPipeline`.

    pipe = load_release("vq_ds8_c2i.pt")                              # 256 px, LlamaGen-32
    pipe = load_release("llamagen_vq16")                               # fetched from FoundationVision/LlamaGen
    tokenizer-zoo convert vq_ds8_c2i_tiny.pt --config config.json -o FOLDER   # a 32 px model

A release file is ``torch.save({"model": state_dict})`` (training files add ``"ema"``, ``"args"``
-- an ``argparse.Namespace``, admitted as the one Python type besides tensors -- ``"optimizer"``,
``"discriminator"``, ...; only ``"ema"`` / ``"model"`` are read). The architecture comes from the
tensor shapes: ch and ch_mult from the ResNet widths of each level, num_res_blocks from their
count, z_channels from ``encoder.conv_out``, the codebook from ``quantize.embedding.weight``. What
no shape tells comes from the release's code, fixed for both published models: GroupNorm of 32
groups with eps 1e-6, swish, single-head attention at the deepest level and in the middle, right and
bottom padding before each stride-2 convolution, nearest upsampling, the l2-normalised codebook
lookup. The image size is the config's ``image_size`` (default 256, the size both were trained at).

Where LlamaGen's VQModel and our parts compute the same thing under other names: the ``cnn``
encoder and decoder are diffusers' VAE Encoder / Decoder (their ResNet, attention, padding and
upsampling are LlamaGen's), with two recorded switches: ``latent_channels`` (z_channels, then the
1x1 quant_conv / post_quant_conv) and ``deepest_level_attention``. The ``vq`` quantizer with
``distance="cosine"`` normalises tokens and codebook rows and takes the nearest code by cosine,
which is LlamaGen's argmin of ``|z|^2 + |e|^2 - 2 z.e`` over unit vectors; its eval output is the
normalised codebook row, as the release's ``decode_code`` uses. Token ids are (batch, row, column)
in raster order, as the release's ``indices.view(B, h * w)``. Dropped: ``quantize.codebook_used``,
a 65536-long training-time usage ring buffer.
"""

from __future__ import annotations

import argparse
import re

import torch

from tokenizer_zoo.convert.keys import DroppedKeys, KeyRule, load_mapped, map_keys, record_dropped, squeeze_1x1
from tokenizer_zoo.convert.reading import Checkpoint, config_of
from tokenizer_zoo.errors import ConversionError
from tokenizer_zoo.registry import PIPELINES

NAME = "llamagen"
EXPECTS = ("a LlamaGen VQ .pt: a dict with model (or ema), or a bare state dict, holding quantize.embedding.weight "
           "and encoder.conv_blocks.*")
SAFE_GLOBALS = (argparse.Namespace,)
"""LlamaGen's training script saves its arguments under ``"args"`` as an ``argparse.Namespace``."""
WEIGHTS = {"ema": ("ema", "model", ""), "raw": ("model", "")}
"""The state dicts read for each choice of weights, first found first (a released file holds only ``model``;
"" is a bare state dict, such as a safetensors re-save)."""
DEFAULT_IMAGE_SIZE = 256
WHAT = "a LlamaGen VQ checkpoint"


def _releases() -> dict[str, tuple[str, str]]:
    from tokenizer_zoo.release_presets.llamagen import LLAMAGEN_REPO, RELEASE_FILES

    return {name: (LLAMAGEN_REPO, filename) for name, filename in RELEASE_FILES.items()}


RELEASES = _releases()


def detect(checkpoint: Checkpoint) -> bool:
    states = checkpoint.state_dicts
    return any(key in states and "quantize.embedding.weight" in states[key]
               and "encoder.conv_blocks.0.res.0.conv1.weight" in states[key] for key in WEIGHTS["ema"])


# --- key mapping -------------------------------------------------------------------------------
_ATTENTION = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def _side_rules(side: str, blocks: str, resample: str) -> list[KeyRule]:
    """LlamaGen's ``encoder.`` / ``decoder.`` keys -> diffusers' Encoder / Decoder inside our cnn component."""
    ours = f"{side}.{side}"
    rules = [KeyRule(rf"{side}\.conv_in\.(weight|bias)", rf"{ours}.conv_in.\1"),
             KeyRule(rf"{side}\.norm_out\.(weight|bias)", rf"{ours}.conv_norm_out.\1"),
             KeyRule(rf"{side}\.conv_out\.(weight|bias)", rf"{ours}.conv_out.\1"),
             KeyRule(rf"{side}\.mid\.0\.(.+)", rf"{ours}.mid_block.resnets.0.\1"),
             KeyRule(rf"{side}\.mid\.2\.(.+)", rf"{ours}.mid_block.resnets.1.\1"),
             KeyRule(rf"{side}\.conv_blocks\.(\d+)\.res\.(\d+)\.nin_shortcut\.(weight|bias)",
                     rf"{ours}.{blocks}.\1.resnets.\2.conv_shortcut.\3"),
             KeyRule(rf"{side}\.conv_blocks\.(\d+)\.res\.(\d+)\.((norm|conv)[12]\.(weight|bias))",
                     rf"{ours}.{blocks}.\1.resnets.\2.\3"),
             KeyRule(rf"{side}\.conv_blocks\.(\d+)\.{resample}\.conv\.(weight|bias)",
                     rf"{ours}.{blocks}.\1.{resample}rs.0.conv.\2")]
    for theirs, mine in _ATTENTION.items():
        rules += [KeyRule(rf"{side}\.mid\.1\.{theirs}\.(weight|bias)", rf"{ours}.mid_block.attentions.0.{mine}.\1",
                          squeeze_1x1),
                  KeyRule(rf"{side}\.conv_blocks\.(\d+)\.attn\.(\d+)\.{theirs}\.(weight|bias)",
                          rf"{ours}.{blocks}.\1.attentions.\2.{mine}.\3", squeeze_1x1)]
    return rules


RULES = [*_side_rules("encoder", "down_blocks", "downsample"), *_side_rules("decoder", "up_blocks", "upsample"),
         KeyRule(r"quant_conv\.(weight|bias)", r"encoder.quant_conv.\1"),
         KeyRule(r"post_quant_conv\.(weight|bias)", r"decoder.post_quant_conv.\1"),
         KeyRule(r"quantize\.embedding\.weight", "quantizer.codebook")]
DROP = {"training-only codebook usage ring buffer": r"quantize\.codebook_used"}


# --- architecture from shapes ------------------------------------------------------------------
def _shape(state: dict, key: str, name: str) -> tuple[int, ...]:
    if key not in state:
        raise ConversionError(f"{name}: not {WHAT}: it has no {key}")
    return tuple(state[key].shape)


def _levels(state: dict, side: str, name: str) -> list[int]:
    """Widths of the ResNet blocks of each level of ``side``, in the file's level order."""
    found = {int(m.group(1)) for key in state for m in [re.match(rf"{side}\.conv_blocks\.(\d+)\.", key)] if m}
    if not found or found != set(range(len(found))):
        raise ConversionError(f"{name}: not {WHAT}: {side}.conv_blocks.* are missing or not numbered 0..L-1")
    return [_shape(state, f"{side}.conv_blocks.{i}.res.0.conv1.weight", name)[0] for i in range(len(found))]


def _count(state: dict, prefix: str) -> int:
    return len({m.group(1) for key in state for m in [re.match(rf"{re.escape(prefix)}\.(\d+)\.", key)] if m})


def infer_architecture(state: dict, image_size: int, name: str) -> dict:
    """Keyword arguments of :func:`tokenizer_zoo.release_presets.llamagen.llamagen_preset` from the file's shapes."""
    codebook_size, code_dim = _shape(state, "quantize.embedding.weight", name)
    latent_channels = _shape(state, "encoder.conv_out.weight", name)[0]
    ch = _shape(state, "encoder.conv_in.weight", name)[0]
    widths = _levels(state, "encoder", name)
    decoder_widths = _levels(state, "decoder", name)[::-1]  # decoder.conv_blocks.0 is the deepest level
    layers = _count(state, "encoder.conv_blocks.0.res")
    deepest = len(widths) - 1
    checks = {
        "its decoder's level widths mirror the encoder's": decoder_widths == widths,
        "its first level keeps the stem's width (ch_mult[0] = 1)": widths[0] == ch,
        "its decoder has one more ResNet block per level": _count(state, "decoder.conv_blocks.0.res") == layers + 1,
        "quant_conv maps z_channels to the codebook dim":
            _shape(state, "quant_conv.weight", name) == (code_dim, latent_channels, 1, 1),
        "self-attention sits at the deepest level only":
            {_count(state, f"encoder.conv_blocks.{i}.attn") for i in range(deepest)} <= {0}
            and _count(state, f"encoder.conv_blocks.{deepest}.attn") == layers,
    }
    failed = [what for what, ok in checks.items() if not ok]
    if failed:
        raise ConversionError(f"{name}: not {WHAT} of the released layout: not true that {failed[0]}")
    factor = 2 ** deepest
    if image_size % factor:
        raise ConversionError(f"{name}: image_size {image_size} is not a multiple of the model's downsampling "
                              f"factor {factor}; give a config with another image_size")
    return dict(image_size=image_size, block_out_channels=widths, latent_channels=latent_channels,
                code_dim=code_dim, codebook_size=codebook_size, layers_per_block=layers,
                mid_block_attention="encoder.mid.1.q.weight" in state)


def _preset_named(kwargs: dict, build) -> str | None:
    """The release preset whose architecture ``kwargs`` builds, if any."""
    from tokenizer_zoo.presets import get_preset

    def parts(spec):
        return spec.image_size, spec.encoder, spec.quantizer, spec.decoder

    found = parts(build("?", **kwargs))
    return next((name for name in RELEASES if parts(get_preset(name)) == found), None)


def load(checkpoint: Checkpoint, config=None, weights: str = "ema"):
    """A TokenizerPipeline (cnn encoder, cosine vq, cnn decoder) from a read LlamaGen checkpoint."""
    from tokenizer_zoo.presets import build_tokenizer
    from tokenizer_zoo.release_presets.llamagen import llamagen_preset

    if weights not in WEIGHTS:
        raise ConversionError(f"weights={weights!r}: choose 'ema' or 'raw'")
    tree, _ = config_of(checkpoint, config)
    image_size = int((tree or {}).get("image_size", DEFAULT_IMAGE_SIZE))
    key, state = checkpoint.state_dict(WEIGHTS[weights], WHAT)
    kwargs = infer_architecture(state, image_size, checkpoint.name)
    dropped = DroppedKeys()
    mapped = map_keys(state, RULES, DROP, dropped, checkpoint.name, WHAT)
    preset = _preset_named(kwargs, llamagen_preset)
    with torch.device("meta"):
        tokenizer = build_tokenizer(llamagen_preset(preset or "llamagen", **kwargs))
    tokenizer.quantizer.to_empty(device="cpu").reset_usage()  # its usage counter is no state-dict entry
    for part in ("encoder", "quantizer", "decoder"):
        load_mapped(getattr(tokenizer, part), mapped.get(part, {}), checkpoint.name, WHAT)
    pipe = PIPELINES.get("TokenizerPipeline")(encoder=tokenizer.encoder, quantizer=tokenizer.quantizer,
                                              decoder=tokenizer.decoder)
    pipe.info = {"preset": preset, "source": f"LlamaGen VQ release checkpoint {checkpoint.path.name}",
                 "weights": key, "dataset": "ImageNet-1K train (LlamaGen's weights)" if preset else "unknown"}
    record_dropped(pipe, dropped)
    return pipe
