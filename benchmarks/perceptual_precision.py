"""The main job's training step with its LPIPS-VGG loss in float32 and in bf16 (``perceptual_precision``),
side by side in one process: the perceptual network alone and the whole stage-1A step.

    python benchmarks/perceptual_precision.py [--repeats 5] [--threads 2]

The step is the tiny recipe's (recipes/configs/tiny.yaml: its preset, batch 16, the x0 pass, LPIPS weight
0.1): forward, backward and Adam; "LPIPS alone" is the perceptual network's forward and backward on the
step's 32 predictions (the sample at t and the one-step prediction at t = 1) against their targets. Both
variants share the weights and are timed in interleaved rounds (best of ``--repeats``). On a CPU without
native bf16 the bf16 cells say so instead (autocast would be emulated there, and "auto" keeps float32).
Writes benchmarks/results/perceptual_precision.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from speed_common import NO_NATIVE_BF16, cpu_bf16_line, native_bf16_flags, side_by_side

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))
from config import load_config  # noqa: E402
from flowmo_1a import Stage1AConfig, build_model, draw_flow_noise  # noqa: E402

from tokenizer_zoo.losses.perceptual import perceptual_scores  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "perceptual_precision.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(Stage1AConfig, ["perceptual_precision=float32"], "tiny.yaml", "")
    model, _ = build_model(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=tuple(cfg.adam_betas))
    images = torch.rand(cfg.batch_size, 3, 32, 32) * 2 - 1
    predictions = (images.repeat(2, 1, 1, 1) + 0.3 * torch.randn(2 * cfg.batch_size, 3, 32, 32)).requires_grad_()
    calls = {"step": 0}

    def step(bf16: bool) -> None:
        calls["step"] += 1
        model.loss.perceptual_bf16 = bf16
        loss = model(images, draw_flow_noise(images, 0, 1, model.loss, 0, calls["step"])).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def lpips(bf16: bool) -> None:
        perceptual_scores(model.loss.perceptual, predictions, images.repeat(2, 1, 1, 1), bf16).sum().backward()

    native = bool(native_bf16_flags())
    variants = {(kind, bf16): (lambda f=fn, b=bf16: f(b)) for kind, fn in (("LPIPS alone", lpips), ("step", step))
                for bf16 in ((False, True) if native else (False,))}
    for fn in variants.values():
        fn()  # warm-up
    times = side_by_side(variants, args.repeats)
    lines = ["# The main job's step: LPIPS-VGG in float32 and bf16", "",
             f"torch {torch.__version__}, {args.threads} threads, best of {args.repeats} interleaved rounds. "
             f"{cpu_bf16_line()}", "",
             "| measure | float32 s | bf16 s | bf16 / float32 speed |", "|---|---|---|---|"]
    for kind in ("LPIPS alone", "step"):
        fp32 = times[kind, False]
        bf16 = times.get((kind, True))
        cells = f"{bf16:.4f} | {fp32 / bf16:.2f}x" if bf16 else f"{NO_NATIVE_BF16} | {NO_NATIVE_BF16}"
        lines.append(f"| {kind} (batch {cfg.batch_size}, 32 px) | {fp32:.4f} | {cells} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
