"""load_release / convert_release / `tokenizer-zoo convert`: format detection, safe loading, bad input, atomic output."""

from __future__ import annotations

import builtins
import os

import pytest
import torch

from tests.convert.fixtures import CONVERTED
from tokenizer_zoo.cli import main
from tokenizer_zoo.convert import FORMATS, convert_release, load_release
from tokenizer_zoo.convert.reading import read_checkpoint
from tokenizer_zoo.errors import ConversionError

LLAMAGEN = next(fixture for fixture in CONVERTED if fixture.name == "llamagen")


class MarkerPayload:
    """Unpickling this would call ``open(marker, "w")``: the file appearing means the payload ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.mark.parametrize("fixture", CONVERTED, ids=lambda fixture: fixture.name)
def test_the_format_is_detected_from_the_files_keys(fixture):
    checkpoint = read_checkpoint(fixture.checkpoint, safe_globals=FORMATS["llamagen"].SAFE_GLOBALS)
    assert [name for name, module in FORMATS.items() if module.detect(checkpoint)] == [fixture.format]
    assert load_release(fixture.checkpoint, config=fixture.config).info["release_format"] == fixture.format


def test_a_format_given_that_does_not_fit_the_file_says_what_it_lacks():
    with pytest.raises(ConversionError, match="not a FlowMo release checkpoint"):
        load_release(LLAMAGEN.checkpoint, format="flowmo")
    with pytest.raises(ConversionError, match=r"unknown release format 'vqgan'; choose one of flowmo, llamagen"):
        load_release(LLAMAGEN.checkpoint, format="vqgan")


def _bad_inputs(folder):
    data = LLAMAGEN.checkpoint.read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 3])
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(4, 3, 3, 3)}}, folder / "resnet.pt")
    marker = folder / "payload_ran"
    torch.save({"model": {"weight": MarkerPayload(str(marker))}}, folder / "payload.pt")
    tried = ".*".join(f"{name}: " for name in FORMATS)
    return marker, {"truncated": (folder / "truncated.pt", "not a readable PyTorch checkpoint.*truncated"),
                    "unknown": (folder / "resnet.pt", f"not a checkpoint of any release format .*Tried {tried}"),
                    "payload": (folder / "payload.pt", "refused: it needs full unpickling .*io.open")}


@pytest.mark.parametrize("kind", ["truncated", "unknown", "payload"])
def test_bad_input_is_one_line_leaves_no_folder_and_never_runs_a_payload(kind, tmp_path, capsys):
    marker, cases = _bad_inputs(tmp_path)
    path, message = cases[kind]
    with pytest.raises(ConversionError, match=message) as raised:
        load_release(path)
    assert "\n" not in str(raised.value) and str(path) in str(raised.value)
    before = set(tmp_path.iterdir())
    with pytest.raises(ConversionError):
        convert_release(path, tmp_path / "out")
    assert main(["convert", str(path), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tokenizer-zoo convert: error:") and err.count("\n") == 1 and str(path) in err
    assert set(tmp_path.iterdir()) == before  # no output folder, no staging folder
    assert not marker.exists()


def test_only_the_named_extra_types_are_admitted(tmp_path):
    """argparse.Namespace is admitted for LlamaGen's files, and only when that format is tried."""
    import argparse

    torch.save({"args": argparse.Namespace(lr=1e-4), "model": {"w": torch.zeros(1)}}, tmp_path / "args.pt")
    assert "args" in read_checkpoint(tmp_path / "args.pt", safe_globals=(argparse.Namespace,)).content
    with pytest.raises(ConversionError, match="argparse.Namespace"):
        load_release(tmp_path / "args.pt", format="flowmo")


def test_a_release_folder_is_read_with_its_config(tmp_path):
    from safetensors.torch import save_file

    state = torch.load(LLAMAGEN.checkpoint, map_location="cpu", weights_only=True)["model"]
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "config.json").write_text('{"image_size": 64}')
    with pytest.raises(ConversionError, match="a folder without weights"):
        load_release(folder)
    save_file({key: value.contiguous() for key, value in state.items()}, folder / "model.safetensors")
    pipe = load_release(folder)
    assert pipe.image_size == 64 and pipe.info["release_format"] == "llamagen"
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(ConversionError, match="not a readable safetensors file"):
        load_release(folder)


def test_offline_release_names_are_one_clear_line(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConversionError, match="cannot fetch vq_ds8_c2i.pt from the Hub repo FoundationVision/LlamaGen"):
        load_release("llamagen_vq8", cache_dir=os.fspath(tmp_path / "empty"))
