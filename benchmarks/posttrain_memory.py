"""Stage-1B step: peak memory and time against the chain length n, with and without checkpointing.

    python benchmarks/posttrain_memory.py [--preset flowmo_tiny] [--batch 64] [--steps 3] [--chain 1 2 4 8]

One optimiser step of :class:`~tokenizer_zoo.training.stage1b.Stage1BModel` (flow loss + an
n-step Euler chain back-propagated end to end) per setting; the table gives each setting's peak
memory and time per step as ratios to n = 1 with the same checkpointing, measured in this run.
The perceptual network is replaced by a pixel MSE: its activations do not depend on n, and
leaving them out isolates (and makes stricter) what the chain adds. Target: with checkpointing,
peak memory at n = 8 is at most 2x that at n = 1.

How memory is measured (peak above the resting state of a process that holds model, optimiser
state and batch):
- CUDA: ``torch.cuda.max_memory_allocated()`` minus the allocated bytes before the step.
- CPU: each setting runs in a fresh subprocess; peak resident set size (``ru_maxrss``) after the
  step minus the current RSS before it, with glibc told to serve allocations above 64 KiB by
  mmap and to return freed memory at once (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``),
  so RSS follows live tensor memory instead of the allocator's cache. A one-image warm-up step
  (same n and checkpointing) runs first so that lazy imports and one-off buffers are in the
  resting state.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
from torch import nn

from tokenizer_zoo.losses import FlowMatchingLoss
from tokenizer_zoo.presets import build_tokenizer
from tokenizer_zoo.training.stage1b import SampleLoss, Stage1BModel

MIB = 2**20


class PixelDistance(nn.Module):
    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (prediction - target).square().flatten(1).mean(dim=1)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(preset: str, batch: int, chain: int, checkpointing: bool, steps: int, device: str) -> dict:
    """Peak memory (bytes above rest) of the first step and mean seconds of the next ``steps``."""
    import torch._dynamo  # noqa: F401  (imported lazily by checkpoint(); keep it out of the measurement)

    torch.manual_seed(0)
    parts = build_tokenizer(preset)
    model = Stage1BModel(parts.encoder, parts.quantizer, parts.decoder, FlowMatchingLoss(perceptual_weight=0),
                         SampleLoss(PixelDistance(), num_steps=chain, checkpointing=checkpointing)).to(device)
    optimizer = torch.optim.Adam(parts.decoder.parameters(), lr=5e-5)
    size = parts.preset.image_size
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1

    def step(x, seed):
        loss = model(x, generator=torch.Generator(device).manual_seed(seed)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(images[:1], 0)  # warm-up: creates Adam state, lazy imports
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        rest = torch.cuda.memory_allocated()
        step(images, 1)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - rest
    else:
        rest = _rss_bytes()
        step(images, 1)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rest
    start = time.perf_counter()
    for seed in range(steps):
        step(images, 2 + seed)
    if device == "cuda":
        torch.cuda.synchronize()
    return {"chain": chain, "checkpointing": checkpointing, "peak_bytes": peak,
            "seconds": (time.perf_counter() - start) / steps}


def measure_in_subprocess(args: argparse.Namespace, chain: int, checkpointing: bool) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    command = [sys.executable, __file__, "--one", json.dumps([args.preset, args.batch, chain, checkpointing, args.steps])]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measurement n={chain} checkpointing={checkpointing} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="flowmo_tiny")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting (after the measured one)")
    parser.add_argument("--chain", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.one:
        preset, batch, chain, checkpointing, steps = json.loads(args.one)
        print(json.dumps(measure(preset, batch, chain, checkpointing, steps, "cpu")))
        return
    if device == "cpu":
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    rows = []
    for checkpointing in (True, False):
        for chain in args.chain:
            if device == "cuda":
                rows.append(measure(args.preset, args.batch, chain, checkpointing, args.steps, device))
            else:
                rows.append(measure_in_subprocess(args, chain, checkpointing))
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"stage-1B step, {args.preset}, batch {args.batch}, {where}; peak = memory above rest "
          f"({'max_memory_allocated' if device == 'cuda' else 'peak RSS, fresh process per row'})")
    print("| checkpointing | n | peak MiB | peak / n=1 | s/step | time / n=1 |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        base = next(r for r in rows if r["checkpointing"] == row["checkpointing"] and r["chain"] == args.chain[0])
        print(f"| {'yes' if row['checkpointing'] else 'no'} | {row['chain']} | {row['peak_bytes'] / MIB:.1f} | "
              f"{row['peak_bytes'] / base['peak_bytes']:.2f} | {row['seconds']:.3f} | {row['seconds'] / base['seconds']:.2f} |")
    longest = max(args.chain)
    with_ckpt = {r["chain"]: r["peak_bytes"] for r in rows if r["checkpointing"]}
    ratio = with_ckpt[longest] / with_ckpt[args.chain[0]]
    print(f"target: with checkpointing, peak(n={longest}) <= 2 x peak(n={args.chain[0]}): "
          f"{ratio:.2f}x -> {'met' if ratio <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
