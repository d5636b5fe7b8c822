"""Checkpoints of the FlowMo reference release -> :class:`FlowMoPipeline`.

    pipe = FlowMoPipeline.from_single_file("flowmo_lo")                 # the paper's weights, via the Hub
    pipe = FlowMoPipeline.from_single_file("run/00200000.pth", config="run/config.yaml")
    tokenizer-zoo convert ORIGINAL.pth [--config ORIGINAL.yaml] -o FOLDER

A release checkpoint is a ``torch.save`` dict with ``model_ema_state_dict`` (used by default),
``model_state_dict`` and ``total_steps``. It is read with ``torch.load(weights_only=True)`` only:
a file that needs full unpickling is refused, since unpickling can run arbitrary code.

What the file tells, from tensor shapes: widths, depths, heads (from the QK-norm size), MLP ratio,
patch size, code dim, qkv bias. What only the release's yaml tells (otherwise the release's base
config is assumed, :data:`RELEASE_DEFAULTS`): image size, code length, the LFQ group size
(``codebook_size_for_entropy``), loss weights, which state dict to use, and the sampler: schedule
``pow_p`` (our ``rho = 1/p``), steps, guidance scale and the guidance interval, which the release
writes as EDM noise levels sigma and maps to flow time by t = sigma / (1 + sigma).

Where our FlowMo deliberately differs from the release, the converter sets the switch that makes
it compute what the release computes (all recorded in the saved configs):

* decoder ``output_norm="twice"``: the release's output head applies its LayerNorm again after
  the adaLN modulation;
* quantizer ``group_layout="interleaved"``, ``bit_order="lsb_first"``: the release's sub-tokens
  are channels g, g + G, ... with the first channel as least significant bit (same codes, other
  indices and entropy grouping);
* parameters the release allocates but never uses are dropped (:func:`unused_parameters` lists
  them; the conversion prints their names and count): the encoder's code-input weight (it
  multiplies zeros; only its bias is kept), its time embedding, block
  modulations and adaLN of its code head, both models' unused output heads, and the outputs of
  the stream nobody reads in the last block (its query rows, query norm, projection, MLP and, in
  the decoder, the modulation rows after shift and scale).

Same in both, so no switch: attention scale 8/head_dim (the release applies it whatever
``enable_mup`` says, since ``build_model`` assigns that flag to a local variable), RoPE axes
[hd/8, 7hd/16, 7hd/16], and the muP readout, whose width multiplier is 1 because the release's
base shapes are the model's own.
"""

from __future__ import annotations

import ast
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from tokenizer_zoo.convert.keys import DroppedKeys, record_dropped, unexpected_keys
from tokenizer_zoo.convert.reading import Checkpoint, config_of, read_checkpoint, resolve_source
from tokenizer_zoo.errors import ConversionError
from tokenizer_zoo.registry import PIPELINES

NAME = "flowmo"
EXPECTS = ("a FlowMo release .pth: a dict with model_ema_state_dict / model_state_dict holding encoder.img_in.weight, "
           "encoder.double_blocks.*")
RELEASE_REPO = "ksarge/FlowMo"
RELEASE_FILES = {"flowmo_lo": "flowmo_lo.pth", "flowmo_hi": "flowmo_hi.pth"}
"""Preset name -> file of the paper's weights in :data:`RELEASE_REPO`."""
RELEASES = {name: (RELEASE_REPO, filename) for name, filename in RELEASE_FILES.items()}

RELEASE_DEFAULTS = {"image_size": 256, "code_length": 256, "state_dict_key": "model_ema_state_dict",
                    "quantization_type": "lfq", "entropy_loss_weight": 0.0025, "commit_loss_weight": 0.000625,
                    "sample_steps": 25, "schedule": "pow_0.25", "cfg": 1.5, "cfg_interval": "(.17,1.02)"}
"""The release's base config (``flowmo/configs/base.yaml``): used for whatever no yaml is given for."""

RELEASE_BITS_PER_GROUP = {18: 9, 56: 14}
"""``codebook_size_for_entropy`` of the paper's models by code dim (FlowMo-Lo, FlowMo-Hi)."""

LFQ_TEMPERATURE = 0.1  # fixed in the release's quantizer
STATE_DICT_KEYS = ("model_ema_state_dict", "model_state_dict")
WEIGHTS = {"ema": "model_ema_state_dict", "raw": "model_state_dict"}
UNUSED = "allocated by the release but never used"


def detect(checkpoint: Checkpoint) -> bool:
    return any("encoder.img_in.weight" in state and "decoder.img_in.weight" in state
               for state in checkpoint.state_dicts.values())


def release_state_dict(checkpoint: Checkpoint, state_dict_key: str) -> tuple[dict, Any]:
    """(state dict, total_steps) of a release checkpoint (or of a bare state dict)."""
    states = checkpoint.state_dicts
    if "" in states and "encoder.img_in.weight" in states[""]:
        return states[""], None
    _, state = checkpoint.state_dict((state_dict_key,), "a FlowMo release checkpoint")
    steps = checkpoint.content.get("total_steps")
    return state, steps.item() if isinstance(steps, torch.Tensor) else steps


# --- the release's yaml ------------------------------------------------------------------------
@dataclass
class ReleaseConfig:
    """What the converter takes from the release's yaml (defaults: :data:`RELEASE_DEFAULTS`)."""

    values: dict[str, Any] = field(default_factory=lambda: dict(RELEASE_DEFAULTS))
    source: str = "the release's base config"

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str) -> Any:
        return self.values.get(key)


_YAML_FIELDS = {  # our name: (section, key) in the release's yaml
    "image_size": ("data", "image_size"), "patch_size": ("model", "patch_size"),
    "code_length": ("model", "code_length"), "context_dim": ("model", "context_dim"),
    "codebook_size_for_entropy": ("model", "codebook_size_for_entropy"),
    "quantization_type": ("model", "quantization_type"), "entropy_loss_weight": ("model", "entropy_loss_weight"),
    "commit_loss_weight": ("model", "commit_loss_weight"), "state_dict_key": ("eval", "state_dict_key"),
}
_SAMPLING_FIELDS = ("sample_steps", "schedule", "cfg", "cfg_interval")


def read_release_config(tree: dict | None, source: str | None) -> ReleaseConfig:
    """The converter's settings from a release yaml's tree; the base config for ``None``."""
    config = ReleaseConfig()
    if tree is None:
        return config
    if not isinstance(tree.get("model"), dict):
        raise ConversionError(f"{source}: not a FlowMo release config (no 'model' section)")
    config.source = str(source)
    for ours, (section, key) in _YAML_FIELDS.items():
        value = (tree.get(section) or {}).get(key)
        if value is not None:
            config.values[ours] = value
    sampling = ((tree.get("eval") or {}).get("sampling")) or {}
    for key in _SAMPLING_FIELDS:
        if key in sampling:
            config.values[key] = sampling[key]
    return config


def edm_to_flow(sigma: float) -> float:
    """The release's map from an EDM noise level (x + sigma z) to flow time: sigma / (1 + sigma)."""
    return sigma / (1 + sigma)


def release_sampling(config: ReleaseConfig) -> dict[str, Any]:
    """``decode`` keyword arguments that sample as the release's ``rf_sample`` does."""
    where = config.source
    schedule = str(config["schedule"])
    if schedule == "linear":
        rho = 1.0
    elif re.fullmatch(r"pow_[0-9.]+", schedule) and float(schedule[4:]) > 0:
        rho = 1 / float(schedule[4:])
    else:
        raise ConversionError(f"{where}: sampling schedule {schedule!r} is not one of the release's ('linear', 'pow_P')")
    interval_text = config["cfg_interval"]
    if interval_text is None:
        interval = (0.0, 1.0)
    else:
        try:
            low, high = ast.literal_eval(str(interval_text))
            interval = (edm_to_flow(float(low)), edm_to_flow(float(high)))
        except (ValueError, TypeError, SyntaxError):
            raise ConversionError(f"{where}: cfg_interval {interval_text!r} is not a pair of noise levels like "
                                  "'(.17,1.02)'") from None
    return {"num_inference_steps": int(config["sample_steps"]), "rho": rho, "guidance_scale": float(config["cfg"]),
            "guidance_interval": interval}


# --- architecture from shapes ------------------------------------------------------------------
def _shape(state: dict, key: str, name: str) -> tuple[int, ...]:
    if key not in state:
        raise ConversionError(f"{name}: not a FlowMo release checkpoint: it has no {key} "
                              f"(its first keys: {', '.join(list(state)[:4])})")
    return tuple(state[key].shape)


def _transformer(state: dict, prefix: str, name: str) -> dict[str, Any]:
    hidden, patch_channels = _shape(state, f"{prefix}.img_in.weight", name)
    patch = math.isqrt(patch_channels // 3)
    if 3 * patch * patch != patch_channels:
        raise ConversionError(f"{name}: {prefix}.img_in takes {patch_channels} channels, not 3 x patch^2")
    blocks = {int(m.group(1)) for k in state for m in [re.match(rf"{prefix}\.double_blocks\.(\d+)\.", k)] if m}
    if not blocks or blocks != set(range(len(blocks))):
        raise ConversionError(f"{name}: not a FlowMo release checkpoint: {prefix}.double_blocks.* are missing or "
                              "not numbered 0..depth-1")
    (head_dim,) = _shape(state, f"{prefix}.double_blocks.0.img_attn.norm.query_norm.scale", name)
    mlp_hidden = _shape(state, f"{prefix}.double_blocks.0.img_mlp.0.weight", name)[0]
    if hidden % head_dim:
        raise ConversionError(f"{name}: {prefix} width {hidden} is not a multiple of its head dim {head_dim}")
    from tokenizer_zoo.layers.rope import default_axes_dims

    try:
        axes = default_axes_dims(head_dim)
    except ValueError:
        raise ConversionError(f"{name}: {prefix} head dim {head_dim} has no RoPE split of the release "
                              "(it needs a multiple of 32)") from None
    return dict(patch_size=patch, hidden_size=hidden, depth=len(blocks), num_heads=hidden // head_dim,
                mlp_ratio=mlp_hidden / hidden, qkv_bias=f"{prefix}.double_blocks.0.img_attn.qkv.bias" in state,
                rope_axes_dims=axes)


def infer_architecture(state: dict, config: ReleaseConfig, name: str) -> dict[str, dict[str, Any]]:
    """Encoder, quantizer and decoder kwargs of the checkpoint ``state`` (and ``config`` for the rest)."""
    encoder, decoder = _transformer(state, "encoder", name), _transformer(state, "decoder", name)
    code_dim = _shape(state, "encoder.txt_in.weight", name)[1]
    decoder_input = _shape(state, "decoder.txt_in.weight", name)[1]
    if decoder_input != code_dim + 1 or encoder["patch_size"] != decoder["patch_size"]:
        raise ConversionError(f"{name}: encoder and decoder do not fit together (code dim {code_dim} vs decoder "
                              f"code input {decoder_input}, patch {encoder['patch_size']} vs {decoder['patch_size']})")
    where = config.source
    if config["quantization_type"] != "lfq":
        raise ConversionError(f"{where}: quantization_type {config['quantization_type']!r}: only LFQ checkpoints "
                              "(the paper's) can be converted")
    for key, inferred in (("context_dim", code_dim), ("patch_size", encoder["patch_size"])):
        if config.get(key) is not None and int(config[key]) != inferred:
            raise ConversionError(f"{where}: says {key} {config[key]}, but the checkpoint {name} has {inferred}; "
                                  "give the config the checkpoint was trained with")
    bits = config.get("codebook_size_for_entropy") or RELEASE_BITS_PER_GROUP.get(code_dim)
    if bits is None or code_dim % int(bits):
        raise ConversionError(f"{name}: code dim {code_dim} needs the release's yaml (--config) for its LFQ group "
                              f"size codebook_size_for_entropy (got {bits})")
    shared = dict(image_size=int(config["image_size"]), code_length=int(config["code_length"]), code_dim=code_dim)
    time_embed_dim = _shape(state, "decoder.time_in.in_layer.weight", name)[1]
    quantizer = dict(dim=code_dim, bits_per_group=int(bits), entropy_weight=float(config["entropy_loss_weight"]),
                     commitment_weight=float(config["commit_loss_weight"]), temperature=LFQ_TEMPERATURE,
                     group_layout="interleaved", bit_order="lsb_first")
    return {"encoder": {**encoder, **shared},
            "quantizer": quantizer,
            "decoder": {**decoder, **shared, "time_embed_dim": time_embed_dim, "output_norm": "twice"}}


# --- state dict mapping ------------------------------------------------------------------------
_STREAM_PARTS = [("qkv.", "attn.qkv."), ("query_norm.", "attn.norm.query_norm."),
                 ("key_norm.", "attn.norm.key_norm."), ("proj.", "attn.proj."), ("mlp.", "mlp."),
                 ("modulation.linear.", "mod.lin.")]
_TOP_LEVEL = [("time_embed.mlp.0.", "time_in.in_layer."), ("time_embed.mlp.2.", "time_in.out_layer."),
              ("image_in.", "img_in."), ("code_in.", "txt_in."), ("code_out.linear.", "final_layer_txt.linear."),
              ("image_out.linear.", "final_layer_img.linear."),
              ("image_out.modulation.linear.", "final_layer_img.adaLN_modulation.1.")]


def release_key(ours: str, prefix: str) -> str:
    """The release's name of our parameter ``ours`` in the model ``prefix`` ("encoder" / "decoder")."""
    block = re.fullmatch(r"transformer\.blocks\.(\d+)\.(code|image)\.(.+)", ours)
    if block:
        index, stream, rest = block.groups()
        for mine, theirs in _STREAM_PARTS:
            if rest.startswith(mine):
                stream_name = "txt" if stream == "code" else "img"
                return f"{prefix}.double_blocks.{index}.{stream_name}_{theirs}{rest[len(mine):]}"
    for mine, theirs in _TOP_LEVEL:
        if ours.startswith(mine):
            return f"{prefix}.{theirs}{ours[len(mine):]}"
    raise KeyError(f"no release name for {prefix} parameter {ours}")


def _rows(ours: str, our_rows: int, their_rows: int) -> slice | None:
    """Rows of the release tensor that our (trimmed) tensor keeps, or None for the whole tensor."""
    if our_rows == their_rows:
        return None
    if ours.split(".")[-2] == "qkv" and 2 * their_rows == 3 * our_rows:
        return slice(their_rows - our_rows, their_rows)  # keys and values; the query rows are unused
    if ours.split(".")[-2] == "linear" and ".modulation." in ours and 3 * our_rows == their_rows:
        return slice(0, our_rows)  # shift and scale before attention; gate and MLP modulation are unused
    return slice(-1, -1)  # no known trimming: a shape mismatch


def unused_parameters(depths: dict[str, int]) -> list[str]:
    """Regular expressions of the release parameters that never influence its outputs."""
    enc, dec = depths["encoder"] - 1, depths["decoder"] - 1
    stream_outputs = r"(attn\.norm\.query_norm\.scale|attn\.proj\.(weight|bias)|mlp\.\d\.(weight|bias))"
    return [r"encoder\.txt_in\.weight", r"encoder\.time_in\..+", r"encoder\.double_blocks\.\d+\.(img|txt)_mod\.lin\..+",
            r"encoder\.final_layer_img\..+", r"encoder\.final_layer_txt\.adaLN_modulation\..+",
            rf"encoder\.double_blocks\.{enc}\.img_{stream_outputs}", r"decoder\.final_layer_txt\..+",
            rf"decoder\.double_blocks\.{dec}\.txt_{stream_outputs}"]


def map_state_dict(state: dict, models: dict[str, torch.nn.Module], dropped: DroppedKeys,
                   name: str) -> dict[str, dict[str, torch.Tensor]]:
    """Our state dicts from the release's; every release tensor must be mapped or known unused."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    used_rows: dict[str, slice | None] = {}
    for prefix, model in models.items():
        out[prefix] = {}
        for ours, target in model.state_dict().items():
            theirs = release_key(ours, prefix)
            if theirs not in state:
                raise ConversionError(f"{name}: not a FlowMo release checkpoint of this layout: it lacks {theirs}")
            tensor = state[theirs]
            rows = _rows(ours, target.shape[0], tensor.shape[0]) if target.ndim and tensor.ndim else None
            value = tensor if rows is None else tensor[rows].clone()  # no view keeping the unused rows alive
            if value.shape != target.shape:
                raise ConversionError(f"{name}: {theirs} has shape {tuple(tensor.shape)}, but the architecture "
                                      f"inferred from the file needs {tuple(target.shape)}")
            out[prefix][ours] = value
            used_rows[theirs] = rows
    depths = {prefix: model.config.depth for prefix, model in models.items()}
    unused = [re.compile(pattern) for pattern in unused_parameters(depths)]
    unexpected = []
    for key, tensor in state.items():
        if key in used_rows:
            rows = used_rows[key]
            if rows is not None:
                left_out = f"{rows.stop}:{tensor.shape[0]}" if rows.start == 0 else f"0:{rows.start}"
                dropped.add(f"{key}[rows {left_out}]", tensor.numel() - tensor[rows].numel(), UNUSED)
        elif any(pattern.fullmatch(key) for pattern in unused):
            dropped.add(key, tensor.numel(), UNUSED)
        else:
            unexpected.append(key)
    if unexpected:
        raise unexpected_keys(name, unexpected, "a FlowMo release checkpoint")
    return out


# --- the pipeline ------------------------------------------------------------------------------
def load(checkpoint: Checkpoint, config=None, weights: str = "ema", *, state_dict_key: str | None = None,
         torch_dtype: torch.dtype | None = None, pipeline_class: type | None = None):
    """A FlowMoPipeline from a read release checkpoint (in memory, nothing written).

    ``weights``: "ema" (``model_ema_state_dict``) or "raw" (``model_state_dict``); an explicit
    ``state_dict_key`` wins, else the yaml's ``eval.state_dict_key`` when the weights are "ema".
    A file fetched by a preset name (``checkpoint.name``: "flowmo_lo") must have that preset's architecture.
    """
    from tokenizer_zoo.decoders.flowmo import FlowMoDecoder
    from tokenizer_zoo.encoders.flowmo import FlowMoEncoder
    from tokenizer_zoo.quantizers.lfq import LFQuantizer
    from tokenizer_zoo.samplers.shifted_euler import ShiftedEulerScheduler

    if weights not in WEIGHTS:
        raise ConversionError(f"weights={weights!r}: a FlowMo release holds 'ema' and 'raw' weights")
    release = read_release_config(*config_of(checkpoint, config))
    sampling = release_sampling(release)
    name = checkpoint.name
    preset = name if name in RELEASE_FILES else None
    key = state_dict_key or (release["state_dict_key"] if weights == "ema" else WEIGHTS[weights])
    state, steps = release_state_dict(checkpoint, key)
    kwargs = infer_architecture(state, release, name)
    _check_preset(preset, kwargs, name)
    with torch.device("meta"):
        models = {"encoder": FlowMoEncoder(**kwargs["encoder"]), "decoder": FlowMoDecoder(**kwargs["decoder"])}
    dropped = DroppedKeys()
    mapped = map_state_dict(state, models, dropped, name)
    for prefix, model in models.items():
        model.load_state_dict(mapped[prefix], strict=True, assign=True)
        model.eval()
        if torch_dtype is not None:
            model.to(torch_dtype)
    scheduler = ShiftedEulerScheduler(num_inference_steps=sampling["num_inference_steps"], rho=sampling["rho"])
    pipeline_class = pipeline_class or PIPELINES.get("FlowMoPipeline")
    pipe = pipeline_class(encoder=models["encoder"], quantizer=LFQuantizer(**kwargs["quantizer"]),
                          decoder=models["decoder"], scheduler=scheduler, guidance_scale=sampling["guidance_scale"],
                          guidance_interval=list(sampling["guidance_interval"]))
    pipe.info = {"preset": preset, "source": f"FlowMo reference release checkpoint {checkpoint.path.name}",
                 "steps": steps, "weights": key,
                 "dataset": "ImageNet-1K train (the paper's weights)" if preset else "unknown (a release checkpoint)",
                 "sampling": {**sampling, "guidance_interval": list(sampling["guidance_interval"])}}
    record_dropped(pipe, dropped)
    return pipe


def from_single_file(pipeline_class: type, source: str | os.PathLike, config=None,
                     torch_dtype: torch.dtype | None = None, state_dict_key: str | None = None, **download_kwargs):
    """What ``FlowMoPipeline.from_single_file`` does: resolve (preset names fetch the paper's files), read, load."""
    path = resolve_source(source, RELEASES, **download_kwargs)
    preset = str(source) if str(source) in RELEASE_FILES else None
    checkpoint = read_checkpoint(path, name=str(source) if preset else str(path))
    return load(checkpoint, config, state_dict_key=state_dict_key, torch_dtype=torch_dtype,
                pipeline_class=pipeline_class)


def _check_preset(preset: str | None, kwargs: dict, name: str) -> None:
    """A file fetched for a preset name must have that preset's architecture."""
    if preset is None:
        return
    from tokenizer_zoo.presets import get_preset

    spec = get_preset(preset)
    keys = ("hidden_size", "depth", "num_heads", "patch_size", "code_dim")
    for part in ("encoder", "decoder"):
        expected = {k: getattr(spec, part).kwargs[k] for k in keys}
        found = {k: kwargs[part][k] for k in keys}
        if expected != found:
            raise ConversionError(f"{name}: its {part} {found} is not the {preset} preset's {expected}")
