"""Errors of the command and the recipes are one line; --verbose adds the traceback. Token files keep no absolute paths."""

from __future__ import annotations

import json

import pytest
import torch

from tests.recipes import load_recipe
from tokenizer_zoo.cli import main
from tokenizer_zoo.errors import run_main
from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.registry import QUANTIZERS
from tokenizer_zoo.tokens import load_tokens, save_tokens


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


@pytest.fixture()
def mismatched(tmp_path):
    other = QUANTIZERS.build("lfq", dim=18, bits_per_group=6)
    return save_tokens(tmp_path / "other.safetensors", torch.zeros(1, 16, 3, dtype=torch.long), other, 32)


def test_the_token_mismatch_error_is_one_line(model_dir, mismatched, tmp_path, capsys):
    assert main(["decode", str(mismatched), "--model", str(model_dir), "-o", str(tmp_path / "d"), "--quiet"]) == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert line.startswith(f"tokenizer-zoo decode: error: {mismatched} was made by another tokenizer")
    assert "token file: lfq" in line and "; model: lfq" in line and line.endswith("(--verbose shows the traceback)")


def test_verbose_adds_the_traceback(model_dir, mismatched, tmp_path, capsys):
    assert main(["decode", str(mismatched), "--verbose", "--model", str(model_dir), "-o", str(tmp_path / "d"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "TokenMismatchError" in err
    assert _error_lines(err)[-1].startswith("tokenizer-zoo decode: error:")


def test_unexpected_errors_are_one_line_with_their_type(model_dir, image_dir, tmp_path, capsys, monkeypatch):
    def encode(self, images):
        raise RuntimeError("deep inside\n  a two-line message")

    monkeypatch.setattr(FlowMoPipeline, "encode", encode)
    argv = ["encode", str(image_dir), "--model", str(model_dir), "-o", str(tmp_path / "t.safetensors"), "--quiet"]
    assert main(argv) == 1
    lines = _error_lines(capsys.readouterr().err)
    (line,) = [line for line in lines if not line.startswith("tokenizer-zoo: skipping: ")]  # the corrupt image
    assert line == ("tokenizer-zoo encode: error: RuntimeError: deep inside a two-line message "
                    "(--verbose shows the traceback)")


def test_recipe_errors_are_one_line(tmp_path, capsys):
    evaluate = load_recipe("evaluate").main
    assert run_main(evaluate, "evaluate.py", ["--model", str(tmp_path / "missing")]) == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert line.startswith(f"evaluate.py: error: {tmp_path / 'missing'}: no such folder")
    assert run_main(evaluate, "evaluate.py", ["--model", str(tmp_path / "missing"), "--verbose"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_refused_checkpoint_stops_the_recipe_with_one_line(tmp_path, capsys):
    folder = tmp_path / "checkpoints" / "step_00000002"
    folder.mkdir(parents=True)
    (folder / "training_state.json").write_text(json.dumps({"step": 2}))
    train = load_recipe("flowmo_1a").main
    assert run_main(train, "flowmo_1a.py", ["perceptual_weight=0", "eval_images=2", f"output_dir={tmp_path}"]) == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert line.startswith(f"flowmo_1a.py: error: {folder} was written by an earlier tokenizer-zoo")


def test_token_files_store_no_absolute_paths(tmp_path, model_dir, image_dir, capsys):
    quantizer = QUANTIZERS.build("lfq", dim=18, bits_per_group=6)
    names = ["/home/someone/photos/a.png", "C:\\Users\\someone\\b.png", "sub/c.png", "d.png"]
    path = save_tokens(tmp_path / "t.safetensors", torch.zeros(4, 16, 3, dtype=torch.long), quantizer, 32, names=names)
    assert load_tokens(path).names == ["a.png", "b.png", "sub/c.png", "d.png"]
    assert "someone" not in path.read_bytes().decode("latin-1")
    # the command: names relative to a folder argument, file names for files and glob matches
    out = tmp_path / "cli.safetensors"
    argv = ["encode", str(image_dir), str(image_dir / "sub" / "*.jpg"), "--model", str(model_dir), "-o", str(out)]
    assert main([*argv, "--quiet"]) == 0
    assert load_tokens(out).names == ["colour.png", "grey.png", "sub/photo.jpg", "wide.png"]
    assert main(["encode", str(image_dir / "*.png"), "--model", str(model_dir), "-o", str(out), "--quiet"]) == 0
    assert load_tokens(out).names == ["colour.png", "grey.png", "wide.png"]
    assert str(image_dir) not in out.read_bytes().decode("latin-1")
