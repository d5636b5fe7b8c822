"""Stage-1A training throughput of FlowMo presets on this machine, against its measured matmul peak.

    python benchmarks/train_throughput.py [--presets flowmo_tiny flowmo_small] [--steps 3]

For each preset: images per second of a full optimiser step (encoder, quantizer, decoder, flow
loss; LPIPS excluded because it is not part of the tokenizer), the model FLOPs of one step counted
by torch's FlopCounterMode (forward + backward), and the achieved fraction of the float32
``torch.matmul`` peak measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from tokenizer_zoo.losses import FlowMatchingLoss
from tokenizer_zoo.presets import build_tokenizer
from tokenizer_zoo.training.stage1a import Stage1AModel

BATCH = {"flowmo_tiny": 16, "flowmo_small": 1, "flowmo_lo": 1, "flowmo_hi": 1}


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best observed float32 matmul FLOP/s for n x n matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def train_step(model, optimizer, images, step):
    loss = model(images, generator=torch.Generator().manual_seed(step)).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def measure(preset: str, steps: int) -> dict[str, float]:
    parts = build_tokenizer(preset)
    model = Stage1AModel(parts.encoder, parts.quantizer, parts.decoder, FlowMatchingLoss(perceptual_weight=0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
    size = parts.preset.image_size
    images = torch.rand(BATCH.get(preset, 1), 3, size, size) * 2 - 1
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(model, optimizer, images, 0)  # also the warm-up
    times = []
    for step in tqdm(range(1, steps + 1), desc=preset, leave=False):
        start = time.perf_counter()
        train_step(model, optimizer, images, step)
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    params = sum(p.numel() for p in model.parameters())
    return {"batch": images.shape[0], "params_M": params / 1e6, "s_per_step": seconds,
            "images_per_s": images.shape[0] / seconds, "flops_per_step": counter.get_total_flops()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["flowmo_tiny", "flowmo_small"])
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    peak = matmul_peak()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; float32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print("| preset | params (M) | batch | s/step | images/s | model GFLOP/step | achieved GFLOP/s | fraction of peak |")
    print("|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        r = measure(preset, args.steps)
        achieved = r["flops_per_step"] / r["s_per_step"]
        print(f"| {preset} | {r['params_M']:.2f} | {r['batch']} | {r['s_per_step']:.3f} | {r['images_per_s']:.2f} | "
              f"{r['flops_per_step'] / 1e9:.1f} | {achieved / 1e9:.1f} | {achieved / peak:.3f} |")


if __name__ == "__main__":
    main()
