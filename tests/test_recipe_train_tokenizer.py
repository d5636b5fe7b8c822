"""recipes/train_tokenizer.py trains one-pass baselines with the shared 1A loop: resume, output folder."""


import pytest
import torch
from safetensors.torch import load_file

from tests.recipes import assert_trained, heldout_loss, initial_tokenizer, run_recipe
from tokenizer_zoo.pipelines import TokenizerPipeline

FAST = ["perceptual_weight=0", "batch_size=4", "eval_images=4", "eval_steps=1", "log_every=1", "grid_every=1000",
        "ema_decay=0.9", "lr=1e-3", "checkpoint_every=2"]


def _train(argv):
    return run_recipe("train_tokenizer", argv)


@pytest.mark.parametrize("preset", ["titok_tiny", "cnn_lfq_tiny"])
def test_one_pass_baseline_trains_resumes_and_loads(tmp_path, preset):
    _train(["--preset", preset, *FAST, f"output_dir={tmp_path / 'straight'}", "max_steps=4"])
    _train(["--preset", preset, *FAST, f"output_dir={tmp_path / 'resumed'}", "max_steps=2"])
    _train(["--preset", preset, *FAST, f"output_dir={tmp_path / 'resumed'}", "max_steps=4"])
    files = sorted((tmp_path / "straight" / "pipeline").rglob("*.safetensors"))
    assert files
    for file in files:
        twin = tmp_path / "resumed" / file.relative_to(tmp_path / "straight")
        for name, value in load_file(file).items():
            torch.testing.assert_close(load_file(twin)[name], value, atol=1e-6, rtol=0, msg=name)
    pipe = TokenizerPipeline.from_pretrained(tmp_path / "resumed" / "pipeline")
    assert pipe.info["recipe"] == "train_tokenizer" and pipe.info["preset"] == preset
    out = pipe(torch.rand(2, 3, 32, 32), output_type="pt").images
    assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all()
    initial = initial_tokenizer(preset)
    assert_trained({f"{part}.{k}": v for part in ("encoder", "decoder") for k, v in getattr(initial, part).state_dict().items()},
                   {f"{part}.{k}": v for part in ("encoder", "decoder") for k, v in getattr(pipe, part).state_dict().items()},
                   heldout_loss(initial.encoder, initial.quantizer, initial.decoder),
                   heldout_loss(pipe.encoder, pipe.quantizer, pipe.decoder))
