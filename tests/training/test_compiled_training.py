"""Training compiled through Accelerate's own dynamo setting, and checkpoints that move between
compiled and eager runs (no ``_orig_mod.`` names in anything saved).

The recipe is run with ``ACCELERATE_DYNAMO_BACKEND=EAGER`` (what ``accelerate launch --dynamo_backend
eager`` sets): Accelerate wraps the model in the same ``torch.compile`` module as for ``inductor``, and
the key names are the same, while the test stays fast because no C++ is generated.
"""

from pathlib import Path

import torch
from safetensors import safe_open

from tests.recipes import run_recipe
from tests.test_recipe_flowmo_1a import FAST, _weights

STEPS = ["checkpoint_every=1", "keep_checkpoints=5"]


def _run(monkeypatch, output_dir: Path, max_steps: int, backend: str):
    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", backend)
    return run_recipe("flowmo_1a", FAST + STEPS + [f"output_dir={output_dir}", f"max_steps={max_steps}"])


def _checkpoint_keys(output_dir: Path, step: int) -> set[str]:
    """The model's parameter names in a checkpoint (its tensors are stored under ``.models.0.<name>``)."""
    prefix = ".models.0."
    with safe_open(output_dir / "checkpoints" / f"step_{step:08d}" / "training_state.safetensors", "pt") as file:
        return {key[len(prefix):] for key in file.keys() if key.startswith(prefix)}


def test_compiled_and_eager_runs_resume_each_other(tmp_path, monkeypatch):
    mixed, straight = tmp_path / "mixed", tmp_path / "straight"
    compiled = _run(monkeypatch, mixed, 2, "EAGER")  # steps 1-2 compiled
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)  # Accelerate did compile it
    plain_keys = set(compiled._orig_mod.state_dict())
    assert _checkpoint_keys(mixed, 2) == plain_keys and not any("_orig_mod" in k for k in plain_keys)
    eager = _run(monkeypatch, mixed, 3, "NO")  # step 3 eager, resumed from the compiled checkpoint
    assert not isinstance(eager, torch._dynamo.eval_frame.OptimizedModule)
    _run(monkeypatch, mixed, 4, "EAGER")  # step 4 compiled again, resumed from the eager checkpoint
    assert _checkpoint_keys(mixed, 3) == _checkpoint_keys(mixed, 4) == plain_keys
    # the same four steps without interruption or compilation give the same weights
    _run(monkeypatch, straight, 4, "NO")
    got, want = _weights(mixed / "pipeline"), _weights(straight / "pipeline")
    assert got.keys() == want.keys() and not any("_orig_mod" in k for k in got)
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-5, msg=name)
