"""FlowMo decoding, eager and compiled side by side: one decoder call (NFE) and whole decodes.

    python benchmarks/decode_speed.py [--model outputs/flowmo_1a_tiny/pipeline] [--steps 25 8] [--batch 16] [--bf16]

Without --model, a freshly initialised flowmo_tiny pipeline is timed (the time does not depend on the
weights). "compiled" is the diffusers idiom ``pipe.decoder = torch.compile(pipe.decoder)`` (Inductor);
the scheduler step is not compiled (one elementwise update per step). Decodes use guidance 1.5 inside
the default interval, one batched call per guided step. Eager and compiled runs are interleaved (best of
``--repeats``); FLOPs are counted by torch's FlopCounterMode and compared with the float32 ``torch.mm``
peak measured in the same run. ``--bf16`` adds the eager and the compiled pipeline under bf16 autocast, each
against its float32 twin, on CPUs with native bf16 (avx512_bf16, amx_bf16); elsewhere their cells say
"not measured: no native bf16".
"""

from __future__ import annotations

import argparse
import time

import torch
from speed_common import bf16_autocast, bf16_cells, header, matmul_peak, native_bf16_flags, side_by_side
from torch.utils.flop_counter import FlopCounterMode

from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.presets import build_tokenizer
from tokenizer_zoo.samplers import ShiftedEulerScheduler


def load(model: str | None) -> FlowMoPipeline:
    if model:
        return FlowMoPipeline.from_pretrained(model)
    parts = build_tokenizer("flowmo_tiny")
    return FlowMoPipeline(parts.encoder, parts.quantizer, parts.decoder, ShiftedEulerScheduler())


def flops_of(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 8])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="also time both pipelines under bf16 autocast")
    args = parser.parse_args()
    bf16 = args.bf16 and bool(native_bf16_flags())
    peak = matmul_peak()
    eager = load(args.model)
    eager.set_progress_bar_config(disable=True)
    compiled = FlowMoPipeline(**eager.components)
    compiled.decoder = torch.compile(compiled.decoder)
    compiled.set_progress_bar_config(disable=True)
    size = eager.image_size
    codes = eager.encode(torch.rand(args.batch, 3, size, size)).codes  # images in [0, 1]
    x, t = torch.randn(args.batch, 3, size, size), torch.full((args.batch,), 0.7)

    variants = {"eager": (eager, False), "compiled": (compiled, False),
                **({"eager bf16": (eager, True), "compiled bf16": (compiled, True)} if bf16 else {})}

    rows = []  # (label, {variant: fn}, flops)
    nfe = {name: bf16_autocast(lambda p=pipe: p.decoder(codes, x, t), on) for name, (pipe, on) in variants.items()}
    rows.append((f"one decoder call (NFE), batch {args.batch}", nfe, flops_of(nfe["eager"])))
    for steps in args.steps:
        decode = {name: bf16_autocast(lambda p=pipe, n=steps: p.decode(codes, num_inference_steps=n, output_type="pt",
                                                                    generator=torch.Generator().manual_seed(0)), on)
                  for name, (pipe, on) in variants.items()}
        rows.append((f"{steps}-step decode, guidance 1.5", decode, flops_of(decode["eager"])))

    with torch.no_grad():
        start = time.perf_counter()
        rows[1][1]["compiled"]()  # compiles the plain and the guided (doubled batch) graphs
        compile_seconds = time.perf_counter() - start
        if "compiled bf16" in rows[1][1]:
            rows[1][1]["compiled bf16"]()  # its own graphs, compiled before the timed rounds
        results = [(label, side_by_side(fns, args.repeats), flops) for label, fns, flops in rows]

    print(header(peak))
    print(f"{type(eager).__name__}, {size} px, batch {args.batch}; compiling took {compile_seconds:.0f} s")
    extra = (" | eager bf16 ms / image | eager bf16 / fp32 speed | compiled bf16 ms / image | compiled bf16 / fp32 speed"
             if args.bf16 else "")
    print("| measure | eager ms / image | compiled ms / image | compiled / eager speed | eager % of peak | "
          f"compiled % of peak{extra} |")
    print("|---" * (6 + 4 * args.bf16) + "|")
    for label, times, flops in results:
        e, c = times["eager"], times["compiled"]
        row = (f"| {label} | {1e3 * e / args.batch:.2f} | {1e3 * c / args.batch:.2f} | {e / c:.2f}x | "
               f"{100 * flops / e / peak:.0f}% | {100 * flops / c / peak:.0f}%")
        print(row + bf16_cells(args.bf16, e, times.get("eager bf16"), 1e3 / args.batch, 2)
              + bf16_cells(args.bf16, c, times.get("compiled bf16"), 1e3 / args.batch, 2) + " |")


if __name__ == "__main__":
    main()
