"""The tokenizer-zoo command: encode, decode, reconstruct, likelihood, and its errors."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from tests.cli.conftest import CORRUPT_IMAGE, GOOD_IMAGES
from tokenizer_zoo.cli import CLIError, OutputNames, build_parser, find_images, main
from tokenizer_zoo.data.images import open_image
from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.registry import QUANTIZERS
from tokenizer_zoo.tokens import load_tokens, save_tokens

FAST = ["--steps", "2", "--device", "cpu", "--quiet"]


@pytest.fixture()
def run(capsys):
    def call(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def _subcommands() -> list[str]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices)


def test_every_subcommand_is_there():
    assert _subcommands() == ["compare", "convert", "decode", "demo", "encode", "likelihood", "list", "reconstruct"]


@pytest.mark.parametrize("command", _subcommands())
def test_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: tokenizer-zoo {command}")


def test_encode_decode_round_trip(run, model_dir, image_dir, tmp_path):
    tokens_path = tmp_path / "tokens.safetensors"
    code, out, err = run("encode", image_dir, "--model", model_dir, "-o", tokens_path, "--batch-size", "3",
                         "--device", "cpu")
    assert code == 0 and f"encoded {len(GOOD_IMAGES)} images" in out
    assert f"skipping: cannot read image file {image_dir / CORRUPT_IMAGE}" in err and "notes.txt" not in err

    pipe = FlowMoPipeline.from_pretrained(model_dir)
    tokens = load_tokens(tokens_path, expect=pipe)
    assert tokens.names == list(GOOD_IMAGES)  # relative to the folder given: no absolute paths in shared files
    assert tokens.preset == "flowmo_tiny" and tokens.image_size == 32
    # the same images through the library: the dataset conversion rules, the pipeline's eval transform
    expected = pipe.encode([open_image(image_dir / name) for name in GOOD_IMAGES]).indices
    assert torch.equal(tokens.indices, expected)

    out_dir = tmp_path / "decoded"
    code, _, _ = run("decode", tokens_path, "--model", model_dir, "-o", out_dir, "--seed", "3", *FAST)
    assert code == 0
    written = sorted(p.name for p in out_dir.iterdir())
    assert written == sorted(Path(name).stem + ".png" for name in GOOD_IMAGES)
    decoded = Image.open(out_dir / "grey.png")
    assert decoded.size == (32, 32) and decoded.mode == "RGB"
    # the seed fixes the noise: decoding the token ids in the library gives the same pixels
    again = pipe.decode(tokens.indices, num_inference_steps=2, generator=torch.Generator().manual_seed(3),
                        output_type="pil").images
    assert np.array_equal(np.asarray(again[1]), np.asarray(decoded))


def test_strict_stops_at_a_corrupt_image(run, model_dir, image_dir, tmp_path):
    tokens_path = tmp_path / "tokens.safetensors"
    code, _, err = run("encode", image_dir, "--model", model_dir, "-o", tokens_path, "--strict", "--quiet")
    assert code == 1 and str(image_dir / CORRUPT_IMAGE) in err and "--strict" in err
    assert not tokens_path.exists()


def test_reconstruct_writes_pngs_and_a_grid(run, model_dir, image_dir, tmp_path):
    pattern = str(image_dir / "*.png")  # a glob: colour, grey, wide and the corrupt one
    code, _, err = run("reconstruct", pattern, "--model", model_dir, "-o", tmp_path / "out", *FAST)
    assert code == 0 and CORRUPT_IMAGE in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["colour.png", "grey.png", "grid.png", "wide.png"]
    assert Image.open(tmp_path / "out" / "wide.png").size == (32, 32)
    # torchvision's grid: 3 tiles of 32 px a row, 2 px padding; originals above reconstructions
    assert Image.open(tmp_path / "out" / "grid.png").size == (3 * 34 + 2, 2 * 34 + 2)


def test_likelihood_prints_bits_per_dim(run, model_dir, image_dir):
    if not hasattr(FlowMoPipeline, "likelihood"):
        pytest.skip("pipeline.likelihood not available")
    code, out, _ = run("likelihood", image_dir / "grey.png", image_dir / "colour.png", "--model", model_dir, *FAST)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["image", "bits/dim"] and lines[-1].split()[0] == "mean"
    values = [float(line.split()[-1]) for line in lines[1:]]
    assert len(values) == 3 and all(v > 0 for v in values)
    assert values[-1] == pytest.approx(sum(values[:2]) / 2, abs=1e-3)


def test_likelihood_table_of_any_likelihood(run, model_dir, image_dir, monkeypatch):
    calls = []

    def fake_likelihood(self, images, num_inference_steps, generator):
        calls.append((len(images), num_inference_steps, generator.initial_seed()))
        return SimpleNamespace(bits_per_dim=torch.arange(1, len(images) + 1, dtype=torch.float64))

    monkeypatch.setattr(FlowMoPipeline, "likelihood", fake_likelihood, raising=False)
    code, out, _ = run("likelihood", image_dir, "--model", model_dir, "--batch-size", "3", "--steps", "7",
                       "--seed", "5", "--quiet")
    assert code == 0 and calls == [(3, 7, 5), (1, 7, 5)]  # the PIL images of each batch
    rows = [line.split() for line in out.strip().splitlines()[1:]]
    assert rows == [[str(image_dir / GOOD_IMAGES[0]), "1.0000"], [str(image_dir / GOOD_IMAGES[1]), "2.0000"],
                    [str(image_dir / GOOD_IMAGES[2]), "3.0000"], [str(image_dir / GOOD_IMAGES[3]), "1.0000"],
                    ["mean", "1.7500"]]


def test_user_errors_exit_non_zero_with_a_message(run, model_dir, image_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt_only = tmp_path / "corrupt"
    corrupt_only.mkdir()
    (corrupt_only / "a.png").write_bytes(b"not a png")
    other = QUANTIZERS.build("lfq", dim=18, bits_per_group=6)
    mismatched = save_tokens(tmp_path / "other.safetensors", torch.zeros(1, 16, 3, dtype=torch.long), other, 32)
    not_tokens = tmp_path / "not_tokens.safetensors"
    not_tokens.write_bytes(b"garbage")
    out = ["-o", tmp_path / "t.safetensors"]
    cases = [
        (["encode", image_dir, "--model", model_dir, "-o", empty], "is a folder"),
        (["encode", image_dir, "--model", tmp_path / "missing", *out], "no such folder"),
        (["encode", image_dir, "--model", empty, *out], "no model_index.json"),
        (["encode", empty, "--model", model_dir, *out], "no images found"),
        (["encode", corrupt_only, "--model", model_dir, *out], "none of the 1 image files could be read"),
        (["decode", mismatched, "--model", model_dir, "-o", tmp_path / "d"], "different quantizer config"),
        (["decode", not_tokens, "--model", model_dir, "-o", tmp_path / "d"], "corrupt or truncated"),
        (["decode", tmp_path / "absent.safetensors", "--model", model_dir, "-o", tmp_path / "d"], "does not exist"),
    ]
    for argv, message in cases:
        code, _, err = run(*argv, "--quiet")
        assert code == 1, argv
        _, _, error = err.partition(f"tokenizer-zoo {argv[0]}: error: ")
        assert error and message in error and "Traceback" not in err, err
    assert not (tmp_path / "t.safetensors").exists() and not (tmp_path / "d").exists()


def test_console_script_exit_status(model_dir, tmp_path):
    script = Path(sys.executable).with_name("tokenizer-zoo")
    tokens = save_tokens(tmp_path / "t.safetensors", torch.zeros(1, 16, 3, dtype=torch.long),
                         QUANTIZERS.build("lfq", dim=18, bits_per_group=6), 32)
    done = subprocess.run([str(script), "decode", str(tokens), "--model", str(model_dir), "-o", str(tmp_path / "d")],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "was made by another tokenizer" in done.stderr


def test_image_arguments_expand_and_report_what_matched_nothing(image_dir, capsys):
    sources = find_images([str(image_dir / "sub"), str(image_dir / "*.png"), str(image_dir / "grey.png"),
                           str(image_dir / "nothing*.png")], strict=False)
    assert [s.path.name for s in sources] == ["photo.jpg", "broken.png", "colour.png", "grey.png", "wide.png"]
    assert "nothing*.png: no such file" in capsys.readouterr().err
    with pytest.raises(CLIError, match="nothing"):
        find_images([str(image_dir / "nothing*.png")], strict=True)


def test_output_names_are_flat_and_unique():
    names = OutputNames(reserved=("grid.png",))
    assert [names(n, i) for i, n in enumerate(["a/x.jpg", "b/x.png", "grid.tif", None, "X.png"])] == [
        "x.png", "x-1.png", "grid-1.png", "000003.png", "X-2.png"]


@pytest.fixture(scope="session")
def other_model_dirs(tmp_path_factory):
    """A TokenizerPipeline folder (one-pass decoder) and a MaskGiTPipeline folder over the tiny FlowMo tokenizer."""
    from tests.generation.test_maskgit import tiny_maskgit
    from tests.pipelines.conftest import tiny_pipeline
    from tests.pipelines.one_pass_decoder import LinearTestDecoder
    from tokenizer_zoo.pipelines import MaskGiTPipeline, TokenizerPipeline
    from tokenizer_zoo.presets import build_tokenizer

    root = tmp_path_factory.mktemp("other_models")
    parts = build_tokenizer("flowmo_tiny")
    TokenizerPipeline(parts.encoder, parts.quantizer, LinearTestDecoder()).save_pretrained(root / "one_pass")
    maskgit = tiny_maskgit(token_shape=(16, 2), index_vocab_size=512, num_sub_tokens=2, num_classes=10)
    MaskGiTPipeline(maskgit, tiny_pipeline()).save_pretrained(root / "maskgit")
    return {"TokenizerPipeline": root / "one_pass", "MaskGiTPipeline": root / "maskgit"}


@pytest.mark.parametrize("kind", ["TokenizerPipeline", "MaskGiTPipeline"])
def test_commands_work_on_every_kind_of_pipeline_folder(run, other_model_dirs, image_dir, tmp_path, kind):
    from tokenizer_zoo.pipelines import load_pipeline

    folder = other_model_dirs[kind]
    code, _, err = run("reconstruct", image_dir / "colour.png", "--model", folder, "-o", tmp_path / "out", *FAST)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["colour.png", "grid.png"]
    code, _, err = run("encode", image_dir / "colour.png", "--model", folder, "-o", tmp_path / "t.safetensors", *FAST[2:])
    assert code == 0, err
    tokenizer = load_pipeline(folder)
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a MaskGiT folder's tokenizer encodes
    expected = tokenizer.encode(open_image(image_dir / "colour.png")).indices
    assert torch.equal(load_tokens(tmp_path / "t.safetensors", expect=tokenizer).indices, expected)
