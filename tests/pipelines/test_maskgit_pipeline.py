"""MaskGiTPipeline: labels -> tokens -> images, save/load (local and Hub cache), model card, checks."""

import json

import pytest
import torch

from tests.generation.test_maskgit import tiny_maskgit
from tests.pipelines.conftest import tiny_pipeline
from tests.pipelines.test_hub_and_plugins import _hand_built_hub_cache
from tokenizer_zoo.pipelines import MaskGiTPipeline, TokenizerPipeline, load_pipeline
from tokenizer_zoo.presets import build_tokenizer


def maskgit_pipeline() -> MaskGiTPipeline:
    """The tiny FlowMo tokenizer (16 tokens of 2 x 9 bits) under a tiny random MaskGiT."""
    maskgit = tiny_maskgit(token_shape=(16, 2), index_vocab_size=512, num_sub_tokens=2, num_classes=10)
    pipe = MaskGiTPipeline(maskgit, tiny_pipeline())
    pipe.info = {"dataset": "digits", "steps": 0}
    return pipe


def _public(config) -> dict:
    return {key: value for key, value in config.items() if not key.startswith("_")}


def test_labels_become_the_tokenizers_decoding_of_the_generated_tokens():
    pipe = maskgit_pipeline()
    images = pipe([3, 1], generator=torch.Generator().manual_seed(0), output_type="pt",
                  decode_kwargs={"num_inference_steps": 3}, num_inference_steps=4, guidance_scale=2.0).images
    generator = torch.Generator().manual_seed(0)
    tokens = pipe.maskgit.generate([3, 1], num_steps=4, guidance_scale=2.0, generator=generator, temperature=1.0,
                                   choice_temperature=4.5)
    by_hand = pipe.tokenizer.decode(tokens, num_inference_steps=3, generator=generator, output_type="pt").images
    assert images.shape == (2, 3, 32, 32) and torch.equal(images, by_hand)
    (pil,) = pipe([0], num_inference_steps=2, decode_kwargs={"num_inference_steps": 2}, return_dict=False)
    assert pil[0].size == (32, 32)
    with pytest.raises(TypeError, match="did you mean 'num_inference_steps'"):
        pipe([0], num_steps=2)


def test_save_and_load_round_trip_locally_and_from_the_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    pipe = maskgit_pipeline()
    pipe.save_pretrained(tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["_class_name"] == "MaskGiTPipeline" and index["tokenizer"][1] == "FlowMoPipeline"
    assert (tmp_path / "saved" / "maskgit" / "diffusion_pytorch_model.safetensors").is_file()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    repo_id = _hand_built_hub_cache(tmp_path / "saved", tmp_path / "cache", "tokenizer-zoo/maskgit-test")
    for source, kwargs in [(tmp_path / "saved", {}), (repo_id, {"cache_dir": tmp_path / "cache"})]:
        loaded = MaskGiTPipeline.from_pretrained(source, **kwargs)
        assert loaded.info == pipe.info and _public(loaded.maskgit.config) == _public(pipe.maskgit.config)
        assert loaded.tokenizer.info == pipe.tokenizer.info and loaded.sampling_defaults == pipe.sampling_defaults
        images = [p([5, 9], generator=torch.Generator().manual_seed(3), output_type="pt",
                    decode_kwargs={"num_inference_steps": 2}).images for p in (loaded, pipe)]
        assert torch.equal(*images)


def test_one_pass_tokenizers_and_other_folders(tmp_path):
    parts = build_tokenizer("titok_tiny")
    maskgit = tiny_maskgit(token_shape=(16, 2), index_vocab_size=512, num_sub_tokens=2, num_classes=10)
    pipe = MaskGiTPipeline(maskgit, TokenizerPipeline(parts.encoder, parts.quantizer, parts.decoder))
    pipe.save_pretrained(tmp_path / "saved")
    loaded = MaskGiTPipeline.from_pretrained(tmp_path / "saved")
    assert isinstance(loaded.tokenizer, TokenizerPipeline)
    assert torch.equal(loaded([1], output_type="pt", generator=torch.Generator().manual_seed(0)).images,
                       pipe([1], output_type="pt", generator=torch.Generator().manual_seed(0)).images)
    assert isinstance(load_pipeline(tmp_path / "saved"), MaskGiTPipeline)
    with pytest.raises(ValueError, match="holds a TokenizerPipeline; expected one of MaskGiTPipeline"):
        load_pipeline(tmp_path / "saved" / "tokenizer", kinds=("MaskGiTPipeline",))
    metadata = tmp_path / "saved" / "tokenizer_zoo.json"
    metadata.write_text(json.dumps({**json.loads(metadata.read_text()), "format_version": 7}))
    with pytest.raises(ValueError, match="format_version 7"):
        MaskGiTPipeline.from_pretrained(tmp_path / "saved")


def test_folders_of_the_earlier_layout_still_load(tmp_path):
    """Before MaskGiTPipeline was a DiffusionPipeline: maskgit/, tokenizer/ and maskgit_pipeline.json."""
    pipe = maskgit_pipeline()
    old = tmp_path / "old"
    pipe.maskgit.save_pretrained(old / "maskgit")
    pipe.tokenizer.save_pretrained(old / "tokenizer")
    (old / "maskgit_pipeline.json").write_text(json.dumps({
        "format_version": 1, "tokenizer_class": "FlowMoPipeline", "info": {"dataset": "digits"},
        "sampling_defaults": {"num_steps": 3, "guidance_scale": 1.5, "temperature": 1.0, "choice_temperature": 4.5}}))
    loaded = load_pipeline(old)
    assert isinstance(loaded, MaskGiTPipeline) and loaded.info == {"dataset": "digits"}
    assert loaded.sampling_defaults == {"num_inference_steps": 3, "guidance_scale": 1.5, "temperature": 1.0,
                                        "choice_temperature": 4.5}
    kwargs = dict(output_type="pt", decode_kwargs={"num_inference_steps": 2})
    torch.testing.assert_close(loaded([4], generator=torch.Generator().manual_seed(1), **kwargs).images,
                               pipe([4], num_inference_steps=3, guidance_scale=1.5,
                                    generator=torch.Generator().manual_seed(1), **kwargs).images, rtol=0, atol=0)
    loaded.save_pretrained(tmp_path / "new")  # re-saving migrates it
    assert json.loads((tmp_path / "new" / "model_index.json").read_text())["num_inference_steps"] == 3


def test_a_model_for_other_tokens_is_refused():
    fsq_tokens = tiny_maskgit(token_shape=(16,), index_vocab_size=1000, num_sub_tokens=2, num_classes=10)
    with pytest.raises(ValueError, match="pair the model with the tokenizer"):
        MaskGiTPipeline(fsq_tokens, tiny_pipeline())


def test_push_to_hub_uploads_both_models_and_a_card(hub_recorder):
    pipe = maskgit_pipeline()
    pipe.info["metrics"] = {"gfid (MaskGiT samples)": 42.0}
    assert pipe.push_to_hub("maskgit-digits") == "https://example.invalid/commit/1"
    files = hub_recorder["upload"]["files"]
    assert {"maskgit/diffusion_pytorch_model.safetensors", "tokenizer/model_index.json",
            "model_index.json"} <= set(files)
    assert json.loads(files["metrics.json"]) == {"gfid (MaskGiT samples)": 42.0}
    card = files["README.md"].decode()
    for expected in ("`FlowMoPipeline`", "(preset `flowmo_tiny`, 32 px)", "| classes | 10 |",
                     "[16, 2] as 32 sub-tokens (radices [512, 512])", "| training data | digits |",
                     "| guidance_scale | 2.0 |", "| gfid (MaskGiT samples) | 42.0 |",
                     'MaskGiTPipeline.from_pretrained("someone/maskgit-digits")'):
        assert expected in card, expected
