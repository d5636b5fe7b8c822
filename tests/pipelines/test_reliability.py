"""Pipelines refuse NaN/inf inputs and weights, and from_pretrained names what is missing."""

import math
import shutil

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image
from safetensors.torch import load_file, save_file

from tests.pipelines.conftest import tiny_pipeline
from tests.pipelines.one_pass_decoder import LinearTestDecoder
from tokenizer_zoo.data import InvalidImageError
from tokenizer_zoo.pipelines import TOKENIZER_PIPELINES, FlowMoPipeline, TokenizerPipeline, load_pipeline
from tokenizer_zoo.pipelines.folders import PipelineFolderError
from tokenizer_zoo.presets import build_tokenizer
from tokenizer_zoo.validation import NonFiniteError, first_nonfinite

PIPELINES = {"flowmo": tiny_pipeline, "one_pass": lambda: TokenizerPipeline(
    *(lambda parts: (parts.encoder, parts.quantizer))(build_tokenizer("flowmo_tiny")), LinearTestDecoder())}


@pytest.fixture(params=sorted(PIPELINES))
def pipe(request):
    torch.manual_seed(0)
    return PIPELINES[request.param]()


def _with_nan(array):
    array = array.copy() if isinstance(array, np.ndarray) else array.clone()
    array.reshape(-1)[5] = math.nan
    return array


@pytest.mark.parametrize("image, error", [
    (_with_nan(np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)), "numpy images contain NaN or inf"),
    ([_with_nan(np.random.default_rng(0).random((2, 32, 32, 3)))], "numpy images contain NaN or inf"),
    (_with_nan(torch.zeros(2, 3, 32, 32)), "image tensors contain NaN or inf"),
    (torch.full((3, 32, 32), math.inf), "image tensors contain NaN or inf"),
])
def test_non_finite_images_are_refused(pipe, image, error):
    with pytest.raises(NonFiniteError, match=error):
        pipe.encode(image)


def test_non_finite_float_pil_images_are_refused(pipe):
    image = Image.fromarray(_with_nan(np.full((32, 32), 100.0, dtype=np.float32)), mode="F")
    with pytest.raises(InvalidImageError, match="NaN or inf pixels"):
        pipe.encode(image)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_codes_are_refused_before_decoding(pipe, value):
    encoded = pipe.encode(torch.zeros(1, 3, 32, 32))
    codes = encoded.codes.clone()
    codes[0, 3, 1] = value
    with pytest.raises(NonFiniteError, match=r"^codes contain NaN or inf; pass the codes of encode\(\)"):
        pipe.decode(codes, num_inference_steps=1)
    assert pipe.decode(encoded.indices, num_inference_steps=1, output_type="pt").images.isfinite().all()


def test_token_ids_outside_the_vocabulary_are_refused(pipe):
    ids = pipe.encode(torch.zeros(1, 3, 32, 32)).indices.clone()
    ids[0, 2, 0] = pipe.quantizer.vocab_size
    with pytest.raises(ValueError, match="vocabulary"):
        pipe.decode(ids, num_inference_steps=1)


def test_first_nonfinite_names_the_first_bad_tensor():
    tensors = [("a", torch.ones(3)), ("ids", torch.arange(4)), ("b", torch.tensor([1.0, math.inf])),
               ("c", torch.tensor([math.nan])), ("empty", torch.empty(0))]
    assert first_nonfinite(tensors) == "b" and first_nonfinite(tensors[:2]) is None and first_nonfinite([]) is None


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_weights_holding_nan_or_inf_are_refused_at_load(tmp_path, value):
    tiny_pipeline().save_pretrained(tmp_path / "model")
    path = tmp_path / "model" / "decoder" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(path)
    name = sorted(tensors)[len(tensors) // 2]
    tensors[name].view(-1)[-1] = value
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(NonFiniteError, match=rf"model/decoder: tensor '{name}' holds NaN or inf; .*re-download"):
        FlowMoPipeline.from_pretrained(tmp_path / "model")


@pytest.mark.parametrize("component", ["decoder", "encoder", "quantizer"])
def test_a_missing_component_file_names_the_component_and_folder(tmp_path, component):
    tiny_pipeline().save_pretrained(tmp_path / "model")
    (tmp_path / "model" / component / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(PipelineFolderError, match=rf"pipeline's {component} has no weights: {tmp_path / 'model' / component}"):
        FlowMoPipeline.from_pretrained(tmp_path / "model")
    shutil.rmtree(tmp_path / "model" / component)
    with pytest.raises(PipelineFolderError, match=rf"pipeline's {component} is missing: {tmp_path / 'model'} has no"):
        load_pipeline(tmp_path / "model", kinds=TOKENIZER_PIPELINES)


@pytest.mark.parametrize("path", ["{tmp}/missing", "./missing_here", "{tmp}/a/b/c", "~/surely-missing-folder"])
def test_a_nonexistent_local_path_is_no_such_folder_not_a_hub_id(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)

    def download(*args, **kwargs):
        raise AssertionError("a local path was sent to the Hub")

    monkeypatch.setattr(DiffusionPipeline, "download", download)
    with pytest.raises(PipelineFolderError, match="no such folder"):
        FlowMoPipeline.from_pretrained(path.format(tmp=tmp_path))
    (tmp_path / "outputs").mkdir()  # a relative path whose parent exists here is a path, not owner/name
    with pytest.raises(PipelineFolderError, match="outputs/run: no such folder"):
        load_pipeline("outputs/run", kinds=TOKENIZER_PIPELINES)
