"""Image reconstruction and token metrics, streaming over batches and processes (torchmetrics).

Every metric is a ``torchmetrics.Metric``: ``update`` per batch, ``compute`` at the end (summed
over all processes under torch.distributed / Accelerate), ``reset`` to start again. Images are
float (B, C, H, W) in [-1, 1] unless ``value_range`` says otherwise.

* :class:`PSNR` — mean over images of the per-image PSNR (not the FlowMo reference's per-batch PSNR).
* :class:`SSIM` — scikit-image's Gaussian SSIM on [0, 1] images, per image, averaged.
* :class:`LPIPS` — VGG or AlexNet LPIPS with real weights (:func:`build_lpips`), averaged.
* :class:`TokenStatistics` — BPP, codebook usage, entropy and perplexity of token ids.
* :class:`FileRate` — the BPP and mean quality a file codec's files reached.
* :func:`reconstruction_metrics` — PSNR, SSIM and the LPIPS variants whose weights exist.
* FID family (:mod:`tokenizer_zoo.metrics.fid`) on InceptionV3 features
  (:mod:`tokenizer_zoo.metrics.inception`): rFID, gFID, sFID, Inception Score, precision/recall.
"""

from tokenizer_zoo.metrics.fid import (
    FIDOutput,
    FrechetInceptionDistance,
    GenerationFID,
    InceptionScore,
    InceptionScoreOutput,
    PrecisionRecall,
    PrecisionRecallOutput,
    ReconstructionFID,
    ReferenceStats,
    fid_from_stats,
)
from tokenizer_zoo.metrics.collection import ReconstructionMetrics, reconstruction_metrics
from tokenizer_zoo.metrics.lpips import LPIPS
from tokenizer_zoo.metrics.psnr import PSNR, psnr
from tokenizer_zoo.metrics.ssim import SSIM, ssim
from tokenizer_zoo.metrics.token_statistics import FileRate, TokenStatistics

__all__ = [
    "LPIPS", "PSNR", "SSIM", "FIDOutput", "FileRate", "FrechetInceptionDistance", "GenerationFID", "InceptionScore",
    "InceptionScoreOutput", "PrecisionRecall", "PrecisionRecallOutput", "ReconstructionFID", "ReconstructionMetrics",
    "ReferenceStats", "TokenStatistics", "fid_from_stats", "psnr", "reconstruction_metrics", "ssim",
]
