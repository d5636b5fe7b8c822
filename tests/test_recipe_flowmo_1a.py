"""End-to-end tests of recipes/flowmo_1a.py: resume equality (two-process data parallelism and its resume:
tests/training/test_preemption.py)."""

import json
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.recipes import assert_trained, heldout_loss, initial_tokenizer, load_recipe, run_recipe
from tests.training.signals import send_signals_during_training
from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.training.preemption import TrainingPreempted

# small and fast: no LPIPS (covered by the loss tests), tiny images, a few steps
FAST = ["perceptual_weight=0", "batch_size=4", "eval_images=4", "eval_steps=2", "log_every=1", "grid_every=1000",
        "ema_decay=0.9", "lr=1e-3", "eval_at_start=true"]


def _recipe():
    return load_recipe("flowmo_1a")


def _run(argv):
    return run_recipe("flowmo_1a", argv)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for part in ("encoder", "quantizer", "decoder"):
        for file in sorted((folder / part).glob("*.safetensors")):
            tensors.update({f"{part}.{k}": v for k, v in load_file(file).items()})
    return tensors


def test_resume_equals_uninterrupted_training(tmp_path, monkeypatch):
    """Stopped by SIGUSR1 after step 2 (no checkpoint due then), with a SIGTERM arriving during the save that
    follows, then resumed by the same command: the weights of an uninterrupted run. The uninterrupted run's
    phases (what benchmarks/main_job.py reports) cover the whole run, each once."""
    start = time.perf_counter()
    _run(FAST + [f"output_dir={tmp_path / 'straight'}", "max_steps=6", "checkpoint_every=3"])
    elapsed = time.perf_counter() - start
    phases = json.loads((tmp_path / "straight" / "phases.json").read_text())
    assert list(phases["wall_seconds"]) == ["set_up", "evaluation", "first step (compile warm-up)", "training", "saving"]
    assert 0.8 * elapsed <= sum(phases["wall_seconds"].values()) <= elapsed
    assert all(seconds >= 0 for seconds in phases["cpu_seconds"].values())
    command = FAST + [f"output_dir={tmp_path / 'resumed'}", "max_steps=6", "checkpoint_every=3"]
    with monkeypatch.context() as patch, pytest.raises(TrainingPreempted) as stop:
        send_signals_during_training(patch, at_step=2, signum=signal.SIGUSR1, during_save=signal.SIGTERM)
        _run(command)
    assert stop.value.exit_code == 128 + signal.SIGUSR1 and "after step 2" in str(stop.value)
    assert [p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()] == ["step_00000002"]
    _run(command)
    straight, resumed = _weights(tmp_path / "straight" / "pipeline"), _weights(tmp_path / "resumed" / "pipeline")
    assert straight.keys() == resumed.keys() and straight
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], atol=1e-6, rtol=0, msg=name)
    # the output folder loads back as a pipeline, every weight trained and the held-out flow loss fell
    pipe = FlowMoPipeline.from_pretrained(tmp_path / "resumed" / "pipeline")
    assert pipe.decoder.config.image_size == 32
    initial = initial_tokenizer("flowmo_tiny")
    initial_weights = {f"{part}.{k}": v for part in ("encoder", "decoder")
                       for k, v in getattr(initial, part).state_dict().items()}
    assert_trained(initial_weights, {k: v for k, v in resumed.items() if k in initial_weights},
                   heldout_loss(initial.encoder, initial.quantizer, initial.decoder),
                   heldout_loss(pipe.encoder, pipe.quantizer, pipe.decoder))
    first = sorted((tmp_path / "resumed" / "grids").glob("*.png"))
    assert [p.name for p in first] == ["step_00000000.png", "step_00000006.png"]
