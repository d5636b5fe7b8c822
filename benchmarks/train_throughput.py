"""Stage-1A training step of FlowMo presets, eager and compiled side by side, against the matmul peak.

    python benchmarks/train_throughput.py [--presets flowmo_tiny flowmo_small] [--repeats 5] [--bf16]

One step is what the recipe does per batch: encoder, quantizer, decoder, flow loss (LPIPS excluded: it
is not part of the tokenizer), backward, Adam. "compiled" wraps the model in ``torch.compile`` (Inductor),
as ``accelerate launch --dynamo_backend inductor`` does; the optimizer stays eager. Both variants share
the weights and are timed in interleaved rounds (best of ``--repeats``). The model FLOPs of a step are
counted by torch's FlopCounterMode and divided by the time and by the float32 ``torch.mm`` peak measured
in the same run. ``--bf16`` adds eager and compiled steps under bf16 autocast (Accelerate's ``mixed_precision=bf16``), each
against its float32 twin, on CPUs with native bf16 (avx512_bf16, amx_bf16); elsewhere their cells say
"not measured: no native bf16".
"""

from __future__ import annotations

import argparse
import time

import torch
from speed_common import bf16_cells, header, matmul_peak, native_bf16_flags, side_by_side
from torch.utils.flop_counter import FlopCounterMode

from tokenizer_zoo.losses import FlowMatchingLoss
from tokenizer_zoo.presets import build_tokenizer
from tokenizer_zoo.training.optim import adam
from tokenizer_zoo.training.stage1a import Stage1AModel

BATCH = {"flowmo_tiny": 16, "flowmo_small": 1, "flowmo_lo": 1, "flowmo_hi": 1}


class TrainStep:
    """One optimiser step of ``model`` on fixed images, with fresh flow noise each call."""

    def __init__(self, model, loss: FlowMatchingLoss, optimizer, images: torch.Tensor, autocast: bool = False):
        self.model, self.loss, self.optimizer, self.images, self.autocast = model, loss, optimizer, images, autocast
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        noise = self.loss.draw(self.images, torch.Generator().manual_seed(self.calls))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            loss = self.model(self.images, noise).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def measure(preset: str, repeats: int, bf16: bool) -> dict[str, float]:
    parts = build_tokenizer(preset)
    loss = FlowMatchingLoss(perceptual_weight=0)
    model = Stage1AModel(parts.encoder, parts.quantizer, parts.decoder, loss)
    optimizer = adam(model.parameters(), lr=1e-4, betas=(0.9, 0.95))  # the recipes' (fused) Adam
    size = parts.preset.image_size
    images = torch.rand(BATCH.get(preset, 1), 3, size, size) * 2 - 1
    steps = {"eager": TrainStep(model, loss, optimizer, images),
             "compiled": TrainStep(torch.compile(model), loss, optimizer, images)}
    if bf16:
        steps["eager bf16"] = TrainStep(model, loss, optimizer, images, autocast=True)
        steps["compiled bf16"] = TrainStep(steps["compiled"].model, loss, optimizer, images, autocast=True)
    counter = FlopCounterMode(display=False)
    with counter:
        steps["eager"]()  # also the warm-up
    start = time.perf_counter()
    steps["compiled"]()  # compiles forward and backward
    compile_seconds = time.perf_counter() - start
    for name, step in steps.items():
        step()  # warm-up (a second compiled call may still specialise)
    times = side_by_side(steps, repeats)
    return {"batch": images.shape[0], "flops": counter.get_total_flops(), "compile_s": compile_seconds, **times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["flowmo_tiny"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="also time an eager step under bf16 autocast")
    args = parser.parse_args()
    bf16 = args.bf16 and bool(native_bf16_flags())
    peak = matmul_peak()
    print(header(peak))
    extra = (" | eager bf16 s/step | eager bf16 / fp32 speed | compiled bf16 s/step | compiled bf16 / fp32 speed"
             if args.bf16 else "")
    print("| preset | batch | GFLOP/step | eager s/step | compiled s/step | compiled / eager speed | "
          f"eager % of peak | compiled % of peak | compile s{extra} |")
    print("|---" * (9 + 4 * args.bf16) + "|")
    for preset in args.presets:
        r = measure(preset, args.repeats, bf16)
        flops = r["flops"]
        row = (f"| {preset} | {r['batch']} | {flops / 1e9:.1f} | {r['eager']:.4f} | {r['compiled']:.4f} | "
               f"{r['eager'] / r['compiled']:.2f}x | {100 * flops / r['eager'] / peak:.0f}% | "
               f"{100 * flops / r['compiled'] / peak:.0f}% | {r['compile_s']:.0f}")
        print(row + bf16_cells(args.bf16, r["eager"], r.get("eager bf16"))
              + bf16_cells(args.bf16, r["compiled"], r.get("compiled bf16")) + " |")


if __name__ == "__main__":
    main()
