import pytest
import torch

from tests.pipelines.one_pass_decoder import LinearTestDecoder
from tokenizer_zoo.pipelines import TokenizerPipeline
from tokenizer_zoo.presets import build_tokenizer


def _pipeline():
    parts = build_tokenizer("flowmo_tiny")
    return TokenizerPipeline(parts.encoder, parts.quantizer, LinearTestDecoder())


def test_one_pass_pipeline_encodes_decodes_and_round_trips(tmp_path):
    pipe = _pipeline()
    images = torch.rand(2, 3, 32, 32)
    tokens = pipe.encode(images)
    direct = (pipe.decoder(tokens.codes).clamp(-1, 1) + 1) / 2
    out = pipe(images, output_type="pt", num_inference_steps=25).images  # sampler settings are ignored
    torch.testing.assert_close(out, direct)
    assert len(pipe.decode(tokens.indices).images) == 2  # PIL images by default
    with pytest.raises(TypeError, match="did you mean 'num_inference_steps'"):
        pipe(images, num_inference_step=25)
    pipe.save_pretrained(tmp_path)
    loaded = TokenizerPipeline.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded(images, output_type="pt").images, out, rtol=0, atol=0)


def test_generative_decoders_belong_in_flowmo_pipeline():
    parts = build_tokenizer("flowmo_tiny")
    with pytest.raises(TypeError, match="use FlowMoPipeline"):
        TokenizerPipeline(parts.encoder, parts.quantizer, parts.decoder)
