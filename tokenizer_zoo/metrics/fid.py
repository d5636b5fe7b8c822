"""The FID family: rFID, gFID, sFID, Inception Score, and k-NN precision/recall, as streaming metrics.

Every metric takes the feature extractor as a module (normally
:class:`tokenizer_zoo.metrics.inception.InceptionFeatureExtractor`; tests inject a tiny random
network). An extractor maps images in [-1, 1] (B, 3, H, W) to
:class:`~tokenizer_zoo.metrics.inception.InceptionFeatures` and tells its sizes with the attributes
``pool_features``, ``spatial_features`` (or ``None``) and ``num_classes`` (or ``None``). Every
``update`` accepts images or an ``InceptionFeatures`` already computed, so one forward pass can feed
several metrics.

Memory. The Fréchet metrics keep sufficient statistics only (count, feature sum, sum of outer
products, all float64): 2048^2 * 8 B = 32 MiB per stream, plus 31 MiB per stream with sFID, however
many images go in. The Inception Score keeps the (N, 1008) logits (4 KiB per image) because its
splits need every prediction; precision/recall keep the (N, 2048) float32 pool features of both
sets (8 KiB per image and set: 400 MiB for 50k images each) and compute distances in row batches of
``batch_size`` x N. States are synchronised across processes by torchmetrics (sums are summed,
kept features and logits are concatenated).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from tokenizer_zoo.metrics.inception import InceptionFeatures


# --- Fréchet distance -----------------------------------------------------------------------------
def _trace_sqrt_product_sqrtm(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    """tr sqrt(sigma1 @ sigma2) by scipy's sqrtm; where that is not finite, retry with ``eps * I`` added to both."""
    from scipy.linalg import sqrtm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "singular matrix" is handled below
        root = sqrtm(sigma1 @ sigma2)
        if not np.isfinite(root).all():
            offset = np.eye(sigma1.shape[0]) * eps
            root = sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(root):
        imaginary = np.abs(np.diagonal(root).imag).max()
        if imaginary > 1e-3:
            raise ValueError(f"sqrtm(sigma1 @ sigma2) has an imaginary component of {imaginary:.3g}; "
                             "use method='eigh', which cannot produce one")
        root = root.real
    return float(np.trace(root))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(values.clip(min=0))) @ vectors.T


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    """tr sqrt(sigma1 sigma2) = sum of sqrt(eigenvalues of sqrt(sigma1) sigma2 sqrt(sigma1)), a symmetric PSD matrix."""
    root = _psd_sqrt(sigma1)
    inner = root @ sigma2 @ root
    return float(np.sqrt(np.linalg.eigvalsh((inner + inner.T) / 2).clip(min=0)).sum())


TRACE_SQRT_METHODS = {"sqrtm": _trace_sqrt_product_sqrtm, "eigh": _trace_sqrt_product_eigh}


def fid_from_stats(mu1, sigma1, mu2, sigma2, method: str = "sqrtm", eps: float = 1e-6) -> float:
    """Fréchet distance ||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)) of two Gaussians.

    ``method="sqrtm"`` is pytorch-fid's computation (scipy's matrix square root, ``eps * I`` offset
    where it fails, negligible imaginary parts dropped); ``"eigh"`` uses symmetric eigendecompositions
    only and stays exact for rank-deficient covariances. Computed in float64; clamped at 0 against
    rounding.
    """
    if method not in TRACE_SQRT_METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {sorted(TRACE_SQRT_METHODS)}")
    mu1, mu2 = (np.atleast_1d(np.asarray(m, dtype=np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"mismatched statistics: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}")
    diff = mu1 - mu2
    trace_root = TRACE_SQRT_METHODS[method](sigma1, sigma2, eps)
    return max(float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root), 0.0)


# --- reference statistics ---------------------------------------------------------------------------
@dataclass
class ReferenceStats:
    """Gaussian statistics of a feature set; ``mu_s``/``sigma_s`` are the sFID (spatial) ones.

    Saved as ``.npz`` with the keys ``mu``, ``sigma`` (pytorch-fid) and ``mu_s``, ``sigma_s``
    (guided-diffusion's reference batches); loaded with ``allow_pickle=False``.
    """

    mu: np.ndarray
    sigma: np.ndarray
    mu_s: np.ndarray | None = None
    sigma_s: np.ndarray | None = None

    def save(self, path: str | Path) -> None:
        arrays = {name: getattr(self, name) for name in ("mu", "sigma", "mu_s", "sigma_s") if getattr(self, name) is not None}
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "ReferenceStats":
        with np.load(path, allow_pickle=False) as data:
            if "mu" not in data or "sigma" not in data:
                raise KeyError(f"{path} has no 'mu' and 'sigma' arrays (found {sorted(data.files)})")
            spatial = {name: data[name].astype(np.float64) for name in ("mu_s", "sigma_s") if name in data}
            return cls(mu=data["mu"].astype(np.float64), sigma=data["sigma"].astype(np.float64), **spatial)


def _as_features(extractor: nn.Module, batch: Tensor | InceptionFeatures) -> InceptionFeatures:
    if isinstance(batch, InceptionFeatures):
        return batch
    with torch.no_grad():
        return extractor(batch)


class _Moments:
    """Names of the float64 sufficient-statistic states of one feature stream inside a Metric."""

    def __init__(self, metric: Metric, prefix: str, dim: int) -> None:
        self.metric, self.prefix = metric, prefix
        metric.add_state(f"{prefix}_count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        metric.add_state(f"{prefix}_sum", torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
        metric.add_state(f"{prefix}_outer", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum")

    def _get(self, name: str) -> Tensor:
        return getattr(self.metric, f"{self.prefix}_{name}")

    def add(self, features: Tensor) -> None:
        features = features.detach().to(torch.float64).flatten(1)
        self._get("count").add_(features.shape[0])
        self._get("sum").add_(features.sum(0))
        self._get("outer").add_(features.T @ features)

    @property
    def count(self) -> int:
        return int(self._get("count").item())

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.count
        if n < 2:
            raise RuntimeError(f"the {self.prefix} stream holds {n} sample(s); a covariance needs at least 2")
        mu = self._get("sum") / n
        sigma = (self._get("outer") - n * torch.outer(mu, mu)) / (n - 1)
        return mu.cpu().numpy(), sigma.cpu().numpy()


@dataclass
class FIDOutput:
    fid: float
    sfid: float | None  # None unless the metric was built with spatial=True
    num_real: int  # images in the real stream; 0 when precomputed reference statistics were used
    num_fake: int


class FrechetInceptionDistance(Metric):
    """Streaming FID (and sFID with ``spatial=True``) between a real and a fake feature stream.

    ``update(real=..., fake=...)`` takes images in [-1, 1] or :class:`InceptionFeatures` for either
    or both. With ``reference`` (a :class:`ReferenceStats` or an ``.npz`` path) the real side is fixed
    and only fakes are accumulated. ``compute() -> FIDOutput``. ``real_stats()`` / ``fake_stats()``
    return the accumulated :class:`ReferenceStats`, e.g. to save a reference ``.npz``.
    """

    higher_is_better = False
    is_differentiable = False
    full_state_update = False

    def __init__(self, extractor: nn.Module, reference: ReferenceStats | str | Path | None = None,
                 spatial: bool = False, method: str = "sqrtm", **kwargs) -> None:
        super().__init__(**kwargs)
        if spatial and getattr(extractor, "spatial_features", None) is None:
            raise ValueError(f"spatial=True needs an extractor with spatial features; {type(extractor).__name__} has none")
        self.extractor = extractor
        self.spatial = spatial
        self.method = method
        self.reference = ReferenceStats.load(reference) if isinstance(reference, (str, Path)) else reference
        if spatial and self.reference is not None and self.reference.mu_s is None:
            raise ValueError("sFID needs reference statistics with 'mu_s' and 'sigma_s'")
        streams = ["fake"] + ([] if self.reference is not None else ["real"])
        self._moments = {}
        for stream in streams:
            self._moments[stream] = _Moments(self, stream, extractor.pool_features)
            if spatial:
                self._moments[f"{stream}_spatial"] = _Moments(self, f"{stream}_spatial", extractor.spatial_features)

    def _add(self, stream: str, batch: Tensor | InceptionFeatures) -> None:
        if stream not in self._moments:
            raise ValueError(f"this metric has precomputed reference statistics; it takes no {stream} images")
        features = _as_features(self.extractor, batch)
        self._moments[stream].add(features.pool)
        if self.spatial:
            if features.spatial is None:
                raise ValueError("spatial=True but the features have no spatial part")
            self._moments[f"{stream}_spatial"].add(features.spatial)

    def update(self, real: Tensor | InceptionFeatures | None = None, fake: Tensor | InceptionFeatures | None = None) -> None:
        if real is not None:
            self._add("real", real)
        if fake is not None:
            self._add("fake", fake)

    def _stream_stats(self, stream: str) -> ReferenceStats:
        mu, sigma = self._moments[stream].stats()
        mu_s, sigma_s = self._moments[f"{stream}_spatial"].stats() if self.spatial else (None, None)
        return ReferenceStats(mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s)

    def real_stats(self) -> ReferenceStats:
        return self.reference if self.reference is not None else self._stream_stats("real")

    def fake_stats(self) -> ReferenceStats:
        return self._stream_stats("fake")

    def compute(self) -> FIDOutput:
        real, fake = self.real_stats(), self.fake_stats()
        fid = fid_from_stats(real.mu, real.sigma, fake.mu, fake.sigma, method=self.method)
        sfid = fid_from_stats(real.mu_s, real.sigma_s, fake.mu_s, fake.sigma_s, method=self.method) if self.spatial else None
        num_real = self._moments["real"].count if "real" in self._moments else 0
        return FIDOutput(fid=fid, sfid=sfid, num_real=num_real, num_fake=self._moments["fake"].count)


class ReconstructionFID(FrechetInceptionDistance):
    """rFID: originals against their reconstructions. ``update(originals, reconstructions)``."""

    def __init__(self, extractor: nn.Module, spatial: bool = False, method: str = "sqrtm", **kwargs) -> None:
        super().__init__(extractor, reference=None, spatial=spatial, method=method, **kwargs)

    def update(self, originals: Tensor | InceptionFeatures, reconstructions: Tensor | InceptionFeatures) -> None:
        self._add("real", originals)
        self._add("fake", reconstructions)


class GenerationFID(FrechetInceptionDistance):
    """gFID: samples against a reference set, given as statistics / ``.npz`` or streamed with ``real=True``.

    ``update(samples)`` adds generated images; ``update(images, real=True)`` adds reference images
    (only without precomputed ``reference``).
    """

    def update(self, images: Tensor | InceptionFeatures, real: bool = False) -> None:
        self._add("real" if real else "fake", images)


# --- Inception Score ---------------------------------------------------------------------------------
@dataclass
class InceptionScoreOutput:
    mean: float
    std: float  # population std (ddof=0) over splits, as the original code
    splits: list[float]


def inception_score_from_probs(probs: Tensor, splits: int = 10) -> InceptionScoreOutput:
    """IS = exp(E_x KL(p(y|x) || p(y))) per contiguous split of the (N, C) class probabilities."""
    probs = probs.to(torch.float64)
    n = probs.shape[0]
    if n < splits:
        raise ValueError(f"{n} samples cannot be cut into {splits} splits")
    scores = []
    for i in range(splits):
        part = probs[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(0, keepdim=True)
        kl = torch.special.xlogy(part, part) - torch.special.xlogy(part, marginal)
        scores.append(float(kl.sum(1).mean().exp()))
    values = np.asarray(scores)
    return InceptionScoreOutput(mean=float(values.mean()), std=float(values.std()), splits=scores)


class InceptionScore(Metric):
    """Streaming Inception Score over fake images. ``update(images)``; ``compute() -> InceptionScoreOutput``.

    Softmax over all ``num_classes`` logits by default (1008 for the FID Inception, as improved-gan,
    torch-fidelity and torchmetrics); ``num_classes=1000`` keeps the first 1000 logits only (the 2015
    graph's 8 extra outputs are not ImageNet classes). The logits are bias-free, see the inception module.
    """

    higher_is_better = True
    is_differentiable = False
    full_state_update = False

    def __init__(self, extractor: nn.Module, splits: int = 10, num_classes: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if getattr(extractor, "num_classes", None) is None:
            raise ValueError(f"the Inception Score needs an extractor with a classifier; {type(extractor).__name__} has "
                             "none (the fid-helper import lacks it: use pytorch-fid's pt_inception weights)")
        self.extractor, self.splits, self.num_classes = extractor, splits, num_classes
        self.add_state("logits", [], dist_reduce_fx="cat")

    def update(self, images: Tensor | InceptionFeatures) -> None:
        logits = _as_features(self.extractor, images).logits
        if logits is None:
            raise ValueError("the features have no logits")
        self.logits.append(logits[:, : self.num_classes].detach().float())

    def compute(self) -> InceptionScoreOutput:
        return inception_score_from_probs(dim_zero_cat(self.logits).double().softmax(1), self.splits)


# --- precision and recall (Kynkäänniemi et al. 2019) ------------------------------------------------
@dataclass
class PrecisionRecallOutput:
    precision: float  # share of fakes inside the real manifold
    recall: float  # share of reals inside the fake manifold


def knn_radii(features: Tensor, k: int = 3, batch_size: int = 1024) -> Tensor:
    """Distance of each point to its k-th nearest neighbour in the same set (itself excluded)."""
    if features.shape[0] <= k:
        raise ValueError(f"{features.shape[0]} points have no {k}-th nearest neighbour")
    radii = [torch.cdist(rows, features).kthvalue(k + 1, dim=1).values for rows in features.split(batch_size)]
    return torch.cat(radii)


def manifold_coverage(queries: Tensor, support: Tensor, radii: Tensor, batch_size: int = 1024) -> float:
    """Share of ``queries`` within ``radii[j]`` of some ``support[j]`` (the k-NN manifold estimate)."""
    inside = [(torch.cdist(rows, support) <= radii[None]).any(1) for rows in queries.split(batch_size)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: Tensor, fake: Tensor, k: int = 3, batch_size: int = 1024) -> PrecisionRecallOutput:
    """Improved precision and recall of ``fake`` against ``real`` feature sets (N, D), float64 distances."""
    real, fake = real.double(), fake.double()
    precision = manifold_coverage(fake, real, knn_radii(real, k, batch_size), batch_size)
    recall = manifold_coverage(real, fake, knn_radii(fake, k, batch_size), batch_size)
    return PrecisionRecallOutput(precision=precision, recall=recall)


class PrecisionRecall(Metric):
    """Streaming k-NN precision/recall. ``update(real=..., fake=...)``; ``compute() -> PrecisionRecallOutput``.

    Keeps every pool feature of both sets (see the module docstring for memory).
    """

    higher_is_better = True
    is_differentiable = False
    full_state_update = False

    def __init__(self, extractor: nn.Module, k: int = 3, batch_size: int = 1024, **kwargs) -> None:
        super().__init__(**kwargs)
        self.extractor, self.k, self.batch_size = extractor, k, batch_size
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, real: Tensor | InceptionFeatures | None = None, fake: Tensor | InceptionFeatures | None = None) -> None:
        if real is not None:
            self.real_features.append(_as_features(self.extractor, real).pool.detach().float())
        if fake is not None:
            self.fake_features.append(_as_features(self.extractor, fake).pool.detach().float())

    def compute(self) -> PrecisionRecallOutput:
        return precision_recall(dim_zero_cat(self.real_features), dim_zero_cat(self.fake_features), self.k, self.batch_size)
