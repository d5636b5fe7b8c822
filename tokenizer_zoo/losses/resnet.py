"""``resnet50_logits``: FlowMo's stage-1B perceptual distance (FLOWMO_SPEC §4).

    d(x, y) = mean over the 1000 classes of (f(x) - f(y))^2,   f = ImageNet ResNet-50 logits

Inputs are images in [-1, 1] (B, 3, H, W); each is mapped to [0, 1], resized to 224 x 224 with
antialiasing and normalised with the ImageNet mean and std before the network. ``y`` (the
original) is passed through the network without gradients. Output: distances (B,).

Weights come from the first of:

1. ``weights_path``: a local ``.safetensors`` / ``.pth`` state dict of ``torchvision.models.resnet50``,
   or a Hub id ``owner/name`` (its ``model.safetensors``) or ``owner/name/FILE.safetensors``;
2. torchvision's ``ResNet50_Weights.IMAGENET1K_V1`` in the torch hub cache
   (``$TORCH_HOME/hub/checkpoints/resnet50-0676ba61.pth``), downloaded there by torchvision
   when missing unless ``download=False`` or ``HF_HUB_OFFLINE=1``.

Otherwise :class:`ResNetWeightsMissingError` says how to provide them: never a random network.
Tests inject a small randomly initialised torchvision ResNet through ``network=``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tokenizer_zoo.losses.perceptual import PERCEPTUAL

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNetWeightsMissingError(FileNotFoundError):
    """No ImageNet ResNet-50 weights could be found or downloaded."""


class LogitsDistance(nn.Module):
    """MSE between a frozen classifier's logits on two image batches in [-1, 1] -> (B,)."""

    def __init__(self, network: nn.Module, resolution: int = 224):
        super().__init__()
        self.network = network.requires_grad_(False).eval()
        self.resolution = resolution
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        """Always eval mode: batch-norm statistics must stay the ImageNet ones."""
        return super().train(False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        unit = (images + 1.0) / 2.0
        if unit.shape[-2:] != (self.resolution, self.resolution):
            unit = F.interpolate(unit, size=(self.resolution, self.resolution), mode="bilinear",
                                 align_corners=False, antialias=True)
        return (unit - self.mean.to(unit.dtype)) / self.std.to(unit.dtype)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(self.preprocess(images))

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            reference = self.logits(target).float()
        return (self.logits(prediction).float() - reference).square().mean(dim=1)


def _torchvision_weights():
    from torchvision.models import ResNet50_Weights

    return ResNet50_Weights.IMAGENET1K_V1


def torch_hub_cache_file() -> Path:
    """Where torchvision keeps (or downloads) the ImageNet ResNet-50 checkpoint."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(_torchvision_weights().url)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def _from_hub(repo_path: str) -> Path:
    from huggingface_hub import hf_hub_download

    parts = repo_path.split("/")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:]) or "model.safetensors"
    try:
        return Path(hf_hub_download(repo_id, filename))
    except Exception as error:  # offline, unknown repo, missing file: all mean "no weights"
        raise ResNetWeightsMissingError(
            f"could not get ResNet-50 weights {filename!r} from the Hub repository {repo_id!r} "
            f"({type(error).__name__}: {error}); pass a local file as weights_path instead"
        ) from error


def find_resnet50_weights(weights_path: str | os.PathLike | None = None,
                          download: bool | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """The ImageNet ResNet-50 state dict and where it came from (see the module docstring)."""
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            if len(str(weights_path).split("/")) < 2 or str(weights_path).startswith((".", "/", "~")):
                raise ResNetWeightsMissingError(f"ResNet-50 weights file {path} does not exist")
            path = _from_hub(str(weights_path))
        return _read_state(path), str(path)
    hub_file = torch_hub_cache_file()
    if download is None:
        download = os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "", "false", "False")
    if hub_file.is_file() or download:
        try:
            return _torchvision_weights().get_state_dict(progress=False, check_hash=True), str(hub_file)
        except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad hash a RuntimeError
            reason = f"torchvision could not load or download them ({type(error).__name__}: {error})"
    else:
        reason = "downloads are off (download=False or HF_HUB_OFFLINE=1)"
    raise ResNetWeightsMissingError(
        f"no ImageNet ResNet-50 weights for the resnet50_logits perceptual loss: {hub_file} does not exist "
        f"and {reason}. Put torchvision's resnet50-0676ba61.pth there (with internet: "
        "torchvision.models.ResNet50_Weights.IMAGENET1K_V1.get_state_dict()), or pass "
        "weights_path=FILE.safetensors|FILE.pth|HUB_OWNER/NAME, or choose another perceptual network "
        "(e.g. sample_net=lpips_vgg)."
    )


def build_resnet50_logits(weights_path: str | os.PathLike | None = None, network: nn.Module | None = None,
                          resolution: int = 224, download: bool | None = None) -> LogitsDistance:
    """The frozen ``resnet50_logits`` distance. ``network`` injects an already built classifier
    (tests use a tiny random torchvision ResNet) instead of loading ImageNet weights."""
    if network is None:
        from torchvision.models import resnet50

        state, source = find_resnet50_weights(weights_path, download)
        network = resnet50()
        network.load_state_dict(state, strict=True)
        network.weights_source = source
    return LogitsDistance(network, resolution)


PERCEPTUAL.register("resnet50_logits", build_resnet50_logits)
