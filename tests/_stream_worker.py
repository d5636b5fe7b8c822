"""Run by tests/training/test_streamed_training.py under `accelerate launch --multi_gpu --num_processes 2`:
trains tests.training.streamed.GreyRegression on a streamed folder (argv: folder, output_dir, max_steps) and
writes the levels of this rank's batches to output_dir/seen_rank{N}_steps{max_steps}.json."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.training.streamed import train_streamed  # noqa: E402

folder, output_dir, max_steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
seen: list = []
train_streamed(folder, output_dir, max_steps, seen=seen)
(output_dir / f"seen_rank{os.environ['RANK']}_steps{max_steps}.json").write_text(json.dumps(seen))
