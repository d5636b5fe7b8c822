"""Fixtures of the CLI tests: a saved tiny pipeline and a folder of images of several kinds."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.pipelines.conftest import tiny_pipeline

GOOD_IMAGES = ("colour.png", "grey.png", "sub/photo.jpg", "wide.png")
CORRUPT_IMAGE = "broken.png"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "flowmo_tiny"
    tiny_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory):
    """Four readable images (RGB, greyscale, a JPEG in a subfolder, a non-square one), a corrupt PNG, a text file."""
    folder = tmp_path_factory.mktemp("images")
    (folder / "sub").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "colour.png")
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), mode="L").save(folder / "grey.png")
    Image.fromarray(rng.integers(0, 256, (36, 48, 3), dtype=np.uint8)).save(folder / "sub" / "photo.jpg")
    Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(folder / "wide.png")
    png = (folder / "colour.png").read_bytes()
    (folder / CORRUPT_IMAGE).write_bytes(png[: len(png) // 2])  # truncated: a PNG header, then nothing
    (folder / "notes.txt").write_text("not an image, and not an image extension")
    return folder
