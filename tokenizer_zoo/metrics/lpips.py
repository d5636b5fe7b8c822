"""LPIPS (learned perceptual image patch similarity) as a streaming metric.

By default the network is :func:`tokenizer_zoo.losses.perceptual.build_lpips` with real ImageNet
weights (VGG16 or AlexNet backbone, lpips v0.1 heads); if they are not on this machine that
raises :class:`~tokenizer_zoo.losses.perceptual.LPIPSWeightsMissingError`, whose message gives
the import command. Papers (FlowMo included) usually report the VGG variant for tokenizers;
the original LPIPS paper recommends AlexNet as a metric, so both are offered.
"""

from __future__ import annotations

import os

import torch

from tokenizer_zoo.metrics._base import PerImageMean, ValueRange, to_unit_range


class LPIPS(PerImageMean):
    """Mean over images of the LPIPS distance between reconstructions and references.

    net: "vgg" or "alex", the backbone :func:`build_lpips` loads (ignored when ``network`` is
    given). network: any module mapping two (B, 3, H, W) batches in [-1, 1] to per-image
    distances of B elements (e.g. lpips' (B, 1, 1, 1)) — for tests or custom weights.
    weights_path: passed on to :func:`build_lpips`. value_range: the range of the inputs, mapped
    linearly onto [-1, 1] for the network.

    ``update(images, references)``: float (B, 3, H, W) on the metric's device.
    ``compute()``: 0-dim float64. The network moves with ``.to(device)`` and never trains.
    """

    higher_is_better = False
    channels = 3

    def __init__(
        self,
        net: str = "vgg",
        network: torch.nn.Module | None = None,
        weights_path: str | os.PathLike | None = None,
        value_range: ValueRange = (-1.0, 1.0),
        **kwargs,
    ):
        super().__init__(value_range, **kwargs)
        if network is None:
            from tokenizer_zoo.losses.perceptual import build_lpips

            network = build_lpips(net, weights_path)
        self.net_name = net
        self.network = network.eval().requires_grad_(False)

    def train(self, mode: bool = True):
        """The metric (and its network, whose heads contain dropout) stays in eval mode."""
        return super().train(False)

    def per_image(self, images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        if self.value_range != (-1.0, 1.0):
            images = to_unit_range(images, self.value_range) * 2 - 1
            references = to_unit_range(references, self.value_range) * 2 - 1
        with torch.no_grad():
            return self.network(images, references)
