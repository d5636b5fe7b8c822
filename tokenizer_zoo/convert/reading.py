"""Reading a release's files safely: a checkpoint file, or a folder with ``config.json`` and weights.

    checkpoint = read_checkpoint("vq_ds8_c2i.pt", safe_globals=(argparse.Namespace,))
    checkpoint.state_dicts     # {"model": {...}} -- every top-level entry that is a dict of named tensors
    checkpoint.config          # the config.json / yaml found in a folder, or None

Files are read with ``torch.load(weights_only=True)`` or safetensors, never by full unpickling
(it can run arbitrary code). A release file that stores a harmless Python object (LlamaGen's
training files keep an ``argparse.Namespace`` under ``args``) is read by admitting exactly that
type through ``torch.serialization.safe_globals``. A truncated or corrupt file, or one that needs
any other Python object, is one :class:`~tokenizer_zoo.errors.ConversionError` line naming the file.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from tokenizer_zoo.errors import ConversionError

WEIGHT_FILES = ("model.safetensors", "diffusion_pytorch_model.safetensors", "pytorch_model.bin")
"""Weight files of a release folder, in the order they are looked for."""
CONFIG_FILES = ("config.json", "config.yaml", "config.yml")
_HUB_URL = re.compile(r"^https://huggingface\.co/([^/]+/[^/]+)/(?:blob|resolve)/([^/]+)/(.+)$")


@dataclass
class Checkpoint:
    """What :func:`read_checkpoint` found: the file's top-level content, its source and any config beside it."""

    path: Path
    name: str  # how messages name it: the preset or Hub name the user gave, or the path
    content: dict[str, Any]
    config: dict[str, Any] | None = None
    config_source: str | None = None

    @property
    def state_dicts(self) -> dict[str, dict[str, torch.Tensor]]:
        """Every dict of named tensors in the file by its top-level key ("" for a bare state dict)."""
        if is_state_dict(self.content):
            return {"": self.content}
        return {key: value for key, value in self.content.items() if is_state_dict(value)}

    def state_dict(self, keys: tuple[str, ...], what: str) -> tuple[str, dict[str, torch.Tensor]]:
        """(key, state dict) of the first of ``keys`` the file has; ``what`` names the format in the error."""
        found = self.state_dicts
        for key in keys:
            if key in found:
                return key, found[key]
        top = ", ".join(sorted(map(str, self.content))[:8]) or "none"
        raise ConversionError(f"{self.name}: not {what}: it has no state dict {' / '.join(map(repr, keys))} "
                              f"(its top-level keys: {top})")

    def keys(self) -> set[str]:
        """Every tensor name of every state dict in the file."""
        return {key for state in self.state_dicts.values() for key in state}


def is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].split(". ")[0][:160] if lines else "no message"


# --- where the file is -------------------------------------------------------------------------
def resolve_source(source: str | os.PathLike, releases: dict[str, tuple[str, str]] | None = None,
                   **download_kwargs) -> Path:
    """A local path for ``source``: a name of ``releases`` (name -> Hub repo, file), a Hub URL, a local
    file or folder, or ``owner/repo/path/in/repo``; Hub files go through ``hf_hub_download``."""
    text, releases = str(source), releases or {}
    if text in releases:
        return download(*releases[text], **download_kwargs)
    url = _HUB_URL.match(text)
    if url:
        download_kwargs.setdefault("revision", url.group(2))
        return download(url.group(1), url.group(3), **download_kwargs)
    path = Path(text).expanduser()
    if path.exists():
        return path
    if "://" in text:
        raise ConversionError(f"{text}: only Hugging Face Hub URLs (https://huggingface.co/OWNER/REPO/blob/REV/FILE) "
                              "are fetched; download other URLs yourself and pass the file")
    if text.count("/") >= 2 and not text.startswith((".", "/", "~")):
        owner, name, filename = text.split("/", 2)
        return download(f"{owner}/{name}", filename, **download_kwargs)
    known = f" (nor a release name: {', '.join(releases)})" if releases else ""
    raise ConversionError(f"{text}: no such file or folder{known}, nor a Hub URL or owner/repo/file")


def download(repo_id: str, filename: str, **download_kwargs) -> Path:
    """``hf_hub_download`` with its failures as one line."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, **download_kwargs))
    except LocalEntryNotFoundError:
        raise ConversionError(f"cannot fetch {filename} from the Hub repo {repo_id}: it is not in the local cache and "
                              "the Hub cannot be reached (no network, or HF_HUB_OFFLINE=1); download it once with a "
                              "network, or pass the path of a local copy") from None
    except (EntryNotFoundError, RepositoryNotFoundError) as error:
        raise ConversionError(f"the Hub has no {filename} in {repo_id} ({type(error).__name__}); check the repo "
                              "and file name") from None


# --- reading -----------------------------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike, name: str | None = None, safe_globals: tuple[type, ...] = ()) -> Checkpoint:
    """The content of a checkpoint file, or of a folder's weights and config (see the module doc)."""
    path = Path(path)
    name = name or str(path)
    if path.is_dir():
        weights = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
        if weights is None:
            raise ConversionError(f"{name} is a folder without weights ({' / '.join(WEIGHT_FILES)}); give the "
                                  "checkpoint file or a release folder")
        config_file = next((path / f for f in CONFIG_FILES if (path / f).is_file()), None)
        config = read_config(config_file) if config_file else None
        return Checkpoint(path, name, _read_file(weights, f"{name}/{weights.name}", safe_globals), config,
                          str(config_file) if config_file else None)
    return Checkpoint(path, name, _read_file(path, name, safe_globals))


def _read_file(path: Path, name: str, safe_globals: tuple[type, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise ConversionError(f"{name}: no such file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as error:
            raise ConversionError(f"{name}: not a readable safetensors file ({first_line(error)}); the file is "
                                  "corrupted or truncated: download it again") from None
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only load failed" not in str(error).lower():
            raise ConversionError(f"{name}: not a readable PyTorch checkpoint (UnpicklingError: {first_line(error)}); "
                                  "the file is corrupted, truncated or of another format: download it again") from None
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = f"the Python object {found.group(1)}" if found else "Python objects"
        raise ConversionError(f"{name}: refused: it needs full unpickling (it stores {what}, not only tensors), which "
                              "can run arbitrary code, and tokenizer-zoo reads checkpoints with "
                              "torch.load(weights_only=True) only; if you trust it, re-save its state dict with "
                              "torch.save and convert that") from None
    except Exception as error:  # noqa: BLE001 -- torch raises RuntimeError, KeyError, EOFError... for broken files
        raise ConversionError(f"{name}: not a readable PyTorch checkpoint ({type(error).__name__}: "
                              f"{first_line(error)}); the file is corrupted or truncated: download it again") from None
    if not isinstance(content, dict):
        raise ConversionError(f"{name}: holds a {type(content).__name__}, not a release checkpoint (a dict of "
                              "state dicts)")
    return content


def read_config(config: str | os.PathLike | dict | None) -> dict[str, Any] | None:
    """A release config: a dict as it is, or a yaml / json file (``yaml.safe_load`` reads both)."""
    if config is None or isinstance(config, dict):
        return config
    try:
        tree = yaml.safe_load(Path(config).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConversionError(f"{config}: cannot read the config ({type(error).__name__}: {first_line(error)})") from None
    if not isinstance(tree, dict):
        raise ConversionError(f"{config}: not a config file (it holds a {type(tree).__name__}, not a mapping)")
    return tree


def config_of(checkpoint: Checkpoint, config: str | os.PathLike | dict | None) -> tuple[dict | None, str | None]:
    """(tree, source) of the config given, else of the one found beside the checkpoint, else (None, None)."""
    if config is not None:
        return read_config(config), (str(config) if not isinstance(config, dict) else "the config given")
    return checkpoint.config, checkpoint.config_source

