import json
import shutil
import sys

import pytest
import torch

from tests.pipelines.conftest import tiny_pipeline
from tokenizer_zoo.pipelines import FlowMoPipeline, MissingPluginError


def _hand_built_hub_cache(saved, cache, repo_id="tokenizer-zoo/flowmo-tiny-test"):
    """The layout huggingface_hub writes: models--ORG--NAME/{refs/main, snapshots/COMMIT/...}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(saved, repo / "snapshots" / commit)
    return repo_id


def test_from_pretrained_finds_a_hub_id_in_the_local_cache_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "saved")
    repo_id = _hand_built_hub_cache(tmp_path / "saved", tmp_path / "cache")
    loaded = FlowMoPipeline.from_pretrained(repo_id, cache_dir=tmp_path / "cache")
    for name, value in pipe.decoder.state_dict().items():
        assert torch.equal(loaded.decoder.state_dict()[name], value)
    assert loaded.info["preset"] == "flowmo_tiny"
    with pytest.raises(Exception, match="(?i)offline|cache|not found|connect"):
        FlowMoPipeline.from_pretrained("tokenizer-zoo/not-in-the-cache", cache_dir=tmp_path / "cache")


def test_push_to_hub_uploads_weights_and_a_model_card(hub_recorder):
    recorded = hub_recorder
    pipe = tiny_pipeline()
    pipe.info["metrics"] = {"psnr": 12.5}
    assert pipe.push_to_hub("flowmo-tiny", private=True) == "https://example.invalid/commit/1"
    assert recorded["create_repo"] == ("flowmo-tiny", {"private": True, "token": None, "exist_ok": True})
    upload = recorded["upload"]
    assert upload["repo_id"] == "someone/flowmo-tiny"
    files = upload["files"]
    assert "decoder/diffusion_pytorch_model.safetensors" in files and "model_index.json" in files
    assert json.loads(files["metrics.json"]) == {"psnr": 12.5}
    card = files["README.md"].decode()
    for expected in ("`flowmo_tiny`", "0.2812", "| training data | embedded |", "| num_inference_steps | 25 |",
                     "| rho | 4.0 |", "| guidance_scale | 1.5 |", "| psnr | 12.5 |", 'from_pretrained("someone/flowmo-tiny")'):
        assert expected in card, expected


def test_pipeline_with_a_plugin_quantizer_loads_where_the_plugin_is_installed(tmp_path):
    pipe = tiny_pipeline(quantizer_name="bsq", quantizer={"dim": 18, "bits_per_group": 9})
    assert type(pipe.quantizer).__module__.startswith("tokenizer_zoo_bsq")
    pipe.save_pretrained(tmp_path)
    record = json.loads((tmp_path / "tokenizer_zoo.json").read_text())["components"]["quantizer"]
    assert record["distribution"] == "tokenizer-zoo-bsq" and record["name"] == "bsq"
    loaded = FlowMoPipeline.from_pretrained(tmp_path)
    assert type(loaded.quantizer).__name__ == "BSQuantizer"
    images = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded.encode(images).indices, pipe.encode(images).indices)


def test_missing_plugin_names_the_distribution_to_install(tmp_path, monkeypatch):
    pipe = tiny_pipeline(quantizer_name="bsq", quantizer={"dim": 18, "bits_per_group": 9})
    pipe.save_pretrained(tmp_path)
    for name in [m for m in sys.modules if m.startswith("tokenizer_zoo_bsq")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tokenizer_zoo_bsq", None)  # "not installed": its import fails
    with pytest.raises(MissingPluginError, match="'tokenizer-zoo-bsq'.*pip install tokenizer-zoo-bsq"):
        FlowMoPipeline.from_pretrained(tmp_path)


def test_metadata_of_another_version_is_refused(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "tokenizer_zoo.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "tokenizer_zoo.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format_version 99.*Upgrade tokenizer-zoo"):
        FlowMoPipeline.from_pretrained(tmp_path)
