"""What ``from_pretrained`` checks before diffusers reads a folder, so that its errors name what is missing.

* :func:`resolve_folder`: a local folder as is; a path that does not exist raises "no such folder"
  before anything treats it as a Hub id; a Hub id is downloaded (or read from the local cache).
* :func:`check_component_files`: every component that ``model_index.json`` lists has its folder,
  and every model component its config and weights file.
* :func:`check_finite_components`: every tensor of every loaded component is finite.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch
from huggingface_hub.utils import HFValidationError, validate_repo_id

from tokenizer_zoo.pipelines.allowlist import is_component_entry
from tokenizer_zoo.validation import check_finite_weights

INDEX_FILE = "model_index.json"
WEIGHTS_STEM = "diffusion_pytorch_model"


class PipelineFolderError(FileNotFoundError):
    """A pipeline folder (or Hub id) that does not exist or lacks a file its components need."""


def _is_local_path(name: str) -> bool:
    """True for names that can only mean a local path: not a valid Hub id, or a path whose parent exists here."""
    if name.startswith((".", "~", "/")):
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    parent = os.path.dirname(name)
    return bool(parent) and os.path.isdir(parent)


def resolve_folder(name_or_path: str | os.PathLike, download: Callable[[str], str]) -> Path:
    """The local folder of ``name_or_path``: itself if it is a folder, else ``download(name)`` for a Hub id."""
    name = str(name_or_path)
    if os.path.isdir(name):
        return Path(name)
    if os.path.exists(name):
        raise PipelineFolderError(f"{name} is a file, not a pipeline folder; give the folder written by "
                                  "save_pretrained")
    if _is_local_path(name):
        raise PipelineFolderError(f"{name}: no such folder (and not a Hub id); give the folder written by "
                                  "save_pretrained or a Hub id of the form owner/name")
    try:
        return Path(download(name))
    except Exception as error:  # huggingface_hub raises many types for unknown, gated or offline repos
        message = " ".join(str(error).split())
        raise PipelineFolderError(f"{name} is no local folder and could not be fetched from the Hub "
                                  f"({type(error).__name__}: {message}); for a Hub id, download it once online "
                                  "(HF_HUB_OFFLINE=1 reads the local cache)") from error


def check_component_files(folder: Path) -> None:
    """Name the component and the file when ``folder`` lacks what ``model_index.json`` promises."""
    index = folder / INDEX_FILE
    if not index.is_file():
        raise PipelineFolderError(f"{folder} has no {INDEX_FILE}: it is not a pipeline folder; give the folder "
                                  "written by save_pretrained")
    for name, entry in json.loads(index.read_text()).items():
        if name.startswith("_") or not is_component_entry(entry):
            continue
        part = folder / name
        if not part.is_dir():
            raise PipelineFolderError(f"the pipeline's {name} is missing: {folder} has no {name}/ folder; copy the "
                                      "whole folder again or re-save the pipeline with save_pretrained")
        if (part / "config.json").is_file() and not any(part.glob(f"{WEIGHTS_STEM}*.safetensors")):
            raise PipelineFolderError(f"the pipeline's {name} has no weights: {part} lacks "
                                      f"{WEIGHTS_STEM}.safetensors; copy the whole folder again or re-save the "
                                      "pipeline with save_pretrained")


def check_finite_components(pipe, folder: Path) -> None:
    """Refuse a loaded pipeline whose weights hold NaN or inf, naming the component folder and the tensor."""
    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module):
            check_finite_weights(module.state_dict(), folder / name)
