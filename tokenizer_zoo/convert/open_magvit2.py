"""Open-MAGVIT2 (TencentARC/SEED-Voken) Lightning checkpoints -> a zoo tokenizer pipeline.

    tokenizer-zoo convert imagenet_256_L.ckpt -o open_magvit2_256 [--config imagenet_lfqgan_256_L.yaml]

The file is a Lightning checkpoint; only its ``state_dict`` is read: ``encoder.*`` and ``decoder.*``
(the raw weights) and their EMA shadows, stored by ``LitEma`` as ``"model_ema." + name.replace(".", "")``.
EMA is the default (the release's reconstruct and evaluate scripts, hence its published numbers, use
it); ``weights="raw"`` takes the raw ones (what its AR stage loads). Dropped as training-only: the
LPIPS and discriminator (``loss.*``), the discriminator's EMA (``model_ema.loss*``) and the EMA's
counters; the optimiser state is never read. LFQ has no parameters.

From the shapes: channels, channel_mult, num_res_blocks and the code dimension (= bits). From the
yaml (optional): the image size (``data...params.config.size``; 256 otherwise). The zoo's LFQ runs
with ``bit_order="lsb_first"`` and one group of all bits: the release's index is
sum_c [z_c > 0] 2^c, channel 0 least significant. Its AR stage's factorised (pre, post) ids are
:func:`~tokenizer_zoo.quantizers.lfq.factorize_indices` of these ids.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from tokenizer_zoo.decoders.open_magvit2 import OpenMagvit2Decoder
from tokenizer_zoo.encoders.open_magvit2 import OpenMagvit2Encoder
from tokenizer_zoo.quantizers.lfq import LFQuantizer

NAME = "open-magvit2"
EXPECTS = ("an Open-MAGVIT2 Lightning .ckpt: a state_dict with encoder.*, decoder.adaptive.* and model_ema.* "
           "tensors")
TRAINING_ONLY = {"loss.": "LPIPS and discriminator", "model_ema.loss": "discriminator EMA",
                 "model_ema.decay": "EMA counter", "model_ema.num_updates": "EMA counter"}
"""Prefixes of the training-only tensors that are dropped, and what they are."""
_RENAMES = ((r"^(encoder|decoder)\.mid_block\.", r"\1.mid."),
            (r"^decoder\.up\.(\d+)\.upsample\.conv1\.", r"decoder.up.\1.upsample.conv."),
            (r"^decoder\.", "decoder.trunk."))


def our_key(key: str) -> str:
    """The zoo's name (``encoder.*`` / ``decoder.*`` of the pipeline's components) of a release tensor."""
    for pattern, replacement in _RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def ema_key(key: str) -> str:
    """Where ``LitEma`` stores the EMA shadow of the parameter ``key``."""
    return "model_ema." + key.replace(".", "")


def sort_keys(keys) -> tuple[list[str], set[str], list[str], list[str]]:
    """(model keys, their EMA shadows present, dropped training-only keys, unknown keys) of a state dict."""
    keys = list(keys)
    model = [k for k in keys if k.startswith(("encoder.", "decoder."))]
    shadows = {ema_key(k) for k in model} & set(keys)
    dropped = [k for k in keys if k.startswith(tuple(TRAINING_ONLY))]
    unknown = sorted(set(keys) - set(model) - shadows - set(dropped))
    return model, shadows, dropped, unknown


def _count(state: dict[str, Any], pattern: str) -> int:
    return len({m.group(1) for k in state for m in [re.match(pattern, k)] if m})


def infer_config(state: dict[str, Any], image_size: int = 256) -> dict[str, Any]:
    """Constructor arguments of the encoder and decoder, from the tensor shapes (values or shapes of ``state``)."""
    shape = {key: tuple(getattr(value, "shape", value)) for key, value in state.items()}
    channels = shape["encoder.conv_in.weight"][0]
    levels = _count(shape, r"^encoder\.down\.(\d+)\.")
    mult = [shape[f"encoder.down.{i}.block.0.conv1.weight"][0] // channels for i in range(levels)]
    return dict(image_size=image_size, channels=channels, channel_mult=mult,
                num_res_blocks=_count(shape, r"^encoder\.down\.0\.block\.(\d+)\."),
                code_dim=shape["encoder.conv_out.weight"][0])


def image_size_of(tree: dict | None) -> int:
    """The training image size of a release yaml (``data.init_args.train.params.config.size``), else 256."""
    try:
        return int(tree["data"]["init_args"]["train"]["params"]["config"]["size"])
    except (KeyError, TypeError):
        return 256


def select_weights(state: dict[str, torch.Tensor], weights: str = "ema") -> dict[str, torch.Tensor]:
    """{zoo name: tensor} of the raw or EMA weights; raises ValueError saying what to pass instead."""
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    model, shadows, _, unknown = sort_keys(state)
    if unknown:
        raise ValueError(f"{len(unknown)} tensors of no known Open-MAGVIT2 part, e.g. {unknown[:3]}; "
                         f"is this an Open-MAGVIT2 tokenizer checkpoint?")
    if weights == "ema" and len(shadows) < len(model):
        raise ValueError(f"the checkpoint has EMA shadows for {len(shadows)} of {len(model)} tensors (model_ema.*); "
                         f"convert its raw weights with weights='raw'")
    return {our_key(k): state[ema_key(k) if weights == "ema" else k] for k in model}


def build_components(state: dict[str, torch.Tensor], image_size: int = 256, weights: str = "ema"):
    """(encoder, quantizer, decoder) with the checkpoint's weights loaded strictly."""
    tensors = select_weights(state, weights)
    kwargs = infer_config(state, image_size)
    encoder, decoder = OpenMagvit2Encoder(**kwargs), OpenMagvit2Decoder(**kwargs)
    quantizer = LFQuantizer(dim=kwargs["code_dim"], bits_per_group=kwargs["code_dim"], bit_order="lsb_first")
    for prefix, module in (("encoder.", encoder), ("decoder.", decoder)):
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
    return encoder.eval(), quantizer.eval(), decoder.eval()
