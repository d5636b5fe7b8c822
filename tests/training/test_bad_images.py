"""Unreadable training images: replaced by the next readable one, listed once per file, counted, and limited."""

import pytest
import torch
from accelerate import Accelerator

from tests.recipes import run_recipe
from tests.test_evaluate_bad_input import _png
from tokenizer_zoo.data import InvalidImageError, load_image_dataset
from tokenizer_zoo.data.bad_images import SKIPPED_KEY, SkipBadImages, TooManyBadImagesError, collate_skipping
from tokenizer_zoo.training.bad_images import LOG_FILE, MIN_IMAGES_JUDGED, BadImageLog
from tokenizer_zoo.training.loop import RecipeConfig, load_recipe_data

BAD = ["c_empty.png", "f_truncated.png", "i_notes.jpg"]


@pytest.fixture
def folder(tmp_path):
    """Twelve files, sorted by name: nine good PNGs and three bad ones (empty, truncated, text)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, name in enumerate("abdeghjkl"):
        (folder / f"{name}_good.png").write_bytes(_png(index))
    (folder / BAD[0]).write_bytes(b"")
    (folder / BAD[1]).write_bytes(_png(9)[:200])
    (folder / BAD[2]).write_text("not an image")
    return folder


def _dataset(folder, tmp_path):
    return load_image_dataset(f"imagefolder:{folder}", "train", 16, train=False, cache_dir=str(tmp_path / "cache"))


def test_a_bad_image_is_replaced_by_the_next_readable_one_and_named(folder, tmp_path):
    plain = _dataset(folder, tmp_path)
    names = [plain.file_name(i) for i in range(len(plain))]
    skipping = SkipBadImages(plain)
    for index, name in enumerate(names):
        item = skipping[index]
        if name in BAD:
            with pytest.raises(InvalidImageError, match=name):
                plain[index]
            assert item[SKIPPED_KEY][0][0] == name and name in item[SKIPPED_KEY][0][1]
            assert torch.equal(item["pixel_values"], plain[index + 1]["pixel_values"])  # each bad one precedes a good one
        else:
            assert item[SKIPPED_KEY] == [] and torch.equal(item["pixel_values"], plain[index]["pixel_values"])
    batch = collate_skipping([skipping[i] for i in range(len(skipping))])
    assert batch["pixel_values"].shape == (12, 3, 16, 16) and sorted(n for n, _ in batch[SKIPPED_KEY]) == BAD
    with pytest.raises(InvalidImageError, match=BAD[0]):
        SkipBadImages(plain, strict=True)[names.index(BAD[0])]


def test_a_folder_of_non_images_stops_with_one_line(tmp_path):
    folder = tmp_path / "wrong"
    folder.mkdir()
    for index in range(3):
        (folder / f"{index}.png").write_text("text")
    with pytest.raises(TooManyBadImagesError, match="3 images in a row are unreadable"):
        SkipBadImages(_dataset(folder, tmp_path))[0]


def test_the_log_lists_each_file_once_and_stops_past_the_fraction(tmp_path):
    accelerator = Accelerator(cpu=True)
    log = BadImageLog(accelerator, tmp_path, max_bad_fraction=0.01)
    batch = {"pixel_values": torch.zeros(4, 3, 8, 8), SKIPPED_KEY: [("x.png", "cannot read x.png")]}
    for _ in range(3):  # the same file in three batches: counted three times, listed once
        assert set(log.take(batch)) == {"pixel_values"}
        assert log.agree(None) is None
    assert (tmp_path / LOG_FILE).read_text() == "x.png\tcannot read x.png\n"
    assert (log.bad, log.read) == (3, 15)
    assert BadImageLog(accelerator, tmp_path, 0.01).listed == {"x.png"}  # a resumed run does not list it again
    limit = int(0.01 * MIN_IMAGES_JUDGED)  # 10 bad files among the first 1000 images are tolerated, 11 are not
    log.take({"pixel_values": torch.zeros(1), SKIPPED_KEY: [(f"{i}.png", "bad") for i in range(limit - 3)]})
    assert log.agree(15) == 15  # the stop signal passes through
    log.take({"pixel_values": torch.zeros(1), SKIPPED_KEY: [("one_more.png", "bad")]})
    with pytest.raises(TooManyBadImagesError, match=f"11 of the {15 + limit - 3 + 1 + 1 + 1} training images.*"
                                                    "max_bad_fraction=0.01"):
        log.agree(None)


def test_a_recipe_trains_on_a_folder_with_three_corrupt_files_and_lists_them(folder, tmp_path, capsys):
    """One epoch of batches of 4 over the 12 files reads every file once: the 3 bad ones are listed."""
    out = tmp_path / "run"
    run_recipe("flowmo_1a", ["perceptual_weight=0", "batch_size=4", "eval_images=2", "eval_steps=1", "log_every=1",
                             "grid_every=1000", "max_steps=3", f"dataset=imagefolder:{folder}", f"output_dir={out}"])
    listed = [line.split("\t")[0] for line in (out / "logs" / LOG_FILE).read_text().splitlines()]
    assert sorted(listed) == BAD
    printed = capsys.readouterr().out
    assert all(name in printed for name in BAD) and (out / "pipeline" / "model_index.json").is_file()
    strict = load_recipe_data(RecipeConfig(dataset=f"imagefolder:{folder}", batch_size=12, strict=True, eval_images=1), 16)
    with pytest.raises(InvalidImageError, match="c_empty.png|f_truncated.png|i_notes.jpg"):  # one batch of all 12
        next(iter(strict.loader))
