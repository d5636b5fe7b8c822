"""Train any tokenizer preset of the zoo (FlowMo or a baseline) with the loop of recipes/flowmo_1a.py.

    accelerate launch recipes/train_tokenizer.py --preset titok_tiny
    accelerate launch recipes/train_tokenizer.py --preset cnn_lfq_tiny max_steps=3000 lr=1e-3

Diffusion decoders train with the stage-1A flow-matching loss, one-pass decoders with MSE plus the
perceptual loss (``perceptual_weight``, default 0.1 LPIPS-VGG) plus the quantizer's losses.
The output folder defaults to ``outputs/PRESET``; other settings are ``key=value`` as in 1A.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowmo_1a import main as train  # noqa: E402

from tokenizer_zoo.errors import run_main  # noqa: E402


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", required=True, help="a name of tokenizer_zoo.presets.PRESETS")
    parser.add_argument("--config", default=None, help="YAML settings (default recipes/configs/tiny.yaml)")
    args, overrides = parser.parse_known_args(argv)
    config = ["--config", args.config] if args.config else []
    # later key=value settings win, so an explicit output_dir= replaces the default
    return train([*config, f"preset={args.preset}", f"output_dir=outputs/{args.preset}", *overrides])


if __name__ == "__main__":
    sys.exit(run_main(main, "train_tokenizer.py"))
