"""Token caching for stage 2: encoded once, keyed by the tokenizer's weights, labels kept."""

import pytest
import torch
from torch.utils.data import Subset

from tests.pipelines.conftest import tiny_pipeline
from tokenizer_zoo.data import EmbeddedDigits, EmbeddedPhotos, InvalidImageError
from tokenizer_zoo.data.bad_images import SkipBadImages
from tokenizer_zoo.training.maskgit import cached_tokens, encode_dataset, tokenizer_fingerprint


def test_tokens_are_encoded_once_and_keyed_by_the_weights(tmp_path, monkeypatch):
    pipe = tiny_pipeline()
    data = Subset(EmbeddedDigits("eval"), range(12))
    tokens = cached_tokens(tmp_path, pipe, data, "eval", batch_size=5, preset="flowmo_tiny")
    assert tokens.labels == [i % 10 for i in range(12)] and tokens.preset == "flowmo_tiny"
    images = torch.stack([data[i]["pixel_values"] for i in range(12)])
    assert torch.equal(tokens.indices, pipe.encode((images + 1) / 2).indices)  # the same tokens as encoding by hand
    calls = []
    monkeypatch.setattr(type(pipe), "encode", lambda self, x: calls.append(x))
    again = cached_tokens(tmp_path, pipe, data, "eval")
    assert calls == [] and torch.equal(again.indices, tokens.indices)  # read from the file, not re-encoded
    monkeypatch.undo()
    with torch.no_grad():
        next(pipe.encoder.parameters()).add_(0.1)  # another tokenizer with the same configuration
    assert len(list(tmp_path.glob("tokens_eval_*.safetensors"))) == 1
    cached_tokens(tmp_path, pipe, data, "eval")
    assert len(list(tmp_path.glob("tokens_eval_*.safetensors"))) == 2


def test_fingerprint_follows_weights_and_unlabelled_data_is_refused():
    pipe = tiny_pipeline()
    first = tokenizer_fingerprint(pipe)
    assert first == tokenizer_fingerprint(tiny_pipeline()) and len(first) == 12
    with torch.no_grad():
        next(pipe.quantizer.parameters(), next(pipe.encoder.parameters())).mul_(2)
    assert tokenizer_fingerprint(pipe) != first
    with pytest.raises(KeyError, match="labelled images"):
        encode_dataset(pipe, EmbeddedPhotos("eval", length=2))


class OneUnreadable(torch.utils.data.Dataset):
    """Four labelled digits whose item 1 cannot be read."""

    def __init__(self):
        self.digits = EmbeddedDigits("eval")

    def __len__(self):
        return 4

    def __getitem__(self, index):
        if index == 1:
            raise InvalidImageError("cannot read image file one.png: truncated")
        return self.digits[index]

    def file_name(self, index):
        return f"{index}.png"


def test_stage_2_tokens_skip_unreadable_images_and_name_them(capsys):
    pipe = tiny_pipeline()
    indices, labels = encode_dataset(pipe, SkipBadImages(OneUnreadable()), batch_size=4)
    rows = [0, 2, 2, 3]  # the unreadable image is replaced by the next one
    images = torch.stack([EmbeddedDigits("eval")[i]["pixel_values"] for i in rows])
    assert torch.equal(indices, pipe.encode((images + 1) / 2).indices) and labels == [i % 10 for i in rows]
    printed = capsys.readouterr()
    assert "skipped unreadable image 1.png: cannot read image file one.png" in printed.out + printed.err
    with pytest.raises(InvalidImageError):
        encode_dataset(pipe, SkipBadImages(OneUnreadable(), strict=True), batch_size=4)
