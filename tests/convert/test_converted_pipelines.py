"""Everything the zoo does with a pipeline works on a converted release: one test per fixture of tests/convert/fixtures.

`tokenizer-zoo convert` (offline) -> load_pipeline / from_pretrained -> the CLI's encode, decode and
reconstruct with token files -> recipes/evaluate.py -> MaskGiT training and sampling on the release's tokens.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from tests.convert.fixtures import CONVERTED
from tests.recipes import run_recipe
from tokenizer_zoo.cli import main
from tokenizer_zoo.convert import load_release
from tokenizer_zoo.data import EmbeddedDigits
from tokenizer_zoo.generation import MaskGiT
from tokenizer_zoo.pipelines import MaskGiTPipeline, load_pipeline
from tokenizer_zoo.training.maskgit import cached_tokens
from tokenizer_zoo.tokens import load_tokens

FAST_DECODE = ["--steps", "2", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module", params=CONVERTED, ids=lambda fixture: fixture.name)
def converted(request, tmp_path_factory):
    """(fixture, the folder `tokenizer-zoo convert` wrote, the pipeline load_release builds in memory)."""
    fixture = request.param
    folder = tmp_path_factory.mktemp(fixture.name) / "converted"
    config = ["--config", str(fixture.config)] if fixture.config else []
    assert main(["convert", str(fixture.checkpoint), *config, "-o", str(folder), "--quiet"]) == 0
    return fixture, folder, load_release(fixture.checkpoint, config=fixture.config)


def _photos(folder, size: int, count: int = 2):
    rng = np.random.default_rng(0)
    folder.mkdir()
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"photo{index}.png")
    return folder


def test_saved_folder_loads_and_encodes_as_the_conversion(converted, tmp_path):
    fixture, folder, in_memory = converted
    loaded = load_pipeline(folder)
    assert type(loaded) is type(in_memory) and loaded.info["release_format"] == fixture.format
    assert loaded.info["dropped_keys"] == in_memory.info["dropped_keys"]
    images = torch.rand(2, 3, fixture.image_size, fixture.image_size, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.encode(images).indices, in_memory.encode(images).indices)
    again = type(loaded).from_pretrained(folder)
    assert torch.equal(again.encode(images).indices, in_memory.encode(images).indices)


def test_the_command_line_encodes_decodes_and_reconstructs(converted, tmp_path, capsys):
    fixture, folder, in_memory = converted
    photos = _photos(tmp_path / "photos", fixture.image_size)
    tokens = tmp_path / "tokens.safetensors"
    assert main(["encode", str(photos), "--model", str(folder), "-o", str(tokens), "--quiet"]) == 0, capsys.readouterr()
    read = load_tokens(tokens, expect=in_memory)  # the file names the converted tokenizer
    pixels = torch.stack([torch.from_numpy(np.array(Image.open(photos / name))).permute(2, 0, 1)
                          for name in read.names]).float() / 255
    assert torch.equal(read.indices, in_memory.encode(pixels).indices)
    assert main(["decode", str(tokens), "--model", str(folder), "-o", str(tmp_path / "decoded"), *FAST_DECODE]) == 0
    assert len(list((tmp_path / "decoded").glob("*.png"))) == 2
    assert main(["reconstruct", str(photos), "--model", str(folder), "-o", str(tmp_path / "recon"), *FAST_DECODE]) == 0
    assert Image.open(tmp_path / "recon" / "photo0.png").size == (fixture.image_size, fixture.image_size)
    assert (tmp_path / "recon" / "grid.png").is_file()


@pytest.mark.slow
def test_evaluation_runs_on_the_converted_folder(converted, tmp_path):
    fixture, folder, in_memory = converted
    result = run_recipe("evaluate", ["--model", str(folder), "--output-dir", str(tmp_path / "eval"), "--dataset",
                                     "embedded", "--num-images", "4", "--batch-size", "2", "--steps", "2", "--no-fid", "--lpips"])
    assert result["metrics"]["bpp"] == pytest.approx(in_memory.bits_per_pixel)
    assert np.isfinite(result["metrics"]["psnr"]) and (tmp_path / "eval" / "grid.png").is_file()


@pytest.mark.slow
def test_maskgit_trains_and_samples_on_the_releases_tokens(converted, tmp_path):
    """The MaskGiT recipe's parts: cached tokens of labelled digits, a few steps of the masked-token loss, sampling."""
    fixture, folder, in_memory = converted
    digits = Subset(EmbeddedDigits("train", image_size=fixture.image_size), range(16))
    tokens = cached_tokens(tmp_path, in_memory, digits, "train", batch_size=8)
    maskgit = MaskGiT(token_shape=list(tokens.token_shape), index_vocab_size=tokens.vocab_size, num_sub_tokens=2,
                      hidden_size=32, num_layers=1, num_heads=2, dropout=0.0, label_dropout=0.0)
    sub_tokens, labels = maskgit.split.split(tokens.indices), torch.tensor(tokens.labels)
    optimizer = torch.optim.AdamW(maskgit.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        loss = maskgit.masked_loss(sub_tokens, labels, generator=torch.Generator().manual_seed(0)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]  # the same masks each step: the loss on them must fall
    pipe = MaskGiTPipeline(maskgit=maskgit.eval(), tokenizer=in_memory, num_inference_steps=2)
    images = pipe(torch.tensor([0, 1]), output_type="pt", decode_kwargs={"num_inference_steps": 2}).images
    assert images.shape == (2, 3, fixture.image_size, fixture.image_size)
