"""tokenizer-zoo compare: zoo pipelines and release files, the four files, an independent PSNR, failing models."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from tests.evaluation.conftest import FLOWMO_RELEASE, LLAMAGEN_RELEASE, fresh_accelerate_state
from tokenizer_zoo.cli import main
from tokenizer_zoo.data import load_image_dataset
from tokenizer_zoo.evaluation.models import ModelArgumentError, ModelSpec
from tokenizer_zoo.evaluation.report import COLUMNS, FILES
from tokenizer_zoo.pipelines import load_pipeline

FAST = ["--num-images", "4", "--batch-size", "2", "--steps", "2", "--guidance", "1", "--no-fid"]


def _compare(capsys, *argv):
    fresh_accelerate_state()
    code = main(["compare", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def compared(models, tmp_path_factory):
    """One run on a FlowMo pipeline, a one-pass pipeline, the FlowMo release file and a missing model."""
    out = tmp_path_factory.mktemp("compare")
    fresh_accelerate_state()
    code = main(["compare", models["flowmo"], f"cnn={models['cnn_fsq']}", f"release={FLOWMO_RELEASE}",
                 "broken=/no/such/model", *FAST, "-o", out])
    return code, out, json.loads((out / "compare.json").read_text())


@pytest.mark.slow
def test_pipelines_and_a_release_file_give_four_files_and_a_row_each(compared):
    code, out, saved = compared
    assert code == 0 and sorted(p.name for p in out.iterdir()) == sorted(FILES)
    rows = {row["name"]: row for row in saved["models"]}
    assert list(rows) == ["flowmo", "cnn", "release", "broken"]
    assert rows["flowmo"]["pipeline"] == "FlowMoPipeline" and rows["cnn"]["pipeline"] == "TokenizerPipeline"
    assert rows["release"]["pipeline"] == "FlowMoPipeline" and rows["release"]["native_size"] == 32
    for name in ("flowmo", "cnn", "release"):
        row = rows[name]
        assert row["error"] is None and row["tokens"] == 16 and row["bits_per_token"] == 18
        assert row["metrics"]["bpp"] == pytest.approx(16 * 18 / 32**2)
        assert {"psnr", "ssim", "lpips_vgg"} <= set(row["metrics"]) and row["encode_images_per_second"] > 0
    # NFE counted by a hook on the decoder: 2 steps without guidance; a one-pass decoder runs once
    assert rows["flowmo"]["nfe"] == 2 and rows["release"]["nfe"] == 2 and rows["cnn"]["nfe"] == 1
    assert rows["cnn"]["sampler"] == "one pass" and rows["flowmo"]["sampler"]["num_inference_steps"] == 2
    assert saved["settings"]["num_images"] == 4 and saved["settings"]["resolution"] == 32
    assert "centre-cropped to 32 x 32" in saved["settings"]["preprocessing"]
    assert "rfid" in rows["flowmo"]["skipped_metrics"]


@pytest.mark.slow
def test_table_is_sorted_by_bpp_and_lists_the_failed_model_with_one_line(compared):
    _, out, saved = compared
    lines = (out / "compare.md").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    assert lines[header] == "| " + " | ".join(COLUMNS) + " |"
    table = [line for line in lines[header + 2:] if line.startswith("| ")]
    assert [line.split(" | ")[0][2:] for line in table] == ["flowmo", "cnn", "release"]  # equal BPP: given order
    psnr = {row["name"]: row["metrics"].get("psnr") for row in saved["models"]}
    assert f"| {psnr['cnn']:.2f} |" in table[1]
    reason = next(line for line in lines if line.startswith("- broken"))
    assert "/no/such/model" in reason and "cannot load" in reason
    broken = next(row for row in saved["models"] if row["name"] == "broken")
    assert "\n" not in broken["error"] and broken["metrics"] == {}
    with Image.open(out / "grid.png") as grid:  # original row + three model rows of 4 tiles (4 images < 8)
        assert grid.height >= 4 * 96 and grid.width >= 4 * 96


@pytest.mark.slow
def test_one_rows_psnr_matches_skimage_on_the_same_resized_images(compared, models):
    _, _, saved = compared
    pipe = load_pipeline(models["cnn_fsq"])
    data = load_image_dataset("embedded", "eval", 32, train=False)  # the centre-crop + resize compare applies
    images = torch.stack([data[i]["pixel_values"] for i in range(4)])
    recon = pipe((images + 1) / 2, output_type="np").images  # (4, 32, 32, 3) in [0, 1]
    originals = ((images + 1) / 2).permute(0, 2, 3, 1).double().numpy()
    scores = [peak_signal_noise_ratio(a, b.astype(np.float64), data_range=1.0) for a, b in zip(originals, recon)]
    row = next(row for row in saved["models"] if row["name"] == "cnn")
    assert abs(row["metrics"]["psnr"] - np.mean(scores)) < 0.01


def test_exit_status_is_not_zero_when_no_model_ran(capsys, tmp_path):
    code, _, err = _compare(capsys, "/no/such/model", f"{tmp_path}/empty", "-o", tmp_path / "out")
    assert code == 1 and "none of the 2 models ran" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "out" / "compare.md").read_text().count("cannot load") == 2


@pytest.mark.slow
def test_models_of_other_sizes_are_compared_at_the_given_resolution(capsys, models, tmp_path):
    code, _, _ = _compare(capsys, models["cnn_fsq"], LLAMAGEN_RELEASE, "--resolution", "24", *FAST[2:],
                          "--num-images", "2", "--lpips", "-o", tmp_path)
    cnn, llamagen = json.loads((tmp_path / "compare.json").read_text())["models"]
    assert code == 0 and cnn["native_size"] == 32 and llamagen["native_size"] == 256
    assert llamagen["pipeline"] == "TokenizerPipeline" and llamagen["tokens"] == 1024 and llamagen["error"] is None
    # the bits describe the 24 x 24 images compared
    assert cnn["metrics"]["bpp"] == pytest.approx(16 * 18 / 24**2)
    assert llamagen["metrics"]["bpp"] == pytest.approx(1024 * 9 / 24**2)
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.height == 3 * 4 * 26  # three rows of 24 px tiles with a 1 px border, enlarged 4 times


def test_model_arguments():
    assert ModelSpec.parse("out/run/pipeline") == ModelSpec("pipeline", "out/run/pipeline")
    assert ModelSpec.parse("lo=flowmo_lo,weights=raw") == ModelSpec("lo", "flowmo_lo", {"weights": "raw"})
    spec = ModelSpec.parse("x.pth,config=x.yaml,format=flowmo")
    assert spec.options == {"config": "x.yaml", "format": "flowmo"} and not spec.is_zoo_pipeline
    assert ModelSpec.parse("someone/flowmo-lo").is_zoo_pipeline
    with pytest.raises(ModelArgumentError, match="config=..."):
        ModelSpec.parse("x.pth,colour=red")


@pytest.mark.slow
def test_two_accelerate_processes_give_the_single_process_row(models, tmp_path):
    """``accelerate launch`` splits the images (5 images, batch 1: 3 and 2) and the metrics sum over both."""
    argv = ["-m", "tokenizer_zoo.cli", "compare", str(models["cnn_fsq"]), "--num-images", "5", "--batch-size", "1",
            "--no-fid", "--lpips"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # one thread per process, as in CI's 2 cores
    done = subprocess.run([*launch, *argv, "-o", str(tmp_path / "two")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    fresh_accelerate_state()
    assert main(argv[2:] + ["-o", str(tmp_path / "one")]) == 0
    two, one = (json.loads((tmp_path / run / "compare.json").read_text()) for run in ("two", "one"))
    assert two["settings"]["processes"] == 2 and two["settings"]["num_images"] == one["settings"]["num_images"] == 5
    for name, value in one["models"][0]["metrics"].items():
        assert two["models"][0]["metrics"][name] == pytest.approx(value, rel=1e-5), name


def _closest_jpeg(pixels: np.ndarray, target_bits: float) -> bytes:
    """Brute force with Pillow: the JPEG (optimised tables) whose size is closest to the target, ties the higher quality."""
    files = []
    for quality in range(1, 101):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality, optimize=True)
        files.append(buffer.getvalue())
    return min(reversed(files), key=lambda file: abs(8 * len(file) - target_bits))


def test_file_codec_rows_report_the_bits_their_files_reached(capsys, tmp_path):
    code, _, _ = _compare(capsys, "jpeg=codec:jpeg_tiny", "webp=codec:webp_tiny", "--num-images", "3",
                          "--batch-size", "2", "--no-fid", "--lpips", "-o", tmp_path)
    rows = {row["name"]: row for row in json.loads((tmp_path / "compare.json").read_text())["models"]}
    assert code == 0 and all(row["error"] is None for row in rows.values())
    data = load_image_dataset("embedded", "eval", 32, train=False)
    originals = [np.round((data[i]["pixel_values"].permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)
                 for i in range(3)]
    files = [_closest_jpeg(pixels, 16 * 18) for pixels in originals]
    decoded = [np.asarray(Image.open(io.BytesIO(file)).convert("RGB")) for file in files]
    jpeg = rows["jpeg"]
    assert jpeg["metrics"]["bpp"] == pytest.approx(sum(8 * len(file) for file in files) / (3 * 32 * 32))
    # the metrics compare the dataset's float images with the decoded files; skimage on the same pair
    unit = [(data[i]["pixel_values"].permute(1, 2, 0).double().numpy() + 1) / 2 for i in range(3)]
    scores = [peak_signal_noise_ratio(a, b / 255.0, data_range=1.0) for a, b in zip(unit, decoded)]
    assert abs(jpeg["metrics"]["psnr"] - np.mean(scores)) < 0.01
    # no decoder network: no NFE, no parameters, no token grid; the table says the BPP was reached
    assert jpeg["nfe"] is None and jpeg["encoder_parameters"] == jpeg["decoder_parameters"] == 0
    assert jpeg["tokens"] is None and jpeg["sampler"] == "file codec" and rows["webp"]["metrics"]["bpp"] > 0
    table = (tmp_path / "compare.md").read_text()
    line = next(line for line in table.splitlines() if line.startswith("| jpeg |"))
    assert f"| {jpeg['metrics']['bpp']:.4f} reached | 0 / 0 |" in line and line.endswith("| – |")
