"""Open-MAGVIT2 (TencentARC/SEED-Voken) Lightning checkpoints -> a zoo :class:`TokenizerPipeline`.

    tokenizer-zoo convert imagenet_256_L.ckpt -o open_magvit2_256 [--config imagenet_lfqgan_256_L.yaml] [--weights raw]

Only the checkpoint's ``state_dict`` is read: ``encoder.*`` and ``decoder.*`` (the raw weights) and their
EMA shadows, which ``LitEma`` stores as ``"model_ema." + name.replace(".", "")``. EMA is the default (the
release's reconstruct and evaluate scripts, hence its published numbers, use it); ``weights="raw"`` takes
the raw ones (what its AR stage loads). Dropped as training-only: LPIPS and discriminator (``loss.*``),
the discriminator's EMA (``model_ema.loss*``) and the EMA's counters; the optimiser state is never read.
The set of weights not chosen is listed among the dropped keys too. LFQ has no parameters.

From the shapes: channels, channel_mult, num_res_blocks and the code dimension (= bits per token). From
the yaml (optional): the image size (``data...train.params.config.size``); without one, the size that
gives the released 16x16 tokens (256 px at 16x downsampling, 128 px for ``imagenet_128_L.ckpt``). The zoo's LFQ
runs with ``bit_order="lsb_first"`` and one group of all bits, which is the release's index
sum_c [z_c > 0] 2^c (channel 0 least significant). Its AR stage's factorised (pre, post) ids are
``factorize_indices(ids, factorized_bits)`` of these ids (:mod:`tokenizer_zoo.quantizers.lfq`).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from tokenizer_zoo.convert.keys import DroppedKeys, KeyRule, load_mapped, map_keys, record_dropped
from tokenizer_zoo.convert.reading import Checkpoint, config_of
from tokenizer_zoo.decoders.open_magvit2 import OpenMagvit2Decoder
from tokenizer_zoo.encoders.open_magvit2 import OpenMagvit2Encoder
from tokenizer_zoo.errors import ConversionError
from tokenizer_zoo.quantizers.lfq import LFQuantizer
from tokenizer_zoo.registry import PIPELINES
from tokenizer_zoo.release_presets.open_magvit2 import RELEASE_FILES, REPO

NAME = "open-magvit2"
EXPECTS = "an Open-MAGVIT2 Lightning .ckpt: a state_dict with encoder.*, decoder.adaptive.* and model_ema.* tensors"
WHAT = "an Open-MAGVIT2 tokenizer checkpoint"
RELEASES = {name: (REPO, filename) for name, filename in RELEASE_FILES.items()}
RULES = [KeyRule(r"encoder\.mid_block\.(.+)", r"encoder.mid.\1"),
         KeyRule(r"encoder\.(.+)", r"encoder.\1"),
         KeyRule(r"decoder\.mid_block\.(.+)", r"decoder.trunk.mid.\1"),
         KeyRule(r"decoder\.up\.(\d+)\.upsample\.conv1\.(.+)", r"decoder.trunk.up.\1.upsample.conv.\2"),
         KeyRule(r"decoder\.(.+)", r"decoder.trunk.\1")]
DROP = {"LPIPS and discriminator (training loss)": r"loss\..+", "discriminator EMA": r"model_ema\.loss.+",
        "EMA counters": r"model_ema\.(decay|num_updates)"}


def ema_key(key: str) -> str:
    """Where ``LitEma`` stores the EMA shadow of the parameter ``key``."""
    return "model_ema." + key.replace(".", "")


def detect(checkpoint: Checkpoint) -> bool:
    return any("encoder.conv_in.weight" in state and "decoder.adaptive.0.gamma.weight" in state
               for state in checkpoint.state_dicts.values())


def choose_weights(state: dict[str, torch.Tensor], weights: str, dropped: DroppedKeys,
                   name: str) -> dict[str, torch.Tensor]:
    """``state`` with the chosen weights under the release's own names; the other set goes to ``dropped``."""
    model = [key for key in state if key.startswith(("encoder.", "decoder."))]
    shadows = {key: ema_key(key) for key in model if ema_key(key) in state}
    if weights == "ema" and len(shadows) < len(model):
        raise ConversionError(f"{name}: has EMA weights (model_ema.*) for {len(shadows)} of {len(model)} tensors; "
                              "convert its raw weights with weights='raw' (--weights raw)")
    chosen = {key: state[shadows[key]] if weights == "ema" else state[key] for key in model}
    unused = model if weights == "ema" else list(shadows.values())
    reason = "raw weights (--weights raw converts these)" if weights == "ema" else "EMA weights (the default)"
    for key in unused:
        dropped.add(key, state[key].numel(), reason)
    skip = set(model) | set(shadows.values())
    return {**chosen, **{key: value for key, value in state.items() if key not in skip}}


def _count(keys, pattern: str) -> int:
    return len({m.group(1) for key in keys for m in [re.match(pattern, key)] if m})


def infer_config(shapes: dict[str, tuple], image_size: int | None = None) -> dict[str, Any]:
    """Constructor arguments of the encoder and decoder from the release's tensor shapes (key -> shape);
    ``image_size`` None: the size of a 16x16 token grid, as both released tokenizers have."""
    channels = shapes["encoder.conv_in.weight"][0]
    levels = _count(shapes, r"encoder\.down\.(\d+)\.")
    mult = [shapes[f"encoder.down.{i}.block.0.conv1.weight"][0] // channels for i in range(levels)]
    return dict(image_size=image_size or 16 * 2 ** (levels - 1), channels=channels, channel_mult=mult,
                num_res_blocks=_count(shapes, r"encoder\.down\.0\.block\.(\d+)\."),
                code_dim=shapes["encoder.conv_out.weight"][0])


def image_size_of(tree: dict | None) -> int | None:
    """The training image size of a release yaml (``data.init_args.train.params.config.size``), if it has one."""
    try:
        return int(tree["data"]["init_args"]["train"]["params"]["config"]["size"])
    except (KeyError, TypeError):
        return None


def load(checkpoint: Checkpoint, config=None, weights: str = "ema"):
    """A TokenizerPipeline from a read Open-MAGVIT2 checkpoint (in memory, nothing written)."""
    if weights not in ("ema", "raw"):
        raise ConversionError(f"weights={weights!r}: an Open-MAGVIT2 checkpoint holds 'ema' and 'raw' weights")
    name = checkpoint.name
    _, state = checkpoint.state_dict(("state_dict", ""), WHAT)
    tree, _ = config_of(checkpoint, config)
    dropped = DroppedKeys()
    parts = map_keys(choose_weights(state, weights, dropped, name), RULES, DROP, dropped, name, WHAT)
    kwargs = infer_config({key: tuple(value.shape) for key, value in state.items()}, image_size_of(tree))
    with torch.device("meta"):
        encoder, decoder = OpenMagvit2Encoder(**kwargs), OpenMagvit2Decoder(**kwargs)
    load_mapped(encoder, parts.get("encoder", {}), name, WHAT)
    load_mapped(decoder, parts.get("decoder", {}), name, WHAT)
    bits = kwargs["code_dim"]
    quantizer = LFQuantizer(dim=bits, bits_per_group=bits, bit_order="lsb_first").eval()
    pipe = PIPELINES.get("TokenizerPipeline")(encoder=encoder, quantizer=quantizer, decoder=decoder)
    pipe.info = {"preset": name if name in RELEASES else None, "weights": weights,
                 "source": f"Open-MAGVIT2 checkpoint {checkpoint.path.name}",
                 "dataset": "ImageNet-1K (the release's weights)" if name in RELEASES else
                 "unknown (a release checkpoint)"}
    record_dropped(pipe, dropped)
    return pipe
