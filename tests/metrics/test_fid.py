"""FID family metrics on constructed statistics and a tiny *randomly initialised* feature network.

No test here needs real Inception weights: ``TinyRandomFeatureNet`` stands in for the extractor.
"""

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from tokenizer_zoo.metrics.fid import (
    FrechetInceptionDistance,
    GenerationFID,
    InceptionScore,
    PrecisionRecall,
    ReconstructionFID,
    ReferenceStats,
    fid_from_stats,
    inception_score_from_probs,
    knn_radii,
    precision_recall,
)
from tokenizer_zoo.metrics.inception import InceptionFeatures

METHODS = ["sqrtm", "eigh"]


class TinyRandomFeatureNet(nn.Module):
    """A randomly initialised stand-in for the FID Inception: 8 pool features, 6 spatial, 5 logits."""

    pool_features, spatial_features, num_classes = 8, 6, 5

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.spatial = nn.Conv2d(8, 6, 1)
        self.head = nn.Linear(8, 5)

    def forward(self, images):
        x = torch.tanh(self.conv(images))
        pool = x.mean((2, 3))
        return InceptionFeatures(pool=pool, spatial=self.spatial(x).mean((2, 3)), logits=self.head(pool))


@pytest.fixture
def net():
    return TinyRandomFeatureNet().eval()


def _random_spd(rng, d, rank=None):
    factor = rng.standard_normal((d, rank or d))
    return factor @ factor.T / d + (0 if rank else 0.1 * np.eye(d))


# --- Fréchet distance ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_fid_matches_closed_form_for_diagonal_covariances(method):
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
    s1, s2 = rng.uniform(0.1, 3, 16), rng.uniform(0.1, 3, 16)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert fid_from_stats(mu1, np.diag(s1), mu2, np.diag(s2), method=method) == pytest.approx(expected, rel=1e-9)
    assert fid_from_stats(mu1, np.diag(s1), mu1, np.diag(s1), method=method) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_fid_matches_direct_scipy_sqrtm_on_random_spd(method):
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    s1, s2 = _random_spd(rng, 32), _random_spd(rng, 32)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root)
    assert fid_from_stats(mu1, s1, mu2, s2, method=method) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_fid_is_stable_for_rank_deficient_covariances(method):
    rng = np.random.default_rng(2)
    x1, x2 = rng.standard_normal((12, 64)), rng.standard_normal((10, 64)) + 0.3  # few samples, high dimension
    mu1, mu2, s1, s2 = x1.mean(0), x2.mean(0), np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    # Exact reference: with sigma_i = A_i A_i^T, tr sqrt(s1 s2) is the nuclear norm of A_1^T A_2.
    a1, a2 = (x1 - mu1).T / np.sqrt(11), (x2 - mu2).T / np.sqrt(9)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.linalg.svd(a1.T @ a2, compute_uv=False).sum()
    value = fid_from_stats(mu1, s1, mu2, s2, method=method)
    assert np.isfinite(value) and value >= 0
    assert value == pytest.approx(expected, rel=1e-3)
    assert fid_from_stats(mu1, s1, mu1, s1, method=method) == pytest.approx(0, abs=1e-3 * np.trace(s1))


def test_fid_rejects_mismatched_stats_and_unknown_method():
    with pytest.raises(ValueError, match="mismatched"):
        fid_from_stats(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="unknown method"):
        fid_from_stats(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3), method="svd")


# --- streaming FID metrics ---------------------------------------------------------------------------
def test_streaming_statistics_equal_one_shot(net):
    real, fake = torch.rand(23, 3, 16, 16) * 2 - 1, torch.rand(17, 3, 16, 16) * 1.6 - 0.8
    metric = FrechetInceptionDistance(net, spatial=True)
    for r, f in zip(real.split(5), fake.split(4)):
        metric.update(real=r, fake=f)
    metric.update(fake=fake[-1:])  # zip stopped early; uneven streams are fine
    with torch.no_grad():
        fr, ff = net(real), net(torch.cat([fake, fake[-1:]]))
    stats = metric.real_stats()
    np.testing.assert_allclose(stats.mu, fr.pool.double().mean(0).numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stats.sigma, np.cov(fr.pool.double().numpy(), rowvar=False), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stats.sigma_s, np.cov(fr.spatial.double().numpy(), rowvar=False), rtol=1e-6, atol=1e-9)
    result = metric.compute()
    expected = fid_from_stats(fr.pool.double().mean(0), np.cov(fr.pool.double().numpy(), rowvar=False),
                              ff.pool.double().mean(0), np.cov(ff.pool.double().numpy(), rowvar=False))
    assert result.fid == pytest.approx(expected, rel=1e-6)
    assert result.sfid is not None and result.sfid > 0
    assert (result.num_real, result.num_fake) == (23, 18)


def test_rfid_of_identical_images_is_zero_and_features_can_be_passed(net):
    images = torch.rand(20, 3, 16, 16) * 2 - 1
    metric = ReconstructionFID(net, spatial=True)
    metric.update(images[:10], images[:10])
    features = net(images[10:])
    metric.update(features, features)
    result = metric.compute()
    assert result.fid == pytest.approx(0, abs=1e-6) and result.sfid == pytest.approx(0, abs=1e-6)
    metric.reset()
    metric.update(images, images.flip(-1) * 0.5)
    assert metric.compute().fid > 1e-3


def test_reference_npz_round_trip(net, tmp_path):
    real, fake = torch.rand(30, 3, 16, 16) * 2 - 1, torch.rand(30, 3, 16, 16) - 0.5
    streamed = GenerationFID(net, spatial=True)
    streamed.update(real, real=True)
    streamed.update(fake)
    path = tmp_path / "reference.npz"
    streamed.real_stats().save(path)
    loaded = ReferenceStats.load(path)
    np.testing.assert_array_equal(loaded.sigma_s, streamed.real_stats().sigma_s)
    from_file = GenerationFID(net, reference=path, spatial=True)
    from_file.update(fake)
    a, b = streamed.compute(), from_file.compute()
    assert (b.fid, b.sfid) == pytest.approx((a.fid, a.sfid), rel=1e-10)
    assert b.num_real == 0
    with pytest.raises(ValueError, match="precomputed reference"):
        from_file.update(real, real=True)


def test_reference_loading_refuses_pickles_and_checks_keys(tmp_path):
    np.savez(tmp_path / "objects.npz", mu=np.array([object()], dtype=object), sigma=np.eye(1))
    with pytest.raises(ValueError, match="allow_pickle"):
        ReferenceStats.load(tmp_path / "objects.npz")
    np.savez(tmp_path / "other.npz", mean=np.zeros(2))
    with pytest.raises(KeyError, match="mu"):
        ReferenceStats.load(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="mu_s"):
        GenerationFID(TinyRandomFeatureNet(), reference=ReferenceStats(np.zeros(8), np.eye(8)), spatial=True)


# --- Inception Score ------------------------------------------------------------------------------------
@pytest.mark.parametrize("classes", [1, 4, 10])
def test_inception_score_of_one_hot_predictions_with_uniform_marginal_is_the_class_count(classes):
    probs = torch.eye(classes).repeat(6, 1)  # every class equally often, each prediction certain
    result = inception_score_from_probs(probs, splits=3)
    assert result.mean == pytest.approx(classes) and result.std == pytest.approx(0, abs=1e-12)
    assert result.splits == pytest.approx([classes] * 3)


def test_inception_score_of_identical_predictions_is_one():
    probs = torch.softmax(torch.randn(1, 7), 1).repeat(40, 1)
    assert inception_score_from_probs(probs, splits=4).mean == pytest.approx(1)


def test_inception_score_splits_mean_and_std():
    probs = torch.cat([torch.eye(2).repeat(5, 1), torch.full((10, 2), 0.5)])  # IS 2, then IS 1
    result = inception_score_from_probs(probs, splits=2)
    assert result.splits == pytest.approx([2, 1]) and (result.mean, result.std) == pytest.approx((1.5, 0.5))


def test_inception_score_metric_streams_logits(net):
    metric = InceptionScore(net, splits=2)
    logits = 60 * torch.eye(5).repeat(4, 1)  # near one-hot softmax over 5 classes
    for chunk in logits.split(6):
        metric.update(InceptionFeatures(pool=torch.zeros(len(chunk), 8), logits=chunk))
    assert metric.compute().mean == pytest.approx(5, rel=1e-6)
    metric.reset()
    metric.update(torch.rand(10, 3, 16, 16) * 2 - 1)
    assert 1 <= metric.compute().mean <= 5


def test_inception_score_needs_a_classifier(net):
    net.num_classes = None
    with pytest.raises(ValueError, match="classifier"):
        InceptionScore(net)


# --- precision and recall ---------------------------------------------------------------------------------
def test_knn_radii_excludes_the_point_itself():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(points, k=1).tolist() == [1, 1, 2, 4]
    assert knn_radii(points, k=3, batch_size=3).tolist() == [7, 6, 4, 7]


def test_precision_recall_on_constructed_sets():
    cluster = torch.randn(40, 5)
    same = precision_recall(cluster, cluster.clone(), k=3, batch_size=7)
    assert (same.precision, same.recall) == (1.0, 1.0)
    far = precision_recall(cluster, cluster + 1000, k=3)
    assert (far.precision, far.recall) == (0.0, 0.0)
    other = torch.randn(20, 5) + 1000  # real = cluster + other, fake = cluster only
    subset = precision_recall(torch.cat([cluster, other]), cluster, k=3)
    assert subset.precision == 1.0 and subset.recall == pytest.approx(40 / 60)


def test_precision_recall_metric_streams(net):
    real, fake = torch.rand(24, 3, 16, 16) * 2 - 1, torch.rand(16, 3, 16, 16) * 2 - 1
    metric = PrecisionRecall(net, k=3, batch_size=5)
    for r, f in zip(real.split(8), fake.split(8)):
        metric.update(real=r, fake=f)
    metric.update(real=real[16:])
    expected = precision_recall(net(real).pool, net(fake).pool, k=3)
    result = metric.compute()
    assert (result.precision, result.recall) == pytest.approx((expected.precision, expected.recall))
