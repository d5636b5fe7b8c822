"""The diffusers conventions every pipeline follows: output dataclasses and ``return_dict``, images in
[0, 1] (PIL, numpy, torch), sampling defaults from the configs, swappable schedulers, strict keywords."""

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, ImagePipelineOutput
from PIL import Image

from tests.generation.test_maskgit import tiny_maskgit
from tests.pipelines.conftest import tiny_pipeline
from tests.pipelines.one_pass_decoder import LinearTestDecoder
from tokenizer_zoo.outputs import EncodeOutput
from tokenizer_zoo.pipelines import FlowMoPipeline, MaskGiTPipeline, TokenizerPipeline, load_pipeline
from tokenizer_zoo.presets import build_tokenizer
from tokenizer_zoo.samplers import ShiftedEulerScheduler

STEPS = {"num_inference_steps": 2}


def one_pass_pipeline() -> TokenizerPipeline:
    torch.manual_seed(0)
    parts = build_tokenizer("flowmo_tiny")
    return TokenizerPipeline(parts.encoder, parts.quantizer, LinearTestDecoder())


def maskgit_pipeline() -> MaskGiTPipeline:
    maskgit = tiny_maskgit(token_shape=(16, 2), index_vocab_size=512, num_sub_tokens=2, num_classes=10)
    return MaskGiTPipeline(maskgit, tiny_pipeline())


TOKENIZERS = {"FlowMoPipeline": tiny_pipeline, "TokenizerPipeline": one_pass_pipeline}


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", TOKENIZERS)
def test_tokenizers_return_dataclasses_or_tuples(kind, images):
    pipe = TOKENIZERS[kind]()
    encoded = pipe.encode(images)
    assert isinstance(encoded, EncodeOutput)
    indices, codes = pipe.encode(images, return_dict=False)
    assert torch.equal(indices, encoded.indices) and torch.equal(codes, encoded.codes)
    out = pipe(images, output_type="pt", generator=seeded(), **STEPS)
    assert isinstance(out, ImagePipelineOutput) and out.images.shape == (3, 3, 32, 32)
    as_tuple = pipe(images, output_type="pt", generator=seeded(), return_dict=False, **STEPS)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1 and torch.equal(as_tuple[0], out.images)
    decoded = pipe.decode(encoded, output_type="pt", generator=seeded(), **STEPS)
    assert torch.equal(decoded.images, out.images)
    assert 0 <= out.images.min() and out.images.max() <= 1


def test_maskgit_returns_a_dataclass_or_a_tuple():
    pipe = maskgit_pipeline()
    kwargs = dict(output_type="np", num_inference_steps=2, decode_kwargs=STEPS)
    out = pipe([1, 2], generator=seeded(), **kwargs)
    (as_tuple,) = pipe([1, 2], generator=seeded(), return_dict=False, **kwargs)
    assert isinstance(out, ImagePipelineOutput) and out.images.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(as_tuple, out.images)
    pipe.tokenizer.scheduler = FlowMatchEulerDiscreteScheduler()  # a diffusers scheduler in the tokenizer
    swapped = pipe([1, 2], generator=seeded(), **kwargs).images
    assert swapped.shape == (2, 32, 32, 3) and not np.array_equal(swapped, out.images)


@pytest.mark.parametrize("kind", TOKENIZERS)
def test_pil_numpy_and_unit_tensors_are_the_same_images(kind, images):
    pipe = TOKENIZERS[kind]()
    as_uint8 = (images * 255).round().byte().permute(0, 2, 3, 1).numpy()
    unit = torch.from_numpy(as_uint8).permute(0, 3, 1, 2).float() / 255
    reference = pipe(unit, output_type="pt", generator=seeded(), **STEPS).images
    for form in ([Image.fromarray(a) for a in as_uint8], as_uint8, as_uint8.astype(np.float32) / 255, list(unit)):
        torch.testing.assert_close(pipe(form, output_type="pt", generator=seeded(), **STEPS).images, reference,
                                   rtol=0, atol=1e-6)
    # outputs: "np" is "pt" as HWC, "pil" is "np" rounded to 8 bits
    array = pipe(unit, output_type="np", generator=seeded(), **STEPS).images
    np.testing.assert_allclose(array, reference.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    pil = pipe(unit, output_type="pil", generator=seeded(), **STEPS).images
    np.testing.assert_allclose(np.stack([np.asarray(p) for p in pil]) / 255, array, atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize("kind", TOKENIZERS)
def test_tensors_outside_zero_one_are_refused_with_the_fix(kind, images):
    pipe = TOKENIZERS[kind]()
    with pytest.raises(ValueError, match=r"in \[0, 1\], got \[-0\.\d+.*\(x \+ 1\) / 2 for images in \[-1, 1\]"):
        pipe(images * 2 - 1)


def test_sampling_defaults_come_from_the_configs_and_calls_override_them(images, tmp_path):
    pipe = tiny_pipeline()
    tokens = pipe.encode(images)

    def decode(p, **kwargs):
        return p.decode(tokens, output_type="pt", generator=seeded(), **kwargs).images

    assert pipe.sampling_defaults == {"num_inference_steps": 25, "rho": 4.0, "guidance_scale": 1.5,
                                      "guidance_interval": (0.1453, 0.5050)}
    explicit = decode(pipe, num_inference_steps=3, rho=2.0, guidance_scale=1.0)
    assert pipe.scheduler.config.rho == 4.0  # a per-call rho leaves the pipeline's scheduler as it was
    assert not torch.equal(explicit, decode(pipe, num_inference_steps=3, guidance_scale=1.0))
    configured = FlowMoPipeline(pipe.encoder, pipe.quantizer, pipe.decoder,
                                ShiftedEulerScheduler(num_inference_steps=3, rho=2.0), guidance_scale=1.0)
    configured.set_progress_bar_config(disable=True)
    torch.testing.assert_close(decode(configured), explicit, rtol=0, atol=0)
    configured.save_pretrained(tmp_path)
    loaded = FlowMoPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.sampling_defaults == {**configured.sampling_defaults, "rho": 2.0, "num_inference_steps": 3}
    torch.testing.assert_close(decode(loaded), explicit, rtol=0, atol=0)  # the saved rho and steps are used


def test_latents_are_the_starting_noise(images):
    pipe = tiny_pipeline()
    tokens = pipe.encode(images)
    noise = torch.randn(3, 3, 32, 32, generator=seeded(5))
    from_generator = pipe.decode(tokens, output_type="pt", generator=seeded(5), **STEPS).images
    torch.testing.assert_close(pipe.decode(tokens, output_type="pt", latents=noise, **STEPS).images, from_generator,
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"latents must be the starting noise of shape \(3, 3, 32, 32\)"):
        pipe.decode(tokens, latents=noise[:1], **STEPS)


def test_a_diffusers_flow_matching_scheduler_can_be_swapped_in(images):
    pipe = tiny_pipeline()
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    tokens = pipe.encode(images)
    out = pipe.decode(tokens, num_inference_steps=4, guidance_scale=1.0, generator=seeded(), output_type="pt").images
    # by hand: Euler on diffusers' shifted sigmas, the decoder taking t = sigma
    reference = FlowMatchEulerDiscreteScheduler(shift=3.0)
    reference.set_timesteps(4)
    sigmas = reference.sigmas.tolist()
    assert reference.timesteps[0] == 1000 and sigmas[-1] == 0 and 0 < sigmas[-2] < 0.1
    x = torch.randn(3, 3, 32, 32, generator=seeded())
    with torch.no_grad():
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
            x = x + (sigma_next - sigma) * pipe.decoder(tokens.codes, x, torch.full((3,), sigma))
    torch.testing.assert_close(out, ((x.clamp(-1, 1) + 1) / 2), atol=1e-5, rtol=0)
    assert pipe.sampling_defaults["num_inference_steps"] == 25 and "rho" not in pipe.sampling_defaults
    with pytest.raises(TypeError, match="FlowMatchEulerDiscreteScheduler has none"):
        pipe.decode(tokens, rho=2.0)


def test_our_scheduler_is_diffusers_flow_match_euler_with_custom_sigmas():
    assert issubclass(ShiftedEulerScheduler, FlowMatchEulerDiscreteScheduler)
    with pytest.raises(TypeError, match="num_inference_steps and device only"):
        ShiftedEulerScheduler().set_timesteps(4, sigmas=[1.0, 0.5])


@pytest.mark.parametrize("call, typo, suggestion", [
    ("decode", "guidance_scle", "guidance_scale"),
    ("__call__", "num_inference_step", "num_inference_steps"),
    ("encode", "return_dic", "return_dict"),
    ("maskgit", "num_steps", "num_inference_steps"),
    ("maskgit", "temprature", "temperature"),
    ("one_pass", "generater", "generator"),
    ("likelihood", "num_inference_step", "num_inference_steps"),
])
def test_unknown_keywords_name_the_closest_valid_one(call, typo, suggestion, images):
    pipe = tiny_pipeline()
    calls = {"decode": lambda **kw: pipe.decode(pipe.encode(images), **kw),
             "__call__": lambda **kw: pipe(images, **kw), "encode": lambda **kw: pipe.encode(images, **kw),
             "maskgit": lambda **kw: maskgit_pipeline()([0], **kw),
             "one_pass": lambda **kw: one_pass_pipeline().decode(torch.zeros(1, 16, 2, dtype=torch.long), **kw),
             "likelihood": lambda **kw: pipe.likelihood(images, **kw)}
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{typo}'; did you mean '{suggestion}'"):
        calls[call](**{typo: 1})


def test_one_loader_picks_the_class_of_every_folder(tmp_path):
    from diffusers import DiffusionPipeline

    for name, make in {**TOKENIZERS, "MaskGiTPipeline": maskgit_pipeline}.items():
        make().save_pretrained(tmp_path / name)
        assert type(load_pipeline(tmp_path / name)).__name__ == name
    with pytest.raises(ValueError, match="holds a MaskGiTPipeline; expected one of FlowMoPipeline, TokenizerPipeline"):
        load_pipeline(tmp_path / "MaskGiTPipeline", kinds=("FlowMoPipeline", "TokenizerPipeline"))
    with pytest.raises(ValueError, match="has no model_index.json"):
        load_pipeline(tmp_path)
    # diffusers' generic loader finds the classes too, and its pipelines decode as ours do
    for name in TOKENIZERS:
        generic = DiffusionPipeline.from_pretrained(tmp_path / name)
        ours = load_pipeline(tmp_path / name)
        assert type(generic) is type(ours)
        images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        decoded = [pipe(images, output_type="pt", generator=torch.Generator().manual_seed(1)).images
                   for pipe in (generic, ours)]
        torch.testing.assert_close(*decoded)
