"""generation_metrics: gFID/sFID/precision/recall/IS of feature sets, against closed forms and brute force."""

import numpy as np
import pytest
import torch
from scipy import linalg

from tokenizer_zoo.metrics.fid import inception_score_from_probs
from tokenizer_zoo.metrics.generation import PixelClassifier, generation_metrics, inception_features
from tokenizer_zoo.metrics.inception import InceptionFeatures


class FeatureSizes(torch.nn.Module):
    """Stands in for the Inception network where the metrics only read feature sizes (features are given)."""

    pool_features, spatial_features, num_classes = 6, 4, 5


class MeanColourFeatures(torch.nn.Module):
    """A tiny feature network: a linear map of the mean colour (pool features only)."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, images):
        return InceptionFeatures(pool=self.linear(images.mean((2, 3))))


def _features(seed, n=300, shift=0.0, logits=False):
    generator = torch.Generator().manual_seed(seed)
    return InceptionFeatures(pool=torch.randn(n, 6, generator=generator, dtype=torch.float64) + shift,
                             spatial=torch.randn(n, 4, generator=generator, dtype=torch.float64) * 2,
                             logits=torch.randn(n, 5, generator=generator, dtype=torch.float64) if logits else None)


def _fid(a, b):
    a, b = a.numpy(), b.numpy()
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))


def test_values_match_independent_computations():
    real, fake = _features(0), _features(1, shift=0.5, logits=True)
    values, skipped = generation_metrics(FeatureSizes(), real, fake, k=3)
    assert skipped == {}
    assert values["gfid"] == pytest.approx(_fid(real.pool, fake.pool), rel=1e-6)
    assert values["sfid"] == pytest.approx(_fid(real.spatial, fake.spatial), rel=1e-6)
    # precision: share of fakes within the 3rd-nearest-neighbour radius of some real point (brute force)
    d_rr, d_fr = torch.cdist(real.pool, real.pool), torch.cdist(fake.pool, real.pool)
    radii = d_rr.sort(dim=1).values[:, 3]
    assert values["precision"] == pytest.approx(float((d_fr <= radii[None]).any(1).double().mean()))
    d_ff, d_rf = torch.cdist(fake.pool, fake.pool), torch.cdist(real.pool, fake.pool)
    assert values["recall"] == pytest.approx(float((d_rf <= d_ff.sort(dim=1).values[:, 3][None]).any(1).double().mean()))
    assert values["inception_score"] == pytest.approx(inception_score_from_probs(fake.logits.softmax(1)).mean)


def test_identical_sets_score_perfectly_and_missing_classifier_is_reported():
    real = _features(2)
    values, skipped = generation_metrics(FeatureSizes(), real, real)
    assert abs(values["gfid"]) < 1e-6 and values["precision"] == values["recall"] == 1.0
    assert "inception_score" not in values and "pt_inception" in skipped["inception_score"]


def test_features_of_batches_are_concatenated():
    extractor = MeanColourFeatures()
    batches = [torch.randn(4, 3, 8, 8), torch.randn(2, 3, 8, 8)]
    features = inception_features(extractor, batches)
    assert features.pool.shape == (6, 2) and features.spatial is None and features.logits is None
    with torch.no_grad():
        assert torch.allclose(features.pool, extractor.linear(torch.cat(batches).mean((2, 3))))
    with pytest.raises(ValueError, match="no images"):
        inception_features(extractor, [])


def test_pixel_classifier_scores_label_agreement():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 4
    images = torch.randn(200, 3, 8, 8, generator=generator) * 0.1
    for k in range(4):  # class k is bright in quadrant k
        top, left = divmod(k, 2)
        images[labels == k, :, 4 * top:4 * top + 4, 4 * left:4 * left + 4] += 1.0
    classifier = PixelClassifier(images[:100], labels[:100])
    assert classifier.accuracy(images[100:], labels[100:]) == 1.0
    assert classifier.accuracy(images[100:], (labels[100:] + 1) % 4) == 0.0
