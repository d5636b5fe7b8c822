"""Decode time per image of a FlowMo pipeline at several numbers of sampling steps, in one run.

    python benchmarks/decode_speed.py [--model outputs/flowmo_1a_tiny/pipeline] [--steps 25 8 4 1] [--batch 16]

Without --model, a freshly initialised flowmo_tiny pipeline is timed (the time does not depend on
the weights). Guidance is on (scale 1.5 in [0.1453, 0.5050]), as in the default decode.
"""

from __future__ import annotations

import argparse
import time

import torch

from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.presets import build_tokenizer
from tokenizer_zoo.samplers import ShiftedEulerScheduler


def load(model: str | None) -> FlowMoPipeline:
    if model:
        return FlowMoPipeline.from_pretrained(model)
    parts = build_tokenizer("flowmo_tiny")
    return FlowMoPipeline(parts.encoder, parts.quantizer, parts.decoder, ShiftedEulerScheduler())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 8, 4, 1])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pipe = load(args.model)
    pipe.set_progress_bar_config(disable=True)
    images = torch.rand(args.batch, 3, pipe.image_size, pipe.image_size)
    tokens = pipe.encode(images)
    pipe.decode(tokens, num_inference_steps=1)  # warm-up
    rows = []
    for steps in args.steps:
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            pipe.decode(tokens, num_inference_steps=steps, generator=torch.Generator().manual_seed(0))
            best = min(best, time.perf_counter() - start)
        rows.append((steps, best / args.batch))
    base = rows[0][1]
    print(f"{type(pipe).__name__}, {pipe.image_size} px, batch {args.batch}, {torch.get_num_threads()} threads")
    print("| steps | ms per image | ratio to first row |")
    print("|---|---|---|")
    for steps, seconds in rows:
        print(f"| {steps} | {seconds * 1e3:.2f} | {seconds / base:.3f} |")


if __name__ == "__main__":
    main()
