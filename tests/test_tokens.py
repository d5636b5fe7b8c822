"""Token files (tokenizer_zoo/tokens.py): round trips, bit packing, dtypes, mismatches, damage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from tests.pipelines.conftest import tiny_pipeline
from tokenizer_zoo.registry import QUANTIZERS
from tokenizer_zoo.tokens import (
    FORMAT_NAME,
    TokenFileError,
    TokenMismatchError,
    load_tokens,
    save_tokens,
)

# name, kwargs, file tensor, its dtype
QUANTIZER_CASES = {
    "lfq_k9": ("lfq", dict(dim=18, bits_per_group=9), "packed_bits", np.uint8),
    "lfq_k14": ("lfq", dict(dim=56, bits_per_group=14), "packed_bits", np.uint8),
    "fsq": ("fsq", dict(levels=[8, 5, 5, 5]), "indices", np.uint16),
    "vq_small": ("vq", dict(dim=4, codebook_size=256), "indices", np.uint8),
    "vq_large": ("vq", dict(dim=4, codebook_size=70000), "indices", np.uint32),
    "bsq": ("bsq", dict(dim=12, bits_per_group=6), "packed_bits", np.uint8),
}


def _tokens(quantizer, count=5, length=7):
    z = torch.randn(count, length, quantizer.dim) * 3
    return quantizer(z).indices


@pytest.mark.parametrize("case", sorted(QUANTIZER_CASES))
def test_round_trip_keeps_ids_and_describes_the_tokenizer(tmp_path, case):
    name, kwargs, tensor, dtype = QUANTIZER_CASES[case]
    quantizer = QUANTIZERS.build(name, **kwargs)
    indices = _tokens(quantizer)
    names = [f"img{i}.png" for i in range(5)]
    labels = [3, 1, 4, 1, 5]
    path = save_tokens(tmp_path / "t.safetensors", indices, quantizer, image_size=48, preset="p", names=names,
                       labels=labels)

    tokens = load_tokens(path, expect=quantizer)
    assert tokens.indices.dtype == torch.int64 and torch.equal(tokens.indices, indices)
    assert tokens.names == names and tokens.labels == labels and tokens.preset == "p" and tokens.image_size == 48 and len(tokens) == 5
    assert tokens.token_shape == tuple(indices.shape[1:]) and tokens.quantizer_name == name
    assert tokens.signature.quantizer_config == {k: v for k, v in quantizer.config.items() if not k.startswith("_")}
    assert tokens.signature.bits_per_token == pytest.approx(quantizer.bits_per_token)
    rebuilt = tokens.build_quantizer()
    assert type(rebuilt) is type(quantizer)
    if name != "vq":  # a VQ codebook is learned, the others' codes follow from the config
        assert torch.equal(rebuilt.indices_to_codes(tokens.indices), quantizer.indices_to_codes(indices))
    with safe_open(path, "np") as f:
        assert list(f.keys()) == [tensor] and f.get_tensor(tensor).dtype == dtype
        assert f.metadata()["format"] == FORMAT_NAME and f.metadata()["num_images"] == "5"


@pytest.mark.parametrize(("dim", "k", "length", "count"), [(9, 9, 3, 5), (56, 14, 16, 3), (18, 9, 16, 64)])
def test_binary_tokens_take_exactly_their_bits(tmp_path, dim, k, length, count):
    quantizer = QUANTIZERS.build("lfq", dim=dim, bits_per_group=k)
    path = save_tokens(tmp_path / "t.safetensors", _tokens(quantizer, count, length), quantizer, image_size=32)
    with safe_open(path, "np") as f:
        packed = f.get_tensor("packed_bits")
    assert packed.nbytes == math.ceil(count * length * dim / 8)  # (9, 9, 3, 5): 17 bytes, not 5 x 4
    header = int.from_bytes(path.read_bytes()[:8], "little")
    assert path.stat().st_size == 8 + header + packed.nbytes


def test_bit_layout_is_the_documented_one(tmp_path):
    # one image, two tokens of 4 channels in groups of k=2: index 2 = bits 10, index 1 = bits 01
    quantizer = QUANTIZERS.build("lfq", dim=4, bits_per_group=2)
    indices = torch.tensor([[[2, 1], [3, 0]]])
    path = save_tokens(tmp_path / "t.safetensors", indices, quantizer, image_size=8)
    with safe_open(path, "np") as f:
        assert f.get_tensor("packed_bits").tolist() == [0b10011100]


def test_tokens_match_a_pipeline_and_its_errors_name_both_sides(tmp_path):
    pipe = tiny_pipeline()
    indices = _tokens(pipe.quantizer, count=2, length=16)
    good = save_tokens(tmp_path / "good.safetensors", indices, pipe, image_size=32)
    assert torch.equal(load_tokens(good, expect=pipe).indices, indices)

    cases = {
        "image size": save_tokens(tmp_path / "size.safetensors", indices, pipe, image_size=64),
        "token shape": save_tokens(tmp_path / "shape.safetensors", indices[:, :8], pipe, image_size=32),
    }
    for difference, path in cases.items():
        with pytest.raises(TokenMismatchError, match=difference) as error:
            load_tokens(path, expect=pipe)
        assert str(path) in str(error.value) and "token file:" in str(error.value) and "model:" in str(error.value)


@pytest.mark.parametrize(("other", "kwargs", "difference"), [
    ("lfq", dict(dim=18, bits_per_group=6), r"different quantizer config\)"),
    ("bsq", dict(dim=18, bits_per_group=9), r"different quantizer\)"),
    ("lfq", dict(dim=36, bits_per_group=9), r"different quantizer config, bits per token\)"),
    ("fsq", dict(levels=[8, 8, 8]), r"different quantizer, quantizer config, bits per token\)"),
])
def test_tokens_of_another_quantizer_are_refused(tmp_path, other, kwargs, difference):
    made_by = QUANTIZERS.build("lfq", dim=18, bits_per_group=9)
    path = save_tokens(tmp_path / "t.safetensors", _tokens(made_by), made_by, image_size=32)
    with pytest.raises(TokenMismatchError, match=difference) as error:
        load_tokens(path, expect=QUANTIZERS.build(other, **kwargs))
    message = str(error.value)
    assert '"bits_per_group": 9' in message and other in message.split("model:")[1]


def test_continuous_codes_have_no_token_file(tmp_path):
    quantizer = QUANTIZERS.build("continuous", dim=8)
    with pytest.raises(TokenFileError, match="continuous"):
        save_tokens(tmp_path / "t.safetensors", torch.zeros(2, 3, dtype=torch.long), quantizer, image_size=32)
    assert not (tmp_path / "t.safetensors").exists()


@pytest.mark.parametrize(("indices", "extra", "match"), [
    (torch.full((2, 3, 2), 512), {}, "vocabulary"),
    (torch.zeros(2, 3, 3, dtype=torch.long), {}, r"\(N, S, 2\)"),
    (torch.zeros(2, 3, 2), {}, "integer"),
    (torch.zeros(2, 3, 2, dtype=torch.long), {"names": ["only one"]}, "1 names for 2 images"),
    (torch.zeros(2, 3, 2, dtype=torch.long), {"labels": [0, 1, 2]}, "3 labels for 2 images"),
])
def test_bad_ids_are_refused(tmp_path, indices, extra, match):
    quantizer = QUANTIZERS.build("lfq", dim=18, bits_per_group=9)
    with pytest.raises(TokenFileError, match=match):
        save_tokens(tmp_path / "t.safetensors", indices, quantizer, image_size=32, **extra)


def _valid_file(tmp_path):
    quantizer = QUANTIZERS.build("fsq", levels=[5, 5])
    return save_tokens(tmp_path / "t.safetensors", _tokens(quantizer), quantizer, image_size=32), quantizer


def test_damaged_and_foreign_files_give_clear_errors(tmp_path):
    path, _ = _valid_file(tmp_path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:-7])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x89PNG not tokens at all" * 3)
    weights = tmp_path / "weights.safetensors"
    save_file({"weight": np.zeros(3, np.float32)}, weights)
    absent = tmp_path / "absent.safetensors"
    for bad, match in [(truncated, "corrupt or truncated"), (garbage, "corrupt or truncated"),
                       (weights, "not a tokenizer-zoo-tokens file"), (absent, "does not exist")]:
        with pytest.raises(TokenFileError, match=match) as error:
            load_tokens(bad)
        assert str(bad) in str(error.value)


@pytest.mark.parametrize(("key", "value", "match"), [
    ("num_images", "6", "expected unsigned integers of shape"),
    ("vocab_size", "3", "exceed the vocabulary"),
    ("format_version", "99", "Upgrade tokenizer-zoo"),
    ("token_shape", "not json", "malformed metadata"),
    ("names", '["a"]', "1 names for 5 images"),
    ("labels", "[1, 2]", "2 labels for 5 images"),
])
def test_inconsistent_metadata_is_detected(tmp_path, key, value, match):
    path, _ = _valid_file(tmp_path)
    with safe_open(path, "np") as f:
        metadata, tensors = f.metadata(), {name: f.get_tensor(name) for name in f.keys()}
    metadata[key] = value
    save_file(tensors, path, metadata=metadata)
    with pytest.raises(TokenFileError, match=match):
        load_tokens(path)


def test_a_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path, quantizer = _valid_file(tmp_path)
    before = path.read_bytes()

    def broken_disk(_):
        raise OSError("disk full")

    monkeypatch.setattr("tokenizer_zoo.tokens.os.fsync", broken_disk)
    with pytest.raises(OSError, match="disk full"):
        save_tokens(path, _tokens(quantizer, count=9), quantizer, image_size=32)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["t.safetensors"]
    assert len(load_tokens(path)) == 5
