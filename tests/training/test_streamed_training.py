"""The Trainer on a streamed image folder: a signal + resume continues the stream exactly where it stopped."""

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training.signals import send_signals_during_training
from tests.training.streamed import BATCH, grey_folder, levels, train_streamed
from tokenizer_zoo.data.streaming import load_streamed_images
from tokenizer_zoo.training.checkpoints import checkpoint_dirs
from tokenizer_zoo.training.preemption import TrainingPreempted
from tokenizer_zoo.training.safe_state import load_state

COUNT = 7  # an odd count: the 3rd step of batch 2 spans the epoch boundary


def test_signal_and_resume_continue_the_stream_exactly(tmp_path, monkeypatch):
    folder = grey_folder(tmp_path / "grey")
    straight_seen, seen = [], []
    straight = train_streamed(folder, tmp_path / "straight", 6, seen=straight_seen)
    with monkeypatch.context() as patch, pytest.raises(TrainingPreempted):
        send_signals_during_training(patch, at_step=2, signum=signal.SIGTERM)
        train_streamed(folder, tmp_path / "resumed", 6, seen=seen)
    saved = checkpoint_dirs(tmp_path / "resumed")[-1]
    assert saved.name == "step_00000002" and load_state(saved / "rng_state_0")["data"]["epoch"] == 0
    resumed = train_streamed(folder, tmp_path / "resumed", 6, seen=seen)
    assert seen == straight_seen  # the resumed run read on from image 5 of the first epoch
    flat = [level for batch in straight_seen for level in batch]
    assert sorted(flat[:COUNT]) == list(range(COUNT)) and len(flat) == 12  # one epoch, then on into the next
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, atol=0, rtol=0)


@pytest.mark.slow
def test_two_processes_stream_disjoint_parts_and_resume_each_where_it_stopped(tmp_path):
    """2 gloo processes, 3 steps, then the same command to 5 steps: each rank's batches are its part of the
    stream (split_dataset_by_node), read on across the resume as one uninterrupted read of that part."""
    folder = grey_folder(tmp_path / "grey", count=9)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    for steps in (3, 5):
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
                   "0", str(Path(__file__).parents[1] / "_stream_worker.py"), str(folder), str(out), str(steps)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stdout
    for rank in (0, 1):
        first, second = (json.loads((out / f"seen_rank{rank}_steps{steps}.json").read_text()) for steps in (3, 5))
        part = load_streamed_images(f"imagefolder:{folder}", "train", 16, seed=3, shuffle_buffer=1, rank=rank,
                                    world_size=2)
        expected = levels(torch.stack([item["pixel_values"] for item in itertools.islice(part, 5 * BATCH)]))
        assert [level for batch in first + second for level in batch] == expected
    first_epoch = [json.loads((out / f"seen_rank{rank}_steps3.json").read_text())[:2] for rank in (0, 1)]
    assert not {v for batch in first_epoch[0] for v in batch} & {v for batch in first_epoch[1] for v in batch}
