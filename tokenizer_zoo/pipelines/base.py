"""What every tokenizer pipeline shares: encoding, plugin-aware loading, metadata and the Hub card.

Besides diffusers' ``model_index.json``, a saved pipeline folder holds ``tokenizer_zoo.json``:

    {"format_version": 1,
     "components": {"quantizer": {"module": "tokenizer_zoo_bsq.bsq", "class": "BSQuantizer",
                                  "registry": "quantizers", "name": "bsq", "distribution": "tokenizer-zoo-bsq"}, ...},
     "info": {"preset": "flowmo_tiny", "bpp": 0.28, "dataset": "embedded", ...}}

``from_pretrained`` first imports every plugin through its entry points, checks each component of
``model_index.json`` against the classes they and the zoo provide (:mod:`tokenizer_zoo.pipelines.allowlist`;
nothing is imported on the folder's say-so), then checks that each component's module imports, and where
it does not, names the distribution to install.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline

from tokenizer_zoo.data.transforms import to_model_input
from tokenizer_zoo.outputs import EncodeOutput
from tokenizer_zoo.pipelines.allowlist import allowed_classes, check_component_classes
from tokenizer_zoo.pipelines.arguments import check_arguments
from tokenizer_zoo.pipelines.folders import INDEX_FILE, check_component_files, check_finite_components, resolve_folder
from tokenizer_zoo.registry import ALL_REGISTRIES
from tokenizer_zoo.validation import check_finite_input

METADATA_FILE = "tokenizer_zoo.json"
METADATA_VERSION = 1
_DOWNLOAD_KWARGS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision")


def pop_download_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove and return the Hub download settings (``cache_dir``, ``revision``, ...) of ``kwargs``."""
    return {key: kwargs.pop(key) for key in _DOWNLOAD_KWARGS if key in kwargs}


class MissingPluginError(ImportError):
    """A saved pipeline needs a component whose package is not installed."""


def _component_record(module: Any) -> dict[str, Any]:
    cls = type(module)
    record = {"module": cls.__module__, "class": cls.__name__}
    for group, registry in ALL_REGISTRIES.items():
        name = registry.name_of(cls)
        if name is not None:
            record.update(registry=group, name=name, distribution=registry.source(name))
    return record


def load_metadata(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``tokenizer_zoo.json`` of a pipeline folder (empty for folders saved by other tools)."""
    path = Path(folder) / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        metadata = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); re-save the pipeline with save_pretrained") from None
    version = metadata.get("format_version")
    if version != METADATA_VERSION:
        raise ValueError(f"{path} has format_version {version!r}; this tokenizer-zoo reads version "
                         f"{METADATA_VERSION}. Upgrade tokenizer-zoo or re-save the pipeline.")
    return metadata


def check_components_importable(folder: str | os.PathLike, pipeline: str) -> None:
    """Import plugins through their entry points, check the components of ``model_index.json`` against the
    classes they and the zoo provide, then import every component module the folder names."""
    components = load_metadata(folder).get("components", {})
    index = json.loads((Path(folder) / INDEX_FILE).read_text())
    hints = {part: record["distribution"] for part, record in components.items()  # for the class model_index names
             if "distribution" in record and [record.get("module"), record.get("class")] == index.get(part)}
    check_component_classes(index, pipeline, hints)
    for part, record in components.items():
        if (record.get("module"), record.get("class")) not in allowed_classes(part):
            continue  # model_index.json decides what loads; an unknown record is never imported
        try:
            importlib.import_module(record["module"])
        except ImportError as error:
            distribution = record.get("distribution", record["module"].split(".")[0])
            raise MissingPluginError(
                f"the pipeline's {part} is {record['module']}.{record['class']}, provided by the distribution "
                f"{distribution!r}, which is not installed or fails to import ({error}). "
                f"Install it: pip install {distribution}"
            ) from error


class ZooPipelineMixin:
    """Saving and loading with ``tokenizer_zoo.json`` (component sources, ``info``), for every pipeline of the zoo."""

    info: dict[str, Any]

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """diffusers' save (safetensors) plus ``tokenizer_zoo.json`` (component sources and ``info``)."""
        kwargs.setdefault("safe_serialization", True)
        super().save_pretrained(save_directory, **kwargs)
        components = {name: _component_record(module) for name, module in self.components.items()
                      if isinstance(module, torch.nn.Module)}
        metadata = {"format_version": METADATA_VERSION, "components": components, "info": getattr(self, "info", {})}
        (Path(save_directory) / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Load from a local folder or a Hub id (the local cache is used with ``HF_HUB_OFFLINE=1``)."""
        download = pop_download_kwargs(kwargs)  # local folders need none of them
        folder = resolve_folder(pretrained_model_name_or_path,
                                lambda name: DiffusionPipeline.download(name, **download))
        check_component_files(folder)
        check_components_importable(folder, cls.__name__)
        pipe = super().from_pretrained(folder, **{"use_safetensors": True, **kwargs})
        check_finite_components(pipe, folder)
        pipe.info = load_metadata(folder).get("info", {})
        pipe.source_folder = Path(folder)
        return pipe

    @classmethod
    def extract_init_dict(cls, config_dict: dict[str, Any], **kwargs):
        """diffusers' reading of a config, after checking its components (what ``DiffusionPipeline.from_pretrained``
        asks the pipeline class before it imports any component)."""
        check_component_classes(config_dict, cls.__name__)
        return super().extract_init_dict(config_dict, **kwargs)


class TokenizerPipelineMixin(ZooPipelineMixin):
    """Encoding shared by FlowMoPipeline and TokenizerPipeline."""

    @property
    def image_size(self) -> int:
        return self.decoder.config.image_size

    def _code_shape(self) -> tuple[int, int]:
        """(tokens, channels) of one image's codes."""
        pixels = torch.zeros(1, 3, self.image_size, self.image_size, device=self.device, dtype=self.encoder.dtype)
        with torch.no_grad():
            return tuple(self.encoder(pixels).shape[1:])

    @property
    def bits_per_pixel(self) -> float:
        """Tokens per image x bits per token / pixels (raises TypeError for continuous codes)."""
        bits = self.quantizer.bits_per_token
        return self._code_shape()[0] * bits / self.image_size**2

    @property
    def bpp_label(self) -> str:
        """What a BPP column says: the bit rate, or "continuous (N floats)" (N per image) for continuous codes."""
        try:
            return f"{self.bits_per_pixel:.4f}"
        except TypeError:  # continuous codes have no bit rate; never a made-up one
            tokens, channels = self._code_shape()
            return f"continuous ({tokens * channels} floats)"

    @check_arguments()
    @torch.no_grad()
    def encode(self, images, return_dict: bool = True) -> EncodeOutput | tuple:
        """Tokens of images: PIL, numpy HWC/BHWC (uint8, or float in [0, 1]) or tensors CHW/BCHW (float in
        [0, 1]), one or a list; resized and centre-cropped to the model's size. ``return_dict=False``:
        the tuple ``(indices, codes)``."""
        pixels = to_model_input(images, self.image_size).to(self.device, self.encoder.dtype)
        quantized = self.quantizer(self.encoder(pixels))
        if not return_dict:
            return quantized.indices, quantized.quantized
        return EncodeOutput(indices=quantized.indices, codes=quantized.quantized)

    def _codes(self, tokens) -> torch.Tensor:
        if isinstance(tokens, EncodeOutput):
            codes = tokens.codes
        elif isinstance(tokens, torch.Tensor) and not tokens.is_floating_point():
            codes = self.quantizer.indices_to_codes(tokens.to(self.device))
        elif isinstance(tokens, torch.Tensor):
            codes = tokens
        else:
            raise TypeError(f"decode() takes an EncodeOutput, integer token indices or float codes, "
                            f"not {type(tokens).__name__}")
        check_finite_input(codes, "codes", "pass the codes of encode() or integer token ids (NaN codes come from a "
                                              "diverged encoder or a failed conversion)")
        return codes.to(self.device, self.decoder.dtype)
