import numpy as np
import pytest
import torch
from PIL import Image

from tokenizer_zoo.outputs import EncodeOutput
from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.pipelines.flowmo import DEFAULT_GUIDANCE_INTERVAL
from tokenizer_zoo.data.images import from_model_output


def test_encode_returns_indices_and_binary_codes(pipe, images):
    tokens = pipe.encode(images)
    assert isinstance(tokens, EncodeOutput)
    assert tokens.indices.shape == (3, 16, 2) and tokens.indices.dtype == torch.int64
    assert tokens.codes.shape == (3, 16, 18) and set(tokens.codes.unique().tolist()) <= {-1.0, 1.0}
    torch.testing.assert_close(pipe.quantizer.indices_to_codes(tokens.indices), tokens.codes)


def test_pil_numpy_and_tensor_inputs_single_or_batched_agree(pipe, images):
    as_uint8 = (images * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    quantised = torch.from_numpy(as_uint8).permute(0, 3, 1, 2).float() / 255  # [0, 1], as in diffusers
    reference = pipe.encode(quantised).indices
    pils = [Image.fromarray(a) for a in as_uint8]
    assert torch.equal(pipe.encode(pils).indices, reference)
    assert torch.equal(pipe.encode(as_uint8).indices, reference)
    assert torch.equal(pipe.encode(pils[1]).indices, reference[1:2])
    assert torch.equal(pipe.encode(as_uint8[1]).indices, reference[1:2])
    assert torch.equal(pipe.encode(quantised[1]).indices, reference[1:2])
    assert torch.equal(pipe.encode(as_uint8.astype(np.float32) / 255).indices, reference)  # numpy float in [0, 1]
    assert torch.equal(pipe.encode(torch.from_numpy(as_uint8).permute(0, 3, 1, 2)).indices, reference)  # uint8


def test_bad_inputs_are_explained(pipe, images):
    with pytest.raises(ValueError, match=r"\[0, 1\].*\(x \+ 1\) / 2"):  # the old [-1, 1] form
        pipe.encode(images * 2 - 1)
    with pytest.raises(ValueError, match=r"finite values in \[0, 1\]"):
        pipe.encode(torch.full((1, 3, 32, 32), float("nan")))
    with pytest.raises(ValueError, match="channels"):
        pipe.encode(torch.zeros(1, 5, 32, 32))
    with pytest.raises(TypeError, match="decode\\(\\) takes"):
        pipe.decode("tokens")
    with pytest.raises(ValueError, match="output_type"):
        pipe.decode(pipe.encode(images), num_inference_steps=1, output_type="jpeg")


def test_decode_is_deterministic_under_a_generator_and_tokens_matter(pipe, images):
    tokens = pipe.encode(images)
    run = lambda tok, seed: pipe.decode(tok, num_inference_steps=4, generator=torch.Generator().manual_seed(seed),  # noqa: E731
                                        output_type="pt").images
    first, again, other_seed = run(tokens, 0), run(tokens, 0), run(tokens, 1)
    assert torch.equal(first, again)
    assert not torch.equal(first, other_seed)
    assert torch.equal(run(tokens.indices, 0), first)  # integer indices decode like the EncodeOutput
    assert not torch.equal(run(-tokens.codes, 0), first)
    assert first.shape == (3, 3, 32, 32) and first.min() >= 0 and first.max() <= 1


def test_output_types(pipe, images):
    x = images[:2]  # [0, 1]; the model's images are x * 2 - 1
    torch.testing.assert_close(from_model_output(x * 2 - 1, "pt"), x)
    array = from_model_output(x * 2 - 1, "np")
    assert array.shape == (2, 32, 32, 3) and array.min() >= 0 and array.max() <= 1
    np.testing.assert_allclose(array, x.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    pil = pipe(images[:1], num_inference_steps=1, output_type="pil").images
    assert isinstance(pil[0], Image.Image) and pil[0].size == (32, 32)
    np.testing.assert_allclose(np.asarray(from_model_output(x * 2 - 1, "pil")[0]) / 255, array[0], atol=1 / 255)


def _record_decoder_calls(pipe, monkeypatch):
    calls = []
    real = pipe.decoder.forward

    def spy(codes, x_t, t, drop_code=None):
        calls.append({"batch": x_t.shape[0], "t": float(t[0]), "drop": drop_code})
        return real(codes, x_t, t, drop_code=drop_code)

    monkeypatch.setattr(pipe.decoder, "forward", spy)
    return calls


def test_guidance_is_one_batched_call_inside_the_interval_only(pipe, images, monkeypatch):
    calls = _record_decoder_calls(pipe, monkeypatch)
    pipe.decode(pipe.encode(images), num_inference_steps=25, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 25  # one forward call per step, guided or not
    low, high = DEFAULT_GUIDANCE_INTERVAL
    guided = [c for c in calls if c["batch"] == 6]
    assert guided and all(low <= c["t"] <= high for c in guided)
    assert all(c["batch"] == 3 for c in calls if not low <= c["t"] <= high)
    assert all(c["drop"].tolist() == [False] * 3 + [True] * 3 for c in guided)


def test_guided_velocity_is_the_cfg_combination(pipe, images):
    codes = pipe.encode(images).codes
    x, t = torch.randn(3, 3, 32, 32), torch.tensor(0.3)
    with torch.no_grad():
        guided = pipe._velocity(codes, x, t, 1.5, DEFAULT_GUIDANCE_INTERVAL)
        v_cond = pipe.decoder(codes, x, t.expand(3))
        v_uncond = pipe.decoder(torch.zeros_like(codes), x, t.expand(3), drop_code=True)
        outside = pipe._velocity(codes, x, torch.tensor(0.9), 1.5, DEFAULT_GUIDANCE_INTERVAL)
    torch.testing.assert_close(guided, v_uncond + 1.5 * (v_cond - v_uncond), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outside, pipe.decoder(codes, x, torch.full((3,), 0.9)), atol=1e-6, rtol=0)


def test_progress_bar_follows_its_config(pipe, images, capsys):
    tokens = pipe.encode(images[:1])
    pipe.set_progress_bar_config(disable=False)
    pipe.decode(tokens, num_inference_steps=3)
    assert "3/3" in capsys.readouterr().err
    pipe.set_progress_bar_config(disable=True)
    pipe.decode(tokens, num_inference_steps=3)
    assert "3/3" not in capsys.readouterr().err


def test_to_dtype_works(images):
    from tests.pipelines.conftest import tiny_pipeline

    pipe = tiny_pipeline().to(dtype=torch.float64)
    assert pipe.decoder.dtype == torch.float64
    out = pipe(images[:1], num_inference_steps=2, generator=torch.Generator().manual_seed(0),
               output_type="pt").images
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_save_and_load_round_trip_with_safetensors(pipe, images, tmp_path):
    pipe.save_pretrained(tmp_path)
    files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert {"encoder/diffusion_pytorch_model.safetensors", "decoder/diffusion_pytorch_model.safetensors",
            "model_index.json", "tokenizer_zoo.json", "scheduler/scheduler_config.json"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pth", ".ckpt")) for f in files)
    loaded = FlowMoPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.info == pipe.info
    kwargs = dict(num_inference_steps=3, output_type="pt")
    torch.testing.assert_close(loaded(images, generator=torch.Generator().manual_seed(0), **kwargs).images,
                               pipe(images, generator=torch.Generator().manual_seed(0), **kwargs).images, rtol=0, atol=0)
