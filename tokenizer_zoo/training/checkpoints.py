"""Resumable training state that loading cannot turn into code execution.

A checkpoint folder ``output_dir/checkpoints/step_XXXXXXXX`` holds safetensors and JSON only
(:mod:`tokenizer_zoo.training.safe_state`):

* ``training_state.{json,safetensors}``: the step, Accelerate's micro-step counter, and the state
  dicts of what the recipe handed to ``accelerator.prepare`` (models, optimisers, schedulers) and to
  ``accelerator.register_for_checkpointing`` (EMA, forced weight norm, early stopping, ...), plus
  the gradient scaler of fp16 runs;
* ``rng_state_P.{json,safetensors}``: the Python, numpy, torch and CUDA random states of process P,
  and where its part of a streamed dataset stood (``data``, :mod:`tokenizer_zoo.data.streaming`).

In a sharded (FSDP) run the tensors of ``training_state`` are in the folder ``sharded`` instead,
one safetensors file per process written through ``torch.distributed.checkpoint``
(:mod:`tokenizer_zoo.training.sharded_state`), and ``training_state.json`` says so; such a checkpoint
resumes with any number of processes, with or without FSDP.

Accelerate's own ``save_state``/``load_state`` are not used: they pickle the registered objects and
unpickle them with ``weights_only=False``. Resume reads only the files above; anything else in the
folder (say a planted ``custom_checkpoint_0.pkl``) is never opened. Folders written by the earlier,
pickle-based format are refused.

A checkpoint is written to a temporary folder and renamed when complete: an interrupted save never
leaves a folder that looks loadable, and the previous checkpoints stay intact. Weights holding NaN
or inf are never checkpointed (training stops with :class:`TrainingDivergedError`).
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from accelerate.utils import DistributedType

from tokenizer_zoo.training.fsdp import is_sharded, local
from tokenizer_zoo.training.safe_state import StateFileError, load_state, save_state
from tokenizer_zoo.training.sharded_state import load_sharded, load_tree, save_sharded, state_tree
from tokenizer_zoo.validation import check_finite_loss, check_finite_training_weights, first_nonfinite

STATE_FILE = "training_state.json"
STATE_STEM = "training_state"
RNG_STEM = "rng_state_{}"
SHARDED_DIR = "sharded"
PREFIX = "step_"
_STATE_KINDS = ("models", "optimizers", "schedulers", "objects")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed from (old format, damaged, or made by another setup)."""


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints under ``output_dir/checkpoints``, oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.glob(f"{PREFIX}*") if p.is_dir() and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name[len(PREFIX) :]))


def last_checkpoint(output_dir: str | Path) -> Path | None:
    found = checkpoint_dirs(output_dir)
    return found[-1] if found else None


def check_training_logs(accelerator, values: dict[str, float], step: int) -> None:
    """Stop with :class:`TrainingDivergedError` when a logged value (averaged over processes, so every
    process agrees) is NaN or inf; the message names the step and the last good checkpoint."""
    check_finite_loss(values, step, last_checkpoint(accelerator.project_dir))


def _registered(accelerator) -> dict[str, list]:
    """What Accelerate would checkpoint: prepared models, optimisers, schedulers and registered objects."""
    if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM):
        raise CheckpointError(f"the recipes' safe checkpoints support one process, DDP and FSDP, not "
                              f"{accelerator.distributed_type}: launch without --use_deepspeed "
                              "(accelerate launch --multi_gpu or --use_fsdp)")
    # the lists Accelerate's own save_state reads; Accelerate has no public accessor for them
    return {"models": [accelerator.unwrap_model(m) for m in accelerator._models], "optimizers": accelerator._optimizers,
            "schedulers": accelerator._schedulers, "objects": accelerator._custom_objects}


def _rng_state() -> dict[str, Any]:
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(accelerator, output_dir: str | Path, step: int, keep: int = 2, data_state: dict | None = None) -> Path:
    """Save the full training state at ``step``; keep the newest ``keep`` checkpoints. ``data_state``: this
    process's own data position (a streamed dataset's ``state_dict``), saved beside its random state.

    Raises :class:`TrainingDivergedError` (on every process alike) instead of saving weights that hold NaN or inf.
    """
    registered = _registered(accelerator)
    sharded = any(is_sharded(model) for model in registered["models"])
    _check_weights(accelerator, registered["models"], step, last_checkpoint(output_dir), sharded)
    root = Path(output_dir) / "checkpoints"
    final = root / f"{PREFIX}{step:08d}"
    partial = root / f".partial_{PREFIX}{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    process_state = _rng_state() if data_state is None else {**_rng_state(), "data": data_state}
    save_state(partial / RNG_STEM.format(accelerator.process_index), process_state)
    tensors = save_sharded(partial / SHARDED_DIR, state_tree(registered)) if sharded else None
    if accelerator.is_main_process:
        state = ({"sharded": tensors} if sharded else
                 {kind: [item.state_dict() for item in items] for kind, items in registered.items()})
        state.update(step=step, accelerator_step=accelerator.step,
                     scaler=accelerator.scaler.state_dict() if accelerator.scaler is not None else None)
        save_state(partial / STATE_STEM, state)
    accelerator.wait_for_everyone()  # every process's RNG file is in place before the rename
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        for old in checkpoint_dirs(output_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def _check_weights(accelerator, models: list, step: int, last: Path | None, sharded: bool) -> None:
    """:func:`check_finite_training_weights` of the models; sharded, each process checks its shards and
    all of them stop when one finds NaN or inf."""
    named = [(name, local(tensor)) for model in models for name, tensor in model.state_dict().items()]
    if sharded:
        bad = first_nonfinite(named)
        found = accelerator.gather(torch.tensor([bad is not None], device=accelerator.device))
        named = [(bad or "(a shard of another process)", torch.tensor(math.nan))] if bool(found.any()) else []
    check_finite_training_weights(named, step, last)


def _read(folder: Path) -> dict[str, Any]:
    try:
        header = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {folder / STATE_FILE} ({error}); delete {folder} to resume from the "
                              "checkpoint before it") from None
    if not isinstance(header, dict) or "format" not in header:
        raise CheckpointError(f"{folder} was written by an earlier tokenizer-zoo whose checkpoints hold pickles, "
                              "which are not loaded (unpickling can run code); delete it to start over")
    try:
        return load_state(folder / STATE_STEM)
    except StateFileError as error:
        raise CheckpointError(f"cannot resume from {folder}: {error}; delete {folder} to resume from the "
                              "checkpoint before it") from None


def resume(accelerator, output_dir: str | Path, restore_data: Callable[[dict], None] | None = None) -> int:
    """Load the newest checkpoint under ``output_dir`` if any; return the step to continue from.
    ``restore_data`` receives this process's ``data_state`` of :func:`save_checkpoint`."""
    found = checkpoint_dirs(output_dir)
    if not found:
        return 0
    folder = found[-1]
    state, registered = _read(folder), _registered(accelerator)
    saved = state.get("sharded", state)
    counts = {kind: (len(saved[kind]), len(registered[kind])) for kind in _STATE_KINDS}
    if any(saved != here for saved, here in counts.values()):
        raise CheckpointError(f"{folder} holds {', '.join(f'{s} {k}' for k, (s, _) in counts.items())} but this run "
                              f"has {', '.join(f'{h} {k}' for k, (_, h) in counts.items())}: it was written by "
                              "another recipe or configuration; use a new output_dir")
    if "sharded" not in state and any(is_sharded(model) for model in registered["models"]):
        raise CheckpointError(f"{folder} was written without FSDP and does not resume under FSDP: resume it "
                              "without --use_fsdp (fsdp=false), or use a new output_dir")
    if "sharded" in state:
        load_tree(registered, load_sharded(folder / SHARDED_DIR, saved, state_tree(registered)))
    else:
        for kind in _STATE_KINDS:
            for item, item_state in zip(registered[kind], state[kind]):
                item.load_state_dict(item_state)
    if accelerator.scaler is not None and state["scaler"] is not None:
        accelerator.scaler.load_state_dict(state["scaler"])
    accelerator.step = state["accelerator_step"]
    rng = folder / RNG_STEM.format(accelerator.process_index)
    if rng.with_name(rng.name + ".json").is_file():
        process_state = load_state(rng)
        _set_rng_state(process_state)
        if restore_data is not None and "data" in process_state:
            restore_data(process_state["data"])
        elif restore_data is not None:
            accelerator.print(f"{folder} holds no stream position for process {accelerator.process_index}: its "
                              "part of the streamed dataset starts from the beginning")
    else:
        accelerator.print(f"{folder} has no random state for process {accelerator.process_index} "
                          "(written with fewer processes?): random draws will differ from an uninterrupted run")
    known = {SHARDED_DIR} | {f"{stem}.{ext}" for stem in (STATE_STEM, rng.name) for ext in ("json", "safetensors")}
    ignored = sorted(p.name for p in folder.iterdir() if p.name not in known and not p.name.startswith(RNG_STEM[:-2]))
    if ignored:
        accelerator.print(f"ignoring {', '.join(ignored)} in {folder}: checkpoints are read from safetensors and "
                          "JSON only")
    accelerator.print(f"resumed from {folder} at step {state['step']}")
    return state["step"]
