"""Resumable training state on top of ``accelerator.save_state`` / ``load_state``.

Accelerate does not restore its own checkpoint counter, so the optimisation step is written
beside the state (``training_state.json``) and read back on resume. A checkpoint is written to
a temporary folder and renamed when complete: an interrupted save never leaves a folder that
looks loadable, and the previous checkpoints stay intact.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

STATE_FILE = "training_state.json"
PREFIX = "step_"


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints under ``output_dir/checkpoints``, oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.glob(f"{PREFIX}*") if p.is_dir() and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name[len(PREFIX) :]))


def save_checkpoint(accelerator, output_dir: str | Path, step: int, keep: int = 2) -> Path:
    """Save the full training state at ``step``; keep the newest ``keep`` checkpoints."""
    root = Path(output_dir) / "checkpoints"
    final = root / f"{PREFIX}{step:08d}"
    partial = root / f".partial_{PREFIX}{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    if accelerator.is_main_process:
        (partial / STATE_FILE).write_text(json.dumps({"step": step}))
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        for old in checkpoint_dirs(output_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def resume(accelerator, output_dir: str | Path) -> int:
    """Load the newest checkpoint under ``output_dir`` if any; return the step to continue from."""
    found = checkpoint_dirs(output_dir)
    if not found:
        return 0
    accelerator.load_state(str(found[-1]))
    step = json.loads((found[-1] / STATE_FILE).read_text())["step"]
    accelerator.print(f"resumed from {found[-1]} at step {step}")
    return step
