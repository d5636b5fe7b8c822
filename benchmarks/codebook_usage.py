"""Does VQ use its codebook? The built-in VQ against vector-quantize-pytorch's, on the tiny CNN preset.

    python benchmarks/codebook_usage.py                          # 3 quantizers x 2 seeds, sequential
    python benchmarks/codebook_usage.py --steps 300 --seeds 0    # a longer single-seed look
    python benchmarks/codebook_usage.py --reuse                  # train / evaluate only what is missing

Every run trains ``cnn_lfq_tiny`` with its quantizer replaced by a 1024-entry VQ of 18 channels
(16 tokens x 10 bits) through recipes/train_tokenizer.py (batch 16, Adam at the tiny config's
lr, MSE loss; ``--perceptual-weight`` defaults to 0 to keep CPU runs short), then encodes and
decodes ``--eval-images`` fixed held-out crops of the embedded evaluation photographs (no source
photograph shared with training). Per run: codebook usage (share of the 1024 codes that occur in
the held-out tokens), perplexity of the held-out token histogram, PSNR and LPIPS-VGG of the
reconstructions, and the training step time the recipe measured. Needs the tokenizer-zoo-vqtorch
plugin. Writes benchmarks/results/codebook_usage.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tokenizer_zoo.data import EmbeddedPhotos
from tokenizer_zoo.data.transforms import signed_to_unit, unit_to_signed
from tokenizer_zoo.metrics import LPIPS, PSNR, TokenStatistics
from tokenizer_zoo.pipelines import TOKENIZER_PIPELINES, load_pipeline

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "codebook_usage.md"
PRESET, DIM, CODEBOOK_SIZE, BATCH = "cnn_lfq_tiny", 18, 1024, 16

# name -> (registry name, quantizer kwargs besides dim and codebook_size)
QUANTIZERS = {
    "built-in vq": ("vq", {}),
    "vqtorch VectorQuantize (k-means init, EMA, dead-code reset)": (
        "vqtorch_vq", dict(kmeans_init=True, decay=0.8, threshold_ema_dead_code=0.05, rotation_trick=True)),
    "vqtorch SimVQ (rotation trick)": ("vqtorch_simvq", dict(rotation_trick=True)),
}


def train(folder: Path, quantizer: str, kwargs: dict, seed: int, steps: int, perceptual_weight: float) -> None:
    spec = json.dumps({"quantizer_name": quantizer, "quantizer": {"dim": DIM, "codebook_size": CODEBOOK_SIZE, **kwargs}})
    command = [sys.executable, "recipes/train_tokenizer.py", "--preset", PRESET, f"preset_overrides={spec}",
               f"output_dir={folder}", f"max_steps={steps}", f"seed={seed}", f"batch_size={BATCH}",
               f"perceptual_weight={perceptual_weight}", "eval_images=4", "grid_every=1000000",
               "checkpoint_every=1000000", "log_every=10"]
    if subprocess.run(command, cwd=ROOT).returncode:
        raise SystemExit(f"training failed: {' '.join(command)}")


@torch.no_grad()
def evaluate(folder: Path, num_images: int, batch: int = 64) -> dict[str, float]:
    """Held-out usage, perplexity, PSNR and LPIPS-VGG of a trained pipeline, and its step time."""
    pipe = load_pipeline(folder, kinds=TOKENIZER_PIPELINES)
    pipe.set_progress_bar_config(disable=True)
    data = EmbeddedPhotos("eval", image_size=pipe.image_size, length=num_images)
    psnr, lpips, tokens = PSNR(), LPIPS("vgg"), TokenStatistics.for_quantizer(pipe.quantizer)
    for start in range(0, num_images, batch):
        images = torch.stack([data[i]["pixel_values"] for i in range(start, min(start + batch, num_images))])
        encoded = pipe.encode(signed_to_unit(images))
        recon = unit_to_signed(pipe.decode(encoded.indices, output_type="pt").images).clamp(-1, 1)
        psnr.update(recon, images)
        lpips.update(recon, images)
        tokens.update(encoded.indices, images.shape[-2:])
    stats = tokens.compute()
    info = pipe.info
    return {"usage": float(stats["codebook_usage"]), "perplexity": float(stats["perplexity"]),
            "psnr": float(psnr.compute()), "lpips": float(lpips.compute()),
            "step_ms": 1000 * BATCH / info["train_images_per_second"], "steps": info["steps"]}


def cell(values: list[float], fmt: str) -> str:
    """Mean of the seeds, then each seed's value."""
    mean = sum(values) / len(values)
    return f"{mean:{fmt}} ({' / '.join(f'{v:{fmt}}' for v in values)})"


def table(results: dict[str, list[dict]], args) -> str:
    lines = [f"# Codebook usage: {CODEBOOK_SIZE}-entry VQ on {PRESET} ({args.steps} steps)", "",
             f"Written by `python benchmarks/codebook_usage.py --steps {args.steps}`. Training: "
             f"recipes/train_tokenizer.py, batch {BATCH}, embedded photographs, perceptual weight "
             f"{args.perceptual_weight:g}. Held-out: {args.eval_images} fixed crops of the embedded evaluation "
             f"photographs, {args.eval_images * 16} tokens. Each cell: mean over the seeds (each seed's value). "
             "Usage: share of the codes occurring in the held-out tokens; perplexity: 2^entropy of their "
             "histogram (at most 1024). Step time: the recipe's training images/s, measured on a shared "
             "2-core machine under heavy load from other jobs, so only a rough ratio.", "",
             "| quantizer | registry name | seeds | usage | perplexity | PSNR (dB) | LPIPS-VGG | step (ms) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        seeds = ", ".join(str(r["seed"]) for r in runs)
        lines.append(f"| {name} | `{QUANTIZERS[name][0]}` | {seeds} | {cell([r['usage'] * 100 for r in runs], '.1f')} % | "
                     f"{cell([r['perplexity'] for r in runs], '.0f')} | {cell([r['psnr'] for r in runs], '.2f')} | "
                     f"{cell([r['lpips'] for r in runs], '.3f')} | {cell([r['step_ms'] for r in runs], '.0f')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--eval-images", type=int, default=256)
    parser.add_argument("--perceptual-weight", type=float, default=0.0)
    parser.add_argument("--work-dir", default="outputs/codebook_usage")
    parser.add_argument("--reuse", action="store_true", help="keep the runs already trained (and evaluated) in "
                        "--work-dir")
    parser.add_argument("--table-only", action="store_true", help="write the table from the runs already "
                        "evaluated in --work-dir (each run's codebook_usage.json), training nothing")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {}
    runs = [(name, seed) for seed in args.seeds for name in QUANTIZERS]  # every quantizer's first seed first
    for name, seed in tqdm(runs, desc="codebook usage"):
        quantizer, kwargs = QUANTIZERS[name]
        folder = ROOT / args.work_dir / f"{quantizer}_seed{seed}"
        record = folder / "codebook_usage.json"
        if args.table_only:
            if record.is_file():
                results.setdefault(name, []).append({**json.loads(record.read_text()), "seed": seed})
            continue
        if args.reuse and record.is_file():
            result = json.loads(record.read_text())
        else:
            if not (args.reuse and (folder / "pipeline").is_dir()):
                train(folder, quantizer, kwargs, seed, args.steps, args.perceptual_weight)
            result = evaluate(folder / "pipeline", args.eval_images)
            record.write_text(json.dumps(result, indent=2))
        results.setdefault(name, []).append({**result, "seed": seed})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(table(results, args))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
