"""Checkpoints of the FlowMo reference release: conversion, number-for-number agreement, bad files.

The fixture ``tests/fixtures/flowmo_reference_tiny`` was made by the release's own code: its
checkpoint format at a tiny config (hidden 96, 3 heads, depth 2, 32 px, patch 4, 16 tokens x 18
bits) with random weights, its yaml, and the tensors its code computed (``expected.safetensors``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tokenizer_zoo.cli import main
from tokenizer_zoo.data.transforms import signed_to_unit, unit_to_signed
from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.convert import reading
from tokenizer_zoo.convert.keys import dropped_of
from tokenizer_zoo.errors import ConversionError
from tokenizer_zoo.samplers.likelihood import conditional_velocity
from tokenizer_zoo.samplers.shifted_euler import ShiftedEulerScheduler

FIXTURE = Path(__file__).parents[1] / "fixtures" / "flowmo_reference_tiny"
CHECKPOINT, CONFIG = FIXTURE / "flowmo_ref_tiny.pth", FIXTURE / "config.yaml"
ATOL = 1e-5


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "expected.safetensors")


@pytest.fixture(scope="module")
def pipe() -> FlowMoPipeline:
    converted = FlowMoPipeline.from_single_file(CHECKPOINT, config=CONFIG, verbose=False)
    converted.set_progress_bar_config(disable=True)
    return converted


# --- the release's numbers --------------------------------------------------------------------
def test_codes_match_the_release(pipe, expected):
    with torch.no_grad():
        prequantized = pipe.encoder(expected["images"])
        quantized = pipe.quantizer(prequantized).quantized
    torch.testing.assert_close(prequantized, expected["code_prequantized"], rtol=0, atol=ATOL)
    assert torch.equal(quantized, expected["code_quantized"])
    assert torch.equal(pipe.encode(signed_to_unit(expected["images"])).codes, expected["code_quantized"])
    assert torch.equal(pipe.decoder.code_condition(quantized), expected["decoder_code_input"])


def test_velocity_matches_the_release(pipe, expected):
    with torch.no_grad():
        velocity = pipe.decoder(expected["code_quantized"], expected["x_t"], expected["t"])
    torch.testing.assert_close(velocity, expected["velocity"], rtol=0, atol=ATOL)


def test_the_output_norm_switch_is_what_makes_the_velocity_match(pipe, expected):
    once = type(pipe.decoder).from_config({**pipe.decoder.config, "output_norm": "once"})
    once.load_state_dict(pipe.decoder.state_dict())
    with torch.no_grad():
        velocity = once(expected["code_quantized"], expected["x_t"], expected["t"])
    assert (velocity - expected["velocity"]).abs().max() > 1e-2


def test_release_sampler_settings_come_from_the_yaml(pipe):
    sampling = pipe.info["sampling"]
    # schedule pow_0.25 is t_i = (i / n)^(1 / 0.25); cfg_interval (.17, 1.02) is EDM sigma -> t = sigma / (1 + sigma)
    assert sampling["num_inference_steps"] == 4 and sampling["rho"] == 4.0 and sampling["guidance_scale"] == 1.5
    assert sampling["guidance_interval"] == pytest.approx([0.17 / 1.17, 1.02 / 2.02], abs=1e-15)
    assert pipe.scheduler.config.num_inference_steps == 4 and pipe.scheduler.config.rho == 4.0
    assert pipe.sampling_defaults == {**sampling, "guidance_interval": tuple(sampling["guidance_interval"])}


def test_sample_from_given_noise_matches_the_release(pipe, expected):
    sample = expected["sample_4step_pow4_cfg1.5"]  # rf_sample's last step, before the final clip
    # the release's settings are the converted pipeline's defaults: a plain decode samples as the release does
    images = pipe.decode(pipe.encode(signed_to_unit(expected["images"])), latents=expected["z"], output_type="pt")
    torch.testing.assert_close(unit_to_signed(images.images), sample.clamp(-1, 1), rtol=0, atol=ATOL)
    # every value, unclipped: the same sampler run step by step through the scheduler
    sampling = pipe.info["sampling"]
    velocity = conditional_velocity(pipe.decoder, expected["code_quantized"], sampling["guidance_scale"],
                                    tuple(sampling["guidance_interval"]))
    scheduler = ShiftedEulerScheduler(num_inference_steps=4, rho=sampling["rho"], clip_sample=False)
    x = expected["z"]
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(velocity(x, t.expand(x.shape[0])), t, x).prev_sample
    torch.testing.assert_close(x, sample, rtol=0, atol=ATOL)
    assert (sample.abs() > 1).any()  # so the unclipped comparison covers values the clip would hide


def test_latents_must_fit_the_tokens(pipe, expected):
    with pytest.raises(ValueError, match=r"latents must be the starting noise of shape \(2, 3, 32, 32\)"):
        pipe.decode(expected["code_quantized"], latents=expected["z"][:1])


def test_release_indices_layout(pipe, expected):
    """Indices as the release's LFQ makes them: sub-token j of a token is channels j, j + G, ...; first channel = bit 0."""
    indices = pipe.encode(signed_to_unit(expected["images"])).indices
    bits = (expected["code_prequantized"] > 0).long()
    groups = 18 // 9
    reference = torch.zeros_like(indices)
    for j in range(groups):
        for bit in range(9):
            reference[..., j] += bits[..., bit * groups + j] << bit
    assert torch.equal(indices, reference)
    assert torch.equal(pipe.quantizer.indices_to_codes(indices), expected["code_quantized"])


# --- the conversion ---------------------------------------------------------------------------
def _unused_release_tensors() -> list[str]:
    """What the release allocates at depth 2 and never uses, written out from its forward pass."""
    names = ["encoder.txt_in.weight"]  # multiplies zeros: the code stream starts from its bias
    names += [f"encoder.time_in.{layer}.{p}" for layer in ("in_layer", "out_layer") for p in ("weight", "bias")]
    names += [f"encoder.double_blocks.{i}.{s}_mod.lin.{p}" for i in (0, 1) for s in ("img", "txt")
              for p in ("weight", "bias")]
    names += [f"encoder.final_layer_img.{m}.{p}" for m in ("linear", "adaLN_modulation.1") for p in ("weight", "bias")]
    names += [f"encoder.final_layer_txt.adaLN_modulation.1.{p}" for p in ("weight", "bias")]
    names += [f"decoder.final_layer_txt.{m}.{p}" for m in ("linear", "adaLN_modulation.1") for p in ("weight", "bias")]
    for model, stream in (("encoder", "img"), ("decoder", "txt")):  # the stream whose last-block output is unread
        block = f"{model}.double_blocks.1.{stream}"
        names += [f"{block}_attn.norm.query_norm.scale"]
        names += [f"{block}_{m}.{p}" for m in ("attn.proj", "mlp.0", "mlp.2") for p in ("weight", "bias")]
        names += [f"{block}_attn.qkv.{p}[rows 0:96]" for p in ("weight", "bias")]  # its queries
    names += [f"decoder.double_blocks.1.txt_mod.lin.{p}[rows 192:576]" for p in ("weight", "bias")]
    return names


def test_unused_release_parameters_are_dropped_and_printed(capsys):
    FlowMoPipeline.from_single_file(CHECKPOINT, config=CONFIG)
    printed = capsys.readouterr().out.splitlines()
    expected_names = _unused_release_tensors()
    assert printed[0].startswith(f"dropped {len(expected_names)} release parameter tensors")
    assert printed[1].startswith(f"  allocated by the release but never used: {len(expected_names)} tensors")
    assert sorted(line.strip() for line in printed[2:]) == sorted(expected_names)


def test_every_release_parameter_is_used_or_listed(pipe):
    """Values kept + values dropped = values in the release's state dict."""
    state = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)["model_ema_state_dict"]
    kept = sum(p.numel() for part in (pipe.encoder, pipe.decoder) for p in part.parameters())
    assert kept + dropped_of(pipe).values == sum(t.numel() for t in state.values())


def test_a_key_that_is_neither_mapped_nor_known_unused_is_an_error(tmp_path):
    content = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    content["model_ema_state_dict"]["decoder.double_blocks.0.extra_norm.scale"] = torch.ones(96)
    path = tmp_path / "modified.pth"
    torch.save(content, path)
    with pytest.raises(ConversionError, match=r"modified\.pth: 1 state-dict key.*extra_norm\.scale"):
        FlowMoPipeline.from_single_file(path, config=CONFIG, verbose=False)


def test_save_and_load_round_trip(pipe, expected, tmp_path):
    pipe.save_pretrained(tmp_path / "converted")
    loaded = FlowMoPipeline.from_pretrained(tmp_path / "converted")
    assert loaded.decoder.config.output_norm == "twice"
    assert (loaded.quantizer.config.group_layout, loaded.quantizer.config.bit_order) == ("interleaved", "lsb_first")
    assert loaded.info["sampling"]["guidance_interval"] == pipe.info["sampling"]["guidance_interval"]
    assert loaded.sampling_defaults == pipe.sampling_defaults  # the release's sampler survives the round trip
    with torch.no_grad():
        velocity = loaded.decoder(expected["code_quantized"], expected["x_t"], expected["t"])
    torch.testing.assert_close(velocity, expected["velocity"], rtol=0, atol=ATOL)
    assert torch.equal(loaded.encode(signed_to_unit(expected["images"])).indices, pipe.encode(signed_to_unit(expected["images"])).indices)


# --- bad files --------------------------------------------------------------------------------
class NotATensor:
    """A custom class: a checkpoint holding it needs full unpickling."""


def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    data = CHECKPOINT.read_bytes()
    files = {"truncated": (data[: len(data) // 2], "corrupted or truncated"),
             "garbage": (b"these bytes are no checkpoint " * 10, "corrupted or truncated")}
    found = {}
    for kind, (content, message) in files.items():
        (folder / f"{kind}.pth").write_bytes(content)
        found[kind] = (folder / f"{kind}.pth", message)
    torch.save({"model_ema_state_dict": {"weight": NotATensor()}}, folder / "pickled.pth")
    found["pickled"] = (folder / "pickled.pth", "needs full unpickling.*NotATensor")
    torch.save({"state_dict": {"conv1.weight": torch.zeros(4, 3, 3, 3)}}, folder / "other_model.pth")
    found["other_model"] = (folder / "other_model.pth", "not a FlowMo release checkpoint")
    torch.save({"model_ema_state_dict": {"conv1.weight": torch.zeros(4, 3, 3, 3)}}, folder / "other_keys.pth")
    found["other_keys"] = (folder / "other_keys.pth", "not a FlowMo release checkpoint.*encoder.img_in.weight")
    return found


@pytest.mark.parametrize("kind", ["truncated", "garbage", "pickled", "other_model", "other_keys"])
def test_bad_files_give_one_line_naming_the_file_and_write_nothing(kind, tmp_path, capsys):
    path, message = _bad_files(tmp_path)[kind]
    with pytest.raises(ConversionError, match=message) as raised:
        FlowMoPipeline.from_single_file(path, verbose=False)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)

    before = set(tmp_path.iterdir())
    assert main(["convert", str(path), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and err.startswith("tokenizer-zoo convert: error:")
    assert set(tmp_path.iterdir()) == before  # no output folder, no staging folder


def test_convert_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert main(["convert", str(CHECKPOINT), "--config", str(CONFIG), "-o", str(tmp_path / "out")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


# --- command line and Hub ---------------------------------------------------------------------
def test_convert_then_reconstruct_on_the_command_line(tmp_path, capsys):
    model = tmp_path / "converted"
    assert main(["convert", str(CHECKPOINT), "--config", str(CONFIG), "-o", str(model), "--quiet"]) == 0
    assert (model / "model_index.json").is_file() and not list(tmp_path.glob(".converted.partial-*"))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    code = main(["reconstruct", str(tmp_path / "photo.png"), "--model", str(model), "-o", str(tmp_path / "recon"),
                 "--steps", "2", "--device", "cpu", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert Image.open(tmp_path / "recon" / "photo.png").size == (32, 32)
    assert (tmp_path / "recon" / "grid.png").is_file()


def test_preset_names_fetch_the_papers_files_from_the_hub(monkeypatch):
    fetched = []

    def fake_download(repo_id, filename, **kwargs):
        fetched.append((repo_id, filename))
        return CHECKPOINT  # the tiny file: not FlowMo-Lo's architecture

    monkeypatch.setattr(reading, "download", fake_download)
    with pytest.raises(ConversionError, match=r"^flowmo_lo: its encoder .* is not the flowmo_lo preset's"):
        FlowMoPipeline.from_single_file("flowmo_lo", config=CONFIG, verbose=False)
    # a Hub URL is no preset: without a yaml the release's base config fills in size, code length, sampler
    by_url = FlowMoPipeline.from_single_file("https://huggingface.co/ksarge/FlowMo/blob/main/flowmo_hi.pth",
                                             verbose=False)
    assert (by_url.image_size, by_url.encoder.config.code_length) == (256, 256)
    assert by_url.info["sampling"]["num_inference_steps"] == 25
    assert fetched == [("ksarge/FlowMo", "flowmo_lo.pth"), ("ksarge/FlowMo", "flowmo_hi.pth")]


def test_offline_without_a_cached_file_is_one_clear_line(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConversionError) as raised:
        FlowMoPipeline.from_single_file("flowmo_lo", cache_dir=tmp_path / "empty_cache", verbose=False)
    message = str(raised.value)
    assert "\n" not in message
    assert "flowmo_lo.pth" in message and "ksarge/FlowMo" in message and "HF_HUB_OFFLINE=1" in message


def test_other_urls_and_unknown_arguments_are_refused():
    with pytest.raises(ConversionError, match="only Hugging Face Hub URLs"):
        FlowMoPipeline.from_single_file("https://example.com/flowmo_lo.pth")
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['dtype'\]"):
        FlowMoPipeline.from_single_file(CHECKPOINT, dtype=torch.float16)


def test_model_state_dict_and_dtype_can_be_chosen(expected):
    half = FlowMoPipeline.from_single_file(CHECKPOINT, config=CONFIG, torch_dtype=torch.bfloat16,
                                           state_dict_key="model_state_dict", verbose=False)
    assert half.decoder.dtype == torch.bfloat16 and half.encoder.dtype == torch.bfloat16
    with pytest.raises(ConversionError, match="has no state dict 'ema'"):
        FlowMoPipeline.from_single_file(CHECKPOINT, state_dict_key="ema", verbose=False)


def test_the_model_card_states_the_release_sampler(pipe):
    from tokenizer_zoo.pipelines.hub import model_card

    card = model_card(pipe, "someone/flowmo-release-tiny")
    assert "| num_inference_steps | 4 |" in card
    assert f"| guidance_interval | {(0.17 / 1.17, 1.02 / 2.02)} |" in card  # the pipeline's defaults
