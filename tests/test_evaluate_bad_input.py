"""recipes/evaluate.py on imperfect data: unreadable files are skipped and listed (or fatal with --strict),
and the split defaults to one the dataset has."""

import io
import json

import datasets
import numpy as np
import pytest
from PIL import Image

from tests.pipelines.conftest import tiny_pipeline
from tests.recipes import run_recipe
from tokenizer_zoo.data import InvalidImageError, evaluation_split

FAST = ["--batch-size", "2", "--steps", "1", "--no-fid", "--lpips"]


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    stream = io.BytesIO()
    Image.fromarray(pixels).save(stream, "PNG")
    return stream.getvalue()


@pytest.fixture
def model(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "model")
    return str(tmp_path / "model")


@pytest.fixture
def messy_folder(tmp_path):
    """Three good images and three bad files (empty, truncated, text) with image extensions."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for index, name in enumerate(["a.png", "b.png", "sub/c.png"]):
        (folder / name).write_bytes(_png(index))
    (folder / "empty.png").write_bytes(b"")
    (folder / "sub" / "truncated.png").write_bytes(_png(9)[:200])
    (folder / "notes.jpg").write_text("not an image")
    return folder


def test_unreadable_images_are_skipped_and_listed(tmp_path, model, messy_folder):
    result = run_recipe("evaluate", ["--model", model, "--dataset", f"imagefolder:{messy_folder}",
                                     "--output-dir", str(tmp_path / "eval"), *FAST])
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["split"] == "train"  # an image folder's one split, without --split
    assert saved["num_images"] == 3 and np.isfinite(saved["metrics"]["psnr"])
    assert [entry["file"] for entry in saved["skipped"]] == ["empty.png", "notes.jpg", "sub/truncated.png"]
    reasons = {entry["file"]: entry["reason"] for entry in saved["skipped"]}
    assert "empty (0 bytes)" in reasons["empty.png"]
    assert "truncated" in reasons["sub/truncated.png"] and "cannot read" in reasons["notes.jpg"]


def test_strict_refuses_unreadable_images_before_any_work(tmp_path, model, messy_folder, monkeypatch):
    from tokenizer_zoo.pipelines import FlowMoPipeline

    def encode(*args, **kwargs):
        raise AssertionError("encoded images although --strict should have stopped first")

    monkeypatch.setattr(FlowMoPipeline, "encode", encode)
    with pytest.raises(InvalidImageError, match=r"^3 of 6 images cannot be read, first empty.png: .*--strict"):
        run_recipe("evaluate", ["--model", model, "--dataset", f"imagefolder:{messy_folder}",
                                "--output-dir", str(tmp_path / "eval"), "--strict", *FAST])
    assert not (tmp_path / "eval").exists()


def _hub_style_dataset(folder, splits):
    """A dataset folder laid out like a Hub dataset repository (data/SPLIT-*.parquet), loadable offline."""
    features = datasets.Features({"image": datasets.Image()})
    for index, split in enumerate(splits):
        rows = {"image": [{"bytes": _png(10 * index + i), "path": None} for i in range(2)]}
        datasets.Dataset.from_dict(rows, features=features).to_parquet(folder / "data" / f"{split}-00000-of-00001.parquet")
    return str(folder)


@pytest.mark.parametrize("splits, expected", [(["train", "validation", "test"], "validation"),
                                              (["train", "test"], "test"), (["train"], "train")])
def test_the_default_split_is_validation_else_test_else_train(tmp_path, splits, expected):
    assert evaluation_split(_hub_style_dataset(tmp_path, splits)) == expected


def test_evaluate_without_split_uses_the_datasets_own(tmp_path, model):
    dataset = _hub_style_dataset(tmp_path / "hub", ["train", "test"])
    result = run_recipe("evaluate", ["--model", model, "--dataset", dataset, "--output-dir", str(tmp_path / "eval"),
                                     *FAST])
    assert result["split"] == "test" and result["num_images"] == 2


def test_embedded_data_defaults_to_its_eval_split_and_folders_list_their_splits(tmp_path, messy_folder):
    assert evaluation_split("embedded") == "eval" and evaluation_split(f"imagefolder:{messy_folder}") == "train"
    for split in ("train", "test"):
        (tmp_path / "split" / split).mkdir(parents=True)
        (tmp_path / "split" / split / "x.png").write_bytes(_png(0))
    assert evaluation_split(f"imagefolder:{tmp_path / 'split'}") == "test"
