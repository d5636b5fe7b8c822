"""reconstruction_metrics: the evaluate recipe's set, with missing LPIPS weights skipped and reported."""

import pytest
import torch

from tests.metrics.helpers import TinyRandomLPIPS, noisy, photo_crops
from tokenizer_zoo.losses import IMPORT_COMMAND
from tokenizer_zoo.metrics import LPIPS, PSNR, SSIM, ReconstructionMetrics, reconstruction_metrics


def _tiny_network(net, weights_path):
    """Stands in for build_lpips: a tiny random network per backbone name (NOT real LPIPS)."""
    return TinyRandomLPIPS(seed=len(net))


def test_missing_weights_are_skipped_with_the_import_command(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENIZER_ZOO_CACHE", str(tmp_path / "zoo"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    metrics = reconstruction_metrics()
    assert isinstance(metrics, ReconstructionMetrics)
    assert sorted(metrics.keys()) == ["psnr", "ssim"]
    assert sorted(metrics.skipped) == ["lpips_alex", "lpips_vgg"]
    assert all(IMPORT_COMMAND in reason for reason in metrics.skipped.values())
    references = photo_crops()
    metrics.update(noisy(references, 0.1), references)
    assert sorted(metrics.summary()) == ["psnr", "ssim"]


def test_every_metric_gets_every_batch():
    metrics = reconstruction_metrics(build_network=_tiny_network)
    assert sorted(metrics.keys()) == ["lpips_alex", "lpips_vgg", "psnr", "ssim"] and metrics.skipped == {}
    separate = {"psnr": PSNR(), "ssim": SSIM()}
    separate.update({f"lpips_{net}": LPIPS(network=_tiny_network(net, None)) for net in ("vgg", "alex")})
    references = photo_crops().float()
    # the first batch is identical images: equal LPIPS states must not merge the two LPIPS metrics
    for images in (references, noisy(references, 0.1), noisy(references, 0.3)):
        metrics.update(images, references)
        for metric in separate.values():
            metric.update(images, references)
    summary = metrics.summary()
    assert summary.keys() == separate.keys()
    for name, metric in separate.items():
        assert summary[name] == pytest.approx(metric.compute().item(), rel=1e-12), name
    metrics.reset()
    metrics.update(references, references)
    assert metrics.summary()["lpips_vgg"] == 0.0


def test_selected_backbones_and_weights_paths_are_passed_on():
    calls = []

    def recording(net, weights_path):
        calls.append((net, weights_path))
        return TinyRandomLPIPS()

    metrics = reconstruction_metrics(lpips_nets=("alex",), lpips_weights={"alex": "alex.safetensors"}, build_network=recording)
    assert calls == [("alex", "alex.safetensors")]
    assert sorted(metrics.keys()) == ["lpips_alex", "psnr", "ssim"]
    references = photo_crops().float()
    metrics.update(noisy(references, 0.1), references)
    assert torch.is_tensor(metrics.compute()["lpips_alex"])
