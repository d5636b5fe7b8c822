"""Train and evaluate FlowMo-tiny and the tiny baselines at equal BPP and equal optimiser steps.

    python benchmarks/compare_tiny.py                 # about 30 minutes on 2 CPU cores
    python benchmarks/compare_tiny.py --steps 300 --no-1b --presets flowmo_tiny titok_tiny   # a quick look

Every tokenizer is trained by the same loop (recipes/train_tokenizer.py, batch 16, the same steps)
on the embedded photographs, FlowMo-tiny is post-trained by stage 1B (recipes/flowmo_1b.py) unless
--no-1b, and every pipeline is evaluated by recipes/evaluate.py on the 64 embedded held-out images.
Writes benchmarks/results/compare_tiny.md. At ImageNet scale, run the same three recipes with
``--config recipes/configs/lo.yaml`` style configs and ``--dataset imagenet-1k`` (see README).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tokenizer_zoo.pipelines import TOKENIZER_PIPELINES, load_pipeline
from tokenizer_zoo.pipelines.codecs import CODEC_PREFIX, CODECS, codec_pipeline

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "compare_tiny.md"


def run(*command: str) -> None:
    done = subprocess.run([sys.executable, *command], cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}")


def codec_time_and_params(folder: Path | str, batch: int = 16, repeats: int = 2) -> tuple[float, int]:
    """Encode plus decode seconds per image (25 steps for diffusion decoders, best of ``repeats``) and parameters."""
    is_codec = str(folder).startswith(CODEC_PREFIX)
    pipe = codec_pipeline(str(folder)) if is_codec else load_pipeline(folder, kinds=TOKENIZER_PIPELINES)
    pipe.set_progress_bar_config(disable=True)
    images = torch.rand(batch, 3, pipe.image_size, pipe.image_size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        pipe(images, num_inference_steps=25, generator=torch.Generator().manual_seed(0), output_type="pt")
        best = min(best, time.perf_counter() - start)
    params = 0 if is_codec else sum(p.numel() for m in (pipe.encoder, pipe.quantizer, pipe.decoder)
                                    for p in m.parameters())
    return best / batch, params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["flowmo_tiny", "titok_tiny", "cnn_lfq_tiny"])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--no-1b", action="store_true")
    parser.add_argument("--codecs", nargs="*", default=sorted(CODECS), help="reference codecs to add as rows")
    parser.add_argument("--work-dir", default="outputs/compare_tiny")
    parser.add_argument("--reuse", action="store_true", help="evaluate pipelines already trained in --work-dir "
                        "instead of training them again")
    args = parser.parse_args()
    work = ROOT / args.work_dir
    models = {}
    for preset in tqdm(args.presets, desc="train"):
        models[preset] = work / preset / "pipeline"
        if not (args.reuse and models[preset].is_dir()):
            run("recipes/train_tokenizer.py", "--preset", preset, f"output_dir={work / preset}",
                f"max_steps={args.steps}", "grid_every=100000")
    if "flowmo_tiny" in models and not args.no_1b:
        run("recipes/flowmo_1b.py", f"init_from={models['flowmo_tiny']}", f"output_dir={work / 'flowmo_tiny_1b'}")
        models["flowmo_tiny + 1B"] = work / "flowmo_tiny_1b" / "pipeline"

    models.update({codec: CODEC_PREFIX + codec for codec in args.codecs})

    rows = []
    for name, folder in tqdm(models.items(), desc="evaluate"):
        is_codec = str(folder).startswith(CODEC_PREFIX)
        out = work / "codecs" / name if is_codec else folder.parent / "eval"
        run("recipes/evaluate.py", "--model", str(folder), "--dataset", "embedded", "--name", name,
            "--output-dir", str(out))
        result = json.loads((out / "metrics.json").read_text())
        info = {} if is_codec else json.loads((folder / "tokenizer_zoo.json").read_text())["info"]
        seconds, params = codec_time_and_params(folder)
        rows.append((name, result["metrics"], params, info.get("train_images_per_second"), seconds))

    lines = [f"# Tiny tokenizers compared ({args.steps} steps at batch 16 each, embedded photographs, 2 CPU cores)", "",
             "Held-out: the 64 embedded evaluation crops at 32 px; diffusion decoders sample 25 steps, rho 4, "
             "guidance 1.5. Training images/s excludes held-out reports (FlowMo + 1B: the 1A figure). "
             "Code gain: one-step PSNR at t = 1 with the true minus with the null code (diffusion decoders only). "
             "Reference codecs (no parameters): JPEG and WebP at the quality closest to the BPP; their BPP is what "
             "their files reached.", "",
             "| tokenizer | BPP | PSNR | code gain (dB) | SSIM | LPIPS-VGG | rFID | params (M) | train images/s "
             "| encode+decode ms/image |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, m, params, speed, seconds in rows:
        rfid = f"{m['rfid']:.1f}" if "rfid" in m else "–"
        lpips = f"{m['lpips_vgg']:.3f}" if "lpips_vgg" in m else "–"
        gain = f"{m['code_gain_db']:.2f}" if "code_gain_db" in m else "–"
        lines.append(f"| {name} | {m['bpp']:.4f} | {m['psnr']:.2f} | {gain} | {m['ssim']:.3f} | {lpips} | {rfid} | "
                     f"{params / 1e6:.2f} | {speed if speed is not None else '–'} | {seconds * 1e3:.2f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
