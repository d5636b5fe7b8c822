"""Preemption: a signal ends training with a checkpoint and exit code 128 + signal; the same command resumes.

The single-process signal + resume equality is in tests/test_recipe_flowmo_1a.py (it reuses that file's
uninterrupted run); here: an interrupted save, and SIGTERM sent to a real two-process ``accelerate launch``
(whose resumed run is also the check that two processes train as one with the same global batch)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.test_recipe_flowmo_1a import FAST, _run, _weights
from tests.training.test_checkpoints import _setup, _train_step
from tokenizer_zoo.training import checkpoints
from tokenizer_zoo.training.checkpoints import checkpoint_dirs, resume, save_checkpoint


def test_a_save_killed_midway_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    accelerator, *objects = _setup()
    _train_step(*objects)
    save_checkpoint(accelerator, tmp_path, step=1)
    expected = {name: value.clone() for name, value in objects[0].state_dict().items()}
    _train_step(*objects)
    written = []

    def killed_after_the_first_file(stem, tree):
        if written:
            raise KeyboardInterrupt  # what SIGKILL or an unhandled signal does in the middle of the save
        written.append(stem)
        return save_state(stem, tree)

    save_state = checkpoints.save_state
    monkeypatch.setattr(checkpoints, "save_state", killed_after_the_first_file)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(accelerator, tmp_path, step=2)
    monkeypatch.undo()
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step_00000001"]  # the partial save is not a checkpoint
    accelerator, *objects = _setup(seed=1)
    assert resume(accelerator, tmp_path) == 1
    assert all(torch.equal(value, expected[name]) for name, value in objects[0].state_dict().items())


def _launch(command, env, signal_at: Path | None = None) -> tuple[int, str]:
    """Run ``command``; with ``signal_at``, send SIGTERM to the launcher once that folder exists."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while signal_at is not None and not signal_at.is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if signal_at is not None:
        process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


@pytest.mark.slow
def test_sigterm_to_a_two_process_launch_checkpoints_and_the_same_command_resumes(tmp_path):
    """SIGTERM to ``accelerate launch --num_processes 2`` of flowmo_1a's ``main`` (tests/_ddp_worker.py) after
    the step-2 checkpoint: exit 143 with a newer checkpoint named; the same command resumes. Both ranks end
    with the same weights, and those of one process with the same global batch (data parallelism over gloo,
    batch 2 each against batch 4), to the DDP tolerance; so do the EMA weights of the pipelines saved."""
    out = tmp_path / "ddp"
    steps = ["max_steps=6", "checkpoint_every=2"]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
               str(Path(__file__).parents[1] / "_ddp_worker.py"), *FAST, *steps, "batch_size=2", f"output_dir={out}"]
    env = {**os.environ, "RESULT_DIR": str(tmp_path), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    code, output = _launch(command, env, signal_at=out / "checkpoints" / "step_00000002")
    assert code == 128 + signal.SIGTERM, output[-3000:]
    stopped_at = int(checkpoint_dirs(out)[-1].name.removeprefix("step_"))
    assert 2 <= stopped_at < 6 and not (out / "pipeline").exists() and not list(tmp_path.glob("rank*.pt"))
    assert f"stopped by SIGTERM after step {stopped_at}: checkpoint {checkpoint_dirs(out)[-1]}" in output
    code, output = _launch(command, env)
    assert code == 0, output[-3000:]
    assert f"resumed from {out / 'checkpoints'}/step_{stopped_at:08d} at step {stopped_at}" in output
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    single = _run(FAST + steps + ["batch_size=4", f"output_dir={tmp_path / 'single'}"])
    single_state = {k: v for k, v in single.state_dict().items() if not k.startswith("loss.")}
    assert rank0.keys() == rank1.keys() == single_state.keys()
    for name, value in single_state.items():
        torch.testing.assert_close(rank1[name], rank0[name], atol=0, rtol=0, msg=name)
        # all-reduce order changes gradients by ~1e-7; Adam can turn that into ~2e-5 on near-zero gradients
        # (a wrong batch split or noise slice moves weights by ~lr = 1e-3)
        torch.testing.assert_close(rank0[name], value, atol=5e-5, rtol=1e-4, msg=name)
    single, resumed = _weights(tmp_path / "single" / "pipeline"), _weights(out / "pipeline")
    assert single.keys() == resumed.keys() and single
    for name, value in single.items():
        torch.testing.assert_close(resumed[name], value, atol=5e-5, rtol=1e-4, msg=name)
