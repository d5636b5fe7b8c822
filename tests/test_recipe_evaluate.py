"""recipes/evaluate.py wiring: metrics JSON, Table-1 row, grid, skipped metrics, any pipeline."""

import json

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio

from tests.pipelines.conftest import tiny_pipeline
from tests.pipelines.one_pass_decoder import LinearTestDecoder
from tests.recipes import run_recipe
from tokenizer_zoo.data import load_image_dataset
from tokenizer_zoo.pipelines import TokenizerPipeline
from tokenizer_zoo.presets import build_tokenizer

FAST = ["--dataset", "embedded", "--num-images", "4", "--batch-size", "2", "--steps", "2", "--no-fid"]


def _evaluate(argv):
    return run_recipe("evaluate", argv)


def test_flowmo_evaluation_writes_json_table_and_grid(tmp_path):
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "model")
    result = _evaluate(["--model", str(tmp_path / "model"), "--output-dir", str(tmp_path / "eval"), "--lpips", *FAST,
                        "--save-to-model"])
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["metrics"] == result["metrics"] and saved["num_images"] == 4
    assert saved["sampler"]["num_inference_steps"] == 2 and saved["skipped"] == []
    assert saved["skipped_metrics"]["rfid"] == "disabled with --no-fid"
    assert saved["metrics"]["bpp"] == 16 * 18 / 32**2
    # independent PSNR: the same reconstructions (same per-batch generators) scored by scikit-image
    data = load_image_dataset("embedded", "eval", 32, train=False)
    scores = []
    for index in range(2):
        images = torch.stack([data[2 * index + i]["pixel_values"] for i in range(2)])
        generator = torch.Generator().manual_seed(index * 1009)
        recon = pipe.decode(pipe.encode((images + 1) / 2), num_inference_steps=2, generator=generator,
                            output_type="pt").images * 2 - 1
        scores += [peak_signal_noise_ratio(a.numpy().astype(np.float64), b.numpy().astype(np.float64), data_range=2)
                   for a, b in zip(images, recon)]
    assert abs(saved["metrics"]["psnr"] - np.mean(scores)) < 1e-4
    # code gain: one-step predictions at t = 1 from each batch's noise, with and without the code
    with_code, without = [], []
    for index in range(2):
        images = torch.stack([data[2 * index + i]["pixel_values"] for i in range(2)])
        noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(index))
        codes = pipe.encode((images + 1) / 2).codes
        for drop, scores_of in ((False, with_code), (True, without)):
            x_hat = noise - pipe.decoder(codes, noise, torch.ones(2), drop_code=drop)
            scores_of += [peak_signal_noise_ratio(a.numpy().astype(np.float64), b.detach().numpy().astype(np.float64),
                                                  data_range=2) for a, b in zip(images, x_hat)]
    assert abs(saved["metrics"]["x0_psnr_code"] - np.mean(with_code)) < 1e-4
    assert abs(saved["metrics"]["code_gain_db"] - (np.mean(with_code) - np.mean(without))) < 1e-4
    row = (tmp_path / "eval" / "table_row.md").read_text().splitlines()
    assert row[0] == "| model | BPP | rFID | PSNR | SSIM | LPIPS |"
    assert row[2].startswith(f"| {tmp_path / 'model'} | 0.2812 | – | {saved['metrics']['psnr']:.2f} |")
    assert (tmp_path / "eval" / "grid.png").is_file()
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["psnr"] == saved["metrics"]["psnr"]


def test_missing_lpips_weights_are_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENIZER_ZOO_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    tiny_pipeline().save_pretrained(tmp_path / "model")
    result = _evaluate(["--model", str(tmp_path / "model"), "--output-dir", str(tmp_path / "eval"),
                        "--lpips", "vgg", *FAST])
    assert "lpips_vgg" not in result["metrics"]
    assert "import_weights lpips" in result["skipped_metrics"]["lpips_vgg"]


def test_one_pass_pipelines_are_evaluated_too(tmp_path):
    parts = build_tokenizer("flowmo_tiny")
    TokenizerPipeline(parts.encoder, parts.quantizer, LinearTestDecoder()).save_pretrained(tmp_path / "model")
    result = _evaluate(["--model", str(tmp_path / "model"), "--output-dir", str(tmp_path / "eval"), "--lpips", *FAST])
    assert result["pipeline"] == "TokenizerPipeline" and result["sampler"] == "one pass"
    assert "code_gain_db" not in result["metrics"]
    assert np.isfinite(result["metrics"]["psnr"]) and np.isfinite(result["metrics"]["ssim"])
