"""The set of reconstruction metrics the evaluate recipe reports, with missing weights skipped openly."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

import torch
from torchmetrics import Metric, MetricCollection

from tokenizer_zoo.metrics._base import ValueRange
from tokenizer_zoo.metrics.lpips import LPIPS
from tokenizer_zoo.metrics.psnr import PSNR
from tokenizer_zoo.metrics.ssim import SSIM

logger = logging.getLogger(__name__)


class ReconstructionMetrics(MetricCollection):
    """A MetricCollection of image-pair metrics plus ``skipped``: metric name -> why it is absent.

    ``update(images, references)`` updates every metric; ``compute()`` returns name -> 0-dim tensor;
    :meth:`summary` the same as Python floats. Compute groups are off: metrics never share states,
    so no metric can stop being updated because its state once happened to equal another's.
    """

    def __init__(self, metrics: Mapping[str, Metric], skipped: Mapping[str, str] | None = None):
        super().__init__(dict(metrics), compute_groups=False)
        self.skipped = dict(skipped or {})

    def summary(self) -> dict[str, float]:
        """``compute()`` as floats (synchronised across processes like ``compute()``)."""
        return {name: float(value) for name, value in self.compute().items()}


def reconstruction_metrics(
    lpips_nets: tuple[str, ...] = ("vgg", "alex"),
    value_range: ValueRange = (-1.0, 1.0),
    lpips_weights: Mapping[str, str | os.PathLike] | None = None,
    build_network: Callable[..., torch.nn.Module] | None = None,
) -> ReconstructionMetrics:
    """PSNR, SSIM and LPIPS (one per backbone in ``lpips_nets``, named ``lpips_<net>``).

    An LPIPS metric whose backbone weights are not on this machine is left out; its name and the
    reason (with the command that imports the weights) go into ``.skipped`` and the log, so a
    report can say what was not measured instead of failing or measuring with a random network.
    lpips_weights: optional net -> weights file, passed to ``build_lpips(net, weights_path)``.
    build_network: replaces :func:`build_lpips` (called as ``build_network(net, weights_path)``).
    """
    from tokenizer_zoo.losses.perceptual import LPIPSWeightsMissingError, build_lpips

    build_network = build_network or build_lpips
    metrics: dict[str, Metric] = {"psnr": PSNR(value_range), "ssim": SSIM(value_range)}
    skipped: dict[str, str] = {}
    for net in lpips_nets:
        name = f"lpips_{net}"
        try:
            network = build_network(net, (lpips_weights or {}).get(net))
        except LPIPSWeightsMissingError as error:
            skipped[name] = str(error)
            logger.warning("skipping %s: %s", name, error)
            continue
        metrics[name] = LPIPS(net, network=network, value_range=value_range)
    return ReconstructionMetrics(metrics, skipped)
