"""Run by tests/test_recipe_flowmo_1a.py under `accelerate launch --multi_gpu --num_processes 2`:
trains with the recipe, then saves this rank's parameters to RESULT_DIR/rank{N}.pt."""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.recipes import load_recipe  # noqa: E402

model = load_recipe("flowmo_1a").main(sys.argv[1:])
rank = int(os.environ["RANK"])
state = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("loss.")}
torch.save(state, Path(os.environ["RESULT_DIR"]) / f"rank{rank}.pt")
