"""Checkpoints are safetensors + JSON: exact round trips, and no file in a checkpoint folder can run code."""

import json
import math
import os
import random

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from diffusers.training_utils import EMAModel
from torch import nn

from tokenizer_zoo.layers.weight_norm import ForcedWeightNorm
from tokenizer_zoo.presets import build_tokenizer
from tokenizer_zoo.training.checkpoints import CheckpointError, checkpoint_dirs, resume, save_checkpoint
from tokenizer_zoo.training.safe_state import join_tensors, load_state, save_state, split_tensors
from tokenizer_zoo.validation import TrainingDivergedError


class Payload:
    """Unpickling this object writes a marker file: the stand-in for code planted in a checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_state_files_round_trip_every_kind_of_value(tmp_path):
    shared = torch.arange(6.0)
    tree = {"weights": {"a.b": shared, "view": shared[2:4], "bf16": torch.ones(3, dtype=torch.bfloat16),
                        "scalar": torch.tensor(2.5), "ids": torch.tensor([1, 2], dtype=torch.int64)},
            "state": {0: {"step": torch.tensor(3.0)}, 7: {}}, "betas": (0.9, 0.95), "best": -math.inf,
            "nan": math.nan, "flags": [True, None, "name", 3], "__tensor__": "a key that looks like a tag"}
    save_state(tmp_path / "state", tree)
    assert _equal(load_state(tmp_path / "state"), tree)
    data, tensors = split_tensors(tree)
    json.dumps(data, allow_nan=False)  # plain JSON: no NaN/Infinity literals
    assert _equal(join_tensors(data, tensors), tree)


def test_real_state_dicts_load_back_into_fresh_objects(tmp_path):
    torch.manual_seed(0)
    parts = build_tokenizer("flowmo_tiny")
    params = list(parts.decoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.96))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))
    ema, norm = EMAModel(params, decay=0.99), ForcedWeightNorm(parts.decoder)
    sum(p.square().sum() for p in params).backward()
    optimizer.step(), schedule.step(), ema.step(params)
    objects = {"optimizer": optimizer, "schedule": schedule, "ema": ema, "norm": norm}
    save_state(tmp_path / "state", {name: obj.state_dict() for name, obj in objects.items()})
    loaded = load_state(tmp_path / "state")
    fresh_optimizer = torch.optim.AdamW(params, lr=1.0)
    fresh = {"optimizer": fresh_optimizer, "schedule": torch.optim.lr_scheduler.LambdaLR(fresh_optimizer, lambda s: 1.0),
             "ema": EMAModel(params, decay=0.5), "norm": ForcedWeightNorm(parts.decoder)}
    for name, obj in fresh.items():
        obj.load_state_dict(loaded[name])
        assert _equal(obj.state_dict(), objects[name].state_dict()), name


def _setup(seed: int = 0):
    """A tiny training setup registered with Accelerate the way the recipes register theirs."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    torch.manual_seed(seed)
    accelerator = Accelerator(cpu=True)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    ema = EMAModel(list(model.parameters()), decay=0.9)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    accelerator.register_for_checkpointing(ema, schedule)
    return accelerator, model, optimizer, ema, schedule


def _train_step(model, optimizer, ema, schedule):
    model(torch.ones(2, 4)).square().sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    schedule.step()
    ema.step(model.parameters())


def _snapshot(model, optimizer, ema, schedule):
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "ema": ema.state_dict(),
            "schedule": schedule.state_dict(), "rng": (torch.get_rng_state(), random.random(), np.random.rand())}


def test_resume_restores_everything_exactly(tmp_path):
    accelerator, *objects = _setup()
    _train_step(*objects)
    save_checkpoint(accelerator, tmp_path, step=1)
    expected = _snapshot(*objects)
    accelerator, *objects = _setup(seed=1)  # another initialisation, another random state
    assert resume(accelerator, tmp_path) == 1
    assert _equal(_snapshot(*objects), expected)


def test_planted_pickles_never_run(tmp_path, capsys):
    accelerator, *objects = _setup()
    _train_step(*objects)
    folder = save_checkpoint(accelerator, tmp_path, step=1)
    expected = _snapshot(*objects)
    marker, proof = tmp_path / "code_ran", tmp_path / "payload_is_live"
    torch.save(Payload(proof), tmp_path / "control.pkl")
    torch.load(tmp_path / "control.pkl", weights_only=False)
    assert proof.is_file()  # the payload really runs code when unpickled
    planted = ["custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl", "optimizer.bin", "scheduler.bin",
               "random_states_0.pkl", "pytorch_model.bin"]
    for name in planted:
        torch.save(Payload(marker), folder / name)
    accelerator, *objects = _setup(seed=1)
    assert resume(accelerator, tmp_path) == 1
    assert not marker.exists()
    assert _equal(_snapshot(*objects), expected)
    printed = capsys.readouterr().out
    assert all(name in printed for name in planted)  # named as ignored


def test_checkpoints_of_the_pickle_format_are_refused_unread(tmp_path):
    folder = tmp_path / "checkpoints" / "step_00000004"
    folder.mkdir(parents=True)
    (folder / "training_state.json").write_text(json.dumps({"step": 4}))
    marker = tmp_path / "code_ran"
    torch.save(Payload(marker), folder / "custom_checkpoint_0.pkl")
    accelerator, *_ = _setup()
    with pytest.raises(CheckpointError, match="earlier tokenizer-zoo.*pickles.*delete it"):
        resume(accelerator, tmp_path)
    assert not marker.exists()


def test_a_checkpoint_of_another_setup_is_refused(tmp_path):
    accelerator, *_ = _setup()
    save_checkpoint(accelerator, tmp_path, step=2)
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    other = Accelerator(cpu=True)
    other.prepare(nn.Linear(4, 3))
    with pytest.raises(CheckpointError, match=r"holds 1 models, 1 optimizers, 0 schedulers, 2 objects .* new output_dir"):
        resume(other, tmp_path)


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    accelerator, model, *_ = _setup()
    good = save_checkpoint(accelerator, tmp_path, step=1)
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    with torch.no_grad():
        model.bias[1] = math.nan
    with pytest.raises(TrainingDivergedError, match=f"'bias' holds NaN or inf at step 2.*{good}.* is kept"):
        save_checkpoint(accelerator, tmp_path, step=2)
    assert checkpoint_dirs(tmp_path) == [good]
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert not any(p.name.startswith(".partial") for p in (tmp_path / "checkpoints").iterdir())
    assert os.listdir(tmp_path / "checkpoints") == [good.name]
