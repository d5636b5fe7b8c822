"""A run whose weights turn NaN stops with the step number and keeps its last good checkpoint."""

import pytest
import torch

from tests.recipes import run_recipe
from tokenizer_zoo.training.checkpoints import checkpoint_dirs
from tokenizer_zoo.training.safe_state import load_state
from tokenizer_zoo.validation import TrainingDivergedError

FAST = ["perceptual_weight=0", "batch_size=4", "eval_images=4", "eval_steps=2", "grid_every=1000", "ema_decay=0.9",
        "max_steps=6", "checkpoint_every=2"]


def _poison_after_step(monkeypatch, step: int) -> None:
    """Adam's ``step``-th update leaves a NaN in the decoder's last parameter, as a diverging run would."""
    original, calls = torch.optim.Adam.step, []

    def step_then_poison(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == step:
            with torch.no_grad():
                self.param_groups[-1]["params"][-1].view(-1)[0] = float("nan")
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_poison)


def _kept_checkpoint_is_step_2_and_finite(output_dir):
    (kept,) = checkpoint_dirs(output_dir)
    assert kept.name == "step_00000002"
    state = load_state(kept / "training_state")
    assert state["step"] == 2
    assert all(torch.isfinite(t).all() for t in state["models"][0].values() if t.is_floating_point())


@pytest.mark.parametrize("log_every, caught_by", [(1, r"loss is nan at step 4"),
                                                  (100, r"weight '.*' holds NaN or inf at step 4, so it was not checkpointed")])
def test_divergence_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, log_every, caught_by):
    _poison_after_step(monkeypatch, 3)
    with pytest.raises(TrainingDivergedError, match=caught_by + r".*step_00000002 is kept"):
        run_recipe("flowmo_1a", FAST + [f"output_dir={tmp_path}", f"log_every={log_every}"])
    _kept_checkpoint_is_step_2_and_finite(tmp_path)
    assert not (tmp_path / "pipeline").exists()
