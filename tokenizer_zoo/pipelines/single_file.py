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
import pickle
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

RELEASE_REPO = "ksarge/FlowMo"
RELEASE_FILES = {"flowmo_lo": "flowmo_lo.pth", "flowmo_hi": "flowmo_hi.pth"}
"""Preset name -> file of the paper's weights in :data:`RELEASE_REPO`."""

RELEASE_DEFAULTS = {"image_size": 256, "code_length": 256, "state_dict_key": "model_ema_state_dict",
                    "quantization_type": "lfq", "entropy_loss_weight": 0.0025, "commit_loss_weight": 0.000625,
                    "sample_steps": 25, "schedule": "pow_0.25", "cfg": 1.5, "cfg_interval": "(.17,1.02)"}
"""The release's base config (``flowmo/configs/base.yaml``): used for whatever no yaml is given for."""

RELEASE_BITS_PER_GROUP = {18: 9, 56: 14}
"""``codebook_size_for_entropy`` of the paper's models by code dim (FlowMo-Lo, FlowMo-Hi)."""

LFQ_TEMPERATURE = 0.1  # fixed in the release's quantizer
STATE_DICT_KEYS = ("model_ema_state_dict", "model_state_dict")
_HUB_URL = re.compile(r"^https://huggingface\.co/([^/]+/[^/]+)/(?:blob|resolve)/([^/]+)/(.+)$")


class CheckpointError(ValueError):
    """A checkpoint or config that cannot be converted; the message is one line naming the file."""


# --- finding and reading the files -------------------------------------------------------------
def resolve_checkpoint(source: str | os.PathLike, **download_kwargs) -> Path:
    """A local path for ``source``: a preset name of :data:`RELEASE_FILES`, a Hub URL, a local
    file, or ``owner/repo/path/in/repo.pth``; Hub files go through ``hf_hub_download`` (cache
    honoured, ``HF_HUB_OFFLINE`` respected)."""
    text = str(source)
    if text in RELEASE_FILES:
        return _download(RELEASE_REPO, RELEASE_FILES[text], **download_kwargs)
    url = _HUB_URL.match(text)
    if url:
        download_kwargs.setdefault("revision", url.group(2))
        return _download(url.group(1), url.group(3), **download_kwargs)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise CheckpointError(f"{text} is a folder; give the .pth file of a FlowMo release checkpoint")
    if "://" in text:
        raise CheckpointError(f"{text}: only Hugging Face Hub URLs (https://huggingface.co/OWNER/REPO/blob/REV/FILE) "
                              "are fetched; download other URLs yourself and pass the file")
    if text.count("/") >= 2 and not text.startswith((".", "/", "~")):
        owner, name, filename = text.split("/", 2)
        return _download(f"{owner}/{name}", filename, **download_kwargs)
    raise CheckpointError(f"{text}: no such file (nor a preset of the paper's weights: {', '.join(RELEASE_FILES)}, "
                          "nor a Hub URL or owner/repo/file.pth)")


def _download(repo_id: str, filename: str, **download_kwargs) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, **download_kwargs))
    except LocalEntryNotFoundError:
        raise CheckpointError(f"cannot fetch {filename} from the Hub repo {repo_id}: it is not in the local cache and "
                              "the Hub cannot be reached (no network, or HF_HUB_OFFLINE=1); download it once with a "
                              "network, or pass the path of a local copy") from None
    except (EntryNotFoundError, RepositoryNotFoundError) as error:
        raise CheckpointError(f"the Hub has no {filename} in {repo_id} ({type(error).__name__}); check the repo "
                              "and file name") from None


def load_release_checkpoint(path: str | os.PathLike, state_dict_key: str | None = None) -> tuple[dict, Any]:
    """(state dict, total_steps) of a release checkpoint, read with ``torch.load(weights_only=True)``."""
    name = str(path)
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{name}: no such file") from None
    except pickle.UnpicklingError as error:
        if "weights only load failed" not in str(error).lower():
            raise CheckpointError(f"{name}: not a readable PyTorch checkpoint (UnpicklingError: "
                                  f"{_first_line(error)}); the file is corrupted, truncated or of another "
                                  "format: download it again") from None
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = f"the Python object {found.group(1)}" if found else "Python objects"
        raise CheckpointError(f"{name}: refused: it needs full unpickling (it stores {what}, not only tensors), which "
                              "can run arbitrary code, and tokenizer-zoo reads checkpoints with "
                              "torch.load(weights_only=True) only; if you trust it, re-save its state dict with "
                              "torch.save and convert that") from None
    except Exception as error:  # noqa: BLE001 -- torch raises RuntimeError, KeyError, EOFError... for broken files
        raise CheckpointError(f"{name}: not a readable PyTorch checkpoint ({type(error).__name__}: "
                              f"{_first_line(error)}); the file is corrupted or truncated: download it again") from None
    if not isinstance(content, dict):
        raise CheckpointError(f"{name}: holds a {type(content).__name__}, not a FlowMo release checkpoint "
                              f"(a dict with {' / '.join(STATE_DICT_KEYS)})")
    if "encoder.img_in.weight" in content:  # a bare state dict
        state, steps = content, None
    else:
        key = state_dict_key or next((k for k in STATE_DICT_KEYS if k in content), STATE_DICT_KEYS[0])
        if not isinstance(content.get(key), dict):
            keys = ", ".join(sorted(map(str, content))[:8]) or "none"
            raise CheckpointError(f"{name}: not a FlowMo release checkpoint: it has no state dict {key!r} "
                                  f"(its top-level keys: {keys})")
        state, steps = content[key], content.get("total_steps")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{name}: its state dict holds entries that are not named tensors; not a FlowMo "
                              "release checkpoint")
    if isinstance(steps, torch.Tensor):
        steps = steps.item()
    return state, steps


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].split(". ")[0][:160] if lines else "no message"


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


def read_release_config(path: str | os.PathLike | None) -> ReleaseConfig:
    """The converter's settings from a release yaml (``yaml.safe_load``); the base config for ``None``."""
    config = ReleaseConfig()
    if path is None:
        return config
    try:
        tree = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise CheckpointError(f"{path}: cannot read the config ({type(error).__name__}: {_first_line(error)})") from None
    if not isinstance(tree, dict) or not isinstance(tree.get("model"), dict):
        raise CheckpointError(f"{path}: not a FlowMo release config (no 'model' section)")
    config.source = str(path)
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
        raise CheckpointError(f"{where}: sampling schedule {schedule!r} is not one of the release's ('linear', 'pow_P')")
    interval_text = config["cfg_interval"]
    if interval_text is None:
        interval = (0.0, 1.0)
    else:
        try:
            low, high = ast.literal_eval(str(interval_text))
            interval = (edm_to_flow(float(low)), edm_to_flow(float(high)))
        except (ValueError, TypeError, SyntaxError):
            raise CheckpointError(f"{where}: cfg_interval {interval_text!r} is not a pair of noise levels like "
                                  "'(.17,1.02)'") from None
    return {"num_inference_steps": int(config["sample_steps"]), "rho": rho, "guidance_scale": float(config["cfg"]),
            "guidance_interval": interval}


# --- architecture from shapes ------------------------------------------------------------------
def _shape(state: dict, key: str, name: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"{name}: not a FlowMo release checkpoint: it has no {key} "
                              f"(its first keys: {', '.join(list(state)[:4])})")
    return tuple(state[key].shape)


def _transformer(state: dict, prefix: str, name: str) -> dict[str, Any]:
    hidden, patch_channels = _shape(state, f"{prefix}.img_in.weight", name)
    patch = math.isqrt(patch_channels // 3)
    if 3 * patch * patch != patch_channels:
        raise CheckpointError(f"{name}: {prefix}.img_in takes {patch_channels} channels, not 3 x patch^2")
    blocks = {int(m.group(1)) for k in state for m in [re.match(rf"{prefix}\.double_blocks\.(\d+)\.", k)] if m}
    if not blocks or blocks != set(range(len(blocks))):
        raise CheckpointError(f"{name}: not a FlowMo release checkpoint: {prefix}.double_blocks.* are missing or "
                              "not numbered 0..depth-1")
    (head_dim,) = _shape(state, f"{prefix}.double_blocks.0.img_attn.norm.query_norm.scale", name)
    mlp_hidden = _shape(state, f"{prefix}.double_blocks.0.img_mlp.0.weight", name)[0]
    if hidden % head_dim:
        raise CheckpointError(f"{name}: {prefix} width {hidden} is not a multiple of its head dim {head_dim}")
    from tokenizer_zoo.layers.rope import default_axes_dims

    try:
        axes = default_axes_dims(head_dim)
    except ValueError:
        raise CheckpointError(f"{name}: {prefix} head dim {head_dim} has no RoPE split of the release "
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
        raise CheckpointError(f"{name}: encoder and decoder do not fit together (code dim {code_dim} vs decoder "
                              f"code input {decoder_input}, patch {encoder['patch_size']} vs {decoder['patch_size']})")
    where = config.source
    if config["quantization_type"] != "lfq":
        raise CheckpointError(f"{where}: quantization_type {config['quantization_type']!r}: only LFQ checkpoints "
                              "(the paper's) can be converted")
    for key, inferred in (("context_dim", code_dim), ("patch_size", encoder["patch_size"])):
        if config.get(key) is not None and int(config[key]) != inferred:
            raise CheckpointError(f"{where}: says {key} {config[key]}, but the checkpoint {name} has {inferred}; "
                                  "give the config the checkpoint was trained with")
    bits = config.get("codebook_size_for_entropy") or RELEASE_BITS_PER_GROUP.get(code_dim)
    if bits is None or code_dim % int(bits):
        raise CheckpointError(f"{name}: code dim {code_dim} needs the release's yaml (--config) for its LFQ group "
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


@dataclass
class Conversion:
    """The state dicts of our encoder and decoder and what was left out of the release's."""

    state_dicts: dict[str, dict[str, torch.Tensor]]
    dropped: list[str]  # release names (with "[rows]" for partly used tensors)
    dropped_values: int


def map_state_dict(state: dict, models: dict[str, torch.nn.Module], name: str) -> Conversion:
    """Our state dicts from the release's; every release tensor must be mapped or known unused."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    used_rows: dict[str, slice | None] = {}
    for prefix, model in models.items():
        out[prefix] = {}
        for ours, target in model.state_dict().items():
            theirs = release_key(ours, prefix)
            if theirs not in state:
                raise CheckpointError(f"{name}: not a FlowMo release checkpoint of this layout: it lacks {theirs}")
            tensor = state[theirs]
            rows = _rows(ours, target.shape[0], tensor.shape[0]) if target.ndim and tensor.ndim else None
            value = tensor if rows is None else tensor[rows].clone()  # no view keeping the unused rows alive
            if value.shape != target.shape:
                raise CheckpointError(f"{name}: {theirs} has shape {tuple(tensor.shape)}, but the architecture "
                                      f"inferred from the file needs {tuple(target.shape)}")
            out[prefix][ours] = value
            used_rows[theirs] = rows
    depths = {prefix: model.config.depth for prefix, model in models.items()}
    unused = [re.compile(pattern) for pattern in unused_parameters(depths)]
    dropped, values, unexpected = [], 0, []
    for key, tensor in state.items():
        if key in used_rows:
            rows = used_rows[key]
            if rows is not None:
                left_out = f"{rows.stop}:{tensor.shape[0]}" if rows.start == 0 else f"0:{rows.start}"
                dropped.append(f"{key}[rows {left_out}]")
                values += tensor.numel() - tensor[rows].numel()
        elif any(pattern.fullmatch(key) for pattern in unused):
            dropped.append(key)
            values += tensor.numel()
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointError(f"{name}: {len(unexpected)} state-dict key(s) that a FlowMo release checkpoint does not "
                              f"have ({', '.join(unexpected[:4])}{', ...' if len(unexpected) > 4 else ''}); it is a "
                              "checkpoint of another model or of a modified release")
    return Conversion(out, dropped, values)


# --- the pipeline ------------------------------------------------------------------------------
@dataclass
class SingleFileResult:
    pipeline: Any
    dropped: list[str]
    dropped_values: int


def convert_release_checkpoint(source: str | os.PathLike, config: str | os.PathLike | None = None,
                               torch_dtype: torch.dtype | None = None, state_dict_key: str | None = None,
                               **download_kwargs) -> SingleFileResult:
    """Read, check and convert a release checkpoint into a FlowMoPipeline (in memory, nothing written)."""
    from tokenizer_zoo.decoders.flowmo import FlowMoDecoder
    from tokenizer_zoo.encoders.flowmo import FlowMoEncoder
    from tokenizer_zoo.pipelines.flowmo import FlowMoPipeline
    from tokenizer_zoo.quantizers.lfq import LFQuantizer
    from tokenizer_zoo.samplers.shifted_euler import ShiftedEulerScheduler

    release = read_release_config(config)
    sampling = release_sampling(release)
    path = resolve_checkpoint(source, **download_kwargs)
    name = str(source) if str(source) in RELEASE_FILES else str(path)
    state, steps = load_release_checkpoint(path, state_dict_key or release["state_dict_key"])
    kwargs = infer_architecture(state, release, name)
    _check_preset(str(source), kwargs, name)
    with torch.device("meta"):
        models = {"encoder": FlowMoEncoder(**kwargs["encoder"]), "decoder": FlowMoDecoder(**kwargs["decoder"])}
    conversion = map_state_dict(state, models, name)
    for prefix, model in models.items():
        model.load_state_dict(conversion.state_dicts[prefix], strict=True, assign=True)
        model.eval()
        if torch_dtype is not None:
            model.to(torch_dtype)
    scheduler = ShiftedEulerScheduler(num_inference_steps=sampling["num_inference_steps"], rho=sampling["rho"])
    pipe = FlowMoPipeline(encoder=models["encoder"], quantizer=LFQuantizer(**kwargs["quantizer"]),
                          decoder=models["decoder"], scheduler=scheduler, guidance_scale=sampling["guidance_scale"],
                          guidance_interval=list(sampling["guidance_interval"]))
    preset = str(source) if str(source) in RELEASE_FILES else None
    pipe.info = {"preset": preset, "source": f"FlowMo reference release checkpoint {Path(path).name}", "steps": steps,
                 "dataset": "ImageNet-1K train (the paper's weights)" if preset else "unknown (a release checkpoint)",
                 "sampling": {**sampling, "guidance_interval": list(sampling["guidance_interval"])}}
    return SingleFileResult(pipe, conversion.dropped, conversion.dropped_values)


def _check_preset(source: str, kwargs: dict, name: str) -> None:
    """A file fetched for a preset name must have that preset's architecture."""
    if source not in RELEASE_FILES:
        return
    from tokenizer_zoo.presets import get_preset

    preset = get_preset(source)
    keys = ("hidden_size", "depth", "num_heads", "patch_size", "code_dim")
    for part in ("encoder", "decoder"):
        expected = {k: getattr(preset, part).kwargs[k] for k in keys}
        found = {k: kwargs[part][k] for k in keys}
        if expected != found:
            raise CheckpointError(f"{name}: its {part} {found} is not the {source} preset's {expected}")


def dropped_summary(result: SingleFileResult) -> str:
    """The lines that report the release parameters left out (count, values, names)."""
    lines = [f"dropped {len(result.dropped)} release parameter tensors ({result.dropped_values:,} values) that the "
             "release allocates but never uses:"]
    return "\n".join(lines + [f"  {key}" for key in result.dropped])


def check_output_folder(output: str | os.PathLike) -> Path:
    """``output`` as a Path, if it is new or an empty folder."""
    target = Path(output)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise CheckpointError(f"-o {output} already exists and is not an empty folder; choose a new folder")
    return target


def save_converted(pipe, output: str | os.PathLike) -> Path:
    """``save_pretrained`` into a temporary folder beside ``output``, then rename it: no partial folder."""
    target = check_output_folder(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        pipe.save_pretrained(staging)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
