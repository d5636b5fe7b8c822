"""Run by tests/training/test_preemption.py under `accelerate launch --multi_gpu --num_processes 2`: runs
recipes/flowmo_1a.py's ``main`` as that script does (exit status 128 + signal when a signal stopped training),
then, when training finished, saves this rank's parameters to RESULT_DIR/rank{N}.pt."""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.recipes import load_recipe  # noqa: E402
from tokenizer_zoo.errors import run_main  # noqa: E402

trained = []
code = run_main(lambda argv: trained.append(load_recipe("flowmo_1a").main(argv)), "flowmo_1a.py")
if code == 0:
    state = {k: v.detach().clone() for k, v in trained[0].state_dict().items() if not k.startswith("loss.")}
    torch.save(state, Path(os.environ["RESULT_DIR"]) / f"rank{os.environ['RANK']}.pt")
sys.exit(code)
