"""Streamed image folders: split between processes, buffer-shuffled, endless, and resumable where they stopped."""

import itertools

import pytest
import torch

from tests.training.streamed import grey_folder, levels
from tokenizer_zoo.data import DatasetLoadError
from tokenizer_zoo.data.bad_images import SKIPPED_KEY
from tokenizer_zoo.data.streaming import load_streamed_images

COUNT = 10


@pytest.fixture
def folder(tmp_path):
    folder = grey_folder(tmp_path / "photos", COUNT)
    (folder / "05_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


def _stream(folder, tmp_path, **kwargs):
    return load_streamed_images(f"imagefolder:{folder}", "train", 16, cache_dir=str(tmp_path / "cache"), **kwargs)


def _levels(items) -> list[int]:
    return levels(torch.stack([item["pixel_values"] for item in items]))


def test_processes_read_disjoint_parts_that_cover_the_folder_and_skip_bad_files(folder, tmp_path):
    parts = [list(itertools.islice(_stream(folder, tmp_path, rank=rank, world_size=2, seed=3), 5)) for rank in (0, 1)]
    levels = [_levels(part) for part in parts]
    assert sorted(levels[0] + levels[1]) == list(range(COUNT)) and not set(levels[0]) & set(levels[1])
    skipped = [name for part in parts for item in part for name, _ in item[SKIPPED_KEY]]
    assert skipped == ["05_broken.png"]
    with pytest.raises(Exception, match="05_broken.png"):
        list(itertools.islice(_stream(folder, tmp_path, strict=True), COUNT + 1))


def test_the_stream_is_shuffled_by_a_buffer_and_never_ends(folder, tmp_path):
    epochs = _levels(itertools.islice(_stream(folder, tmp_path, seed=0, shuffle_buffer=4), 2 * COUNT))
    first, second = epochs[:COUNT], epochs[COUNT:]
    assert sorted(first) == sorted(second) == list(range(COUNT))  # every image once an epoch, then the next epoch
    assert first != list(range(COUNT)) and first != second
    plain = _levels(itertools.islice(_stream(folder, tmp_path, train=False), COUNT))
    assert plain == list(range(COUNT))  # no shuffle without training


def test_resume_continues_the_stream_where_it_stopped(folder, tmp_path):
    """With a buffer of one the continuation is exact; with a larger one the buffered examples are lost for the
    rest of that epoch, but nothing read before the checkpoint comes again."""
    straight = _levels(itertools.islice(_stream(folder, tmp_path, seed=1, shuffle_buffer=1), 2 * COUNT))
    for buffer in (1, 4):
        stream = _stream(folder, tmp_path, seed=1, shuffle_buffer=buffer)
        reader = iter(stream)
        seen = _levels(itertools.islice(reader, 4))
        state = stream.state_dict()
        resumed = _stream(folder, tmp_path, seed=1, shuffle_buffer=buffer)
        resumed.load_state_dict(state)
        rest = _levels(itertools.islice(iter(resumed), COUNT))
        if buffer == 1:
            assert seen + rest == straight[: 4 + COUNT]
        # at most 4 examples sat in the buffer: at least 2 of the epoch remain, none of them read before
        assert not set(seen) & set(rest[:2])


def test_bundled_datasets_are_not_streamed():
    with pytest.raises(DatasetLoadError, match="dataset_streaming=false"):
        load_streamed_images("embedded", "train", 16)
