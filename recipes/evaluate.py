"""Evaluate any saved tokenizer pipeline (FlowMo or a one-pass baseline) on a dataset.

    accelerate launch recipes/evaluate.py --model outputs/flowmo_1a_tiny/pipeline --dataset embedded
    accelerate launch --multi_gpu --num_processes 8 recipes/evaluate.py --model you/flowmo-lo \\
        --dataset imagenet-1k --split validation --num-images 50000

The split defaults to the dataset's: "eval" for the embedded photos, else ``validation`` if the
dataset has it, else ``test``, else ``train`` (the one split of an image folder without split
subfolders). Unreadable images (empty, truncated, not images) are skipped and listed; ``--strict``
makes them fatal before any image is encoded.

Writes to ``--output-dir`` (default ``MODEL/eval_DATASET``):
  metrics.json   every metric with the settings it was measured under, why a metric was skipped
                 (``skipped_metrics``) and each unreadable image (``skipped``: [{file, reason}]); for
                 FlowMo also the code gain (one-step PSNR at t = 1 with the true minus with the null code)
  table_row.md   a row in the layout of the FlowMo paper's Table 1: model, BPP, rFID, PSNR, SSIM, LPIPS
  grid.png       originals (odd rows) above their reconstructions (even rows), first batch
``--save-to-model`` also writes metrics.json into a local model folder, where model cards find it.
``--model codec:NAME`` evaluates a reference codec (thumbnail_tiny, jpeg_tiny, webp_tiny; default output
folder outputs/codecs/NAME/eval_DATASET); for JPEG and WebP ``bpp`` is what their files reached.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from tokenizer_zoo import pipelines
from tokenizer_zoo.data import InvalidImageError, evaluation_split, load_image_dataset
from tokenizer_zoo.data.transforms import signed_to_unit, unit_to_signed
from tokenizer_zoo.errors import run_main
from tokenizer_zoo.evaluation.streaming import (ModelMetrics, batch_generator, batches, evaluation_accelerator,
                                                gather_skipped, readable_subset, sampler_settings, unreadable)
from tokenizer_zoo.metrics.code_use import code_use
from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.pipelines.codecs import CODEC_PREFIX, codec_pipeline
from tokenizer_zoo.training.reporting import save_comparison_grid


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a saved pipeline folder or a Hub id")
    parser.add_argument("--dataset", default="embedded", help="embedded, imagefolder:PATH or a Hub dataset id")
    parser.add_argument("--split", default=None, help="default: 'eval' for embedded, else the first of "
                        "validation, test, train that the dataset has")
    parser.add_argument("--image-column", default=None)
    parser.add_argument("--num-images", type=int, default=None, help="the first N images (default: all)")
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the pipeline's)")
    parser.add_argument("--rho", type=float, default=None, help="default: the scheduler's")
    parser.add_argument("--guidance", type=float, default=None, help="default: the pipeline's")
    parser.add_argument("--guidance-interval", type=float, nargs=2, default=None, help="default: the pipeline's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lpips", nargs="*", default=["vgg", "alex"], choices=["vgg", "alex"])
    parser.add_argument("--no-fid", action="store_true", help="skip rFID")
    parser.add_argument("--name", default=None, help="model name in the table row (default: the model path)")
    parser.add_argument("--output-dir", default=None)
    parser.add_argument("--save-to-model", action="store_true", help="also write metrics.json into the model folder")
    parser.add_argument("--strict", action="store_true",
                        help="stop before any work when an image cannot be read (default: skip and list it)")
    return parser.parse_args(argv)


def load_pipeline(model: str):
    try:
        if model.startswith(CODEC_PREFIX):  # a reference codec: codec:thumbnail_tiny, codec:jpeg_tiny, ...
            return codec_pipeline(model)
        return pipelines.load_pipeline(model, kinds=pipelines.TOKENIZER_PIPELINES)
    except ValueError as error:
        raise SystemExit(str(error)) from None


def table_row(name: str, values: dict, bpp: str | None = None) -> str:
    """``bpp``: the BPP cell for pipelines without a bit rate ("continuous (N floats)")."""

    def cell(key, digits):
        return f"{values[key]:.{digits}f}" if key in values else "–"

    header = "| model | BPP | rFID | PSNR | SSIM | LPIPS |\n|---|---|---|---|---|---|\n"
    return header + (f"| {name} | {bpp or cell('bpp', 4)} | {cell('rfid', 2)} | {cell('psnr', 2)} | {cell('ssim', 3)} "
                     f"| {cell('lpips_vgg', 3)} |\n")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    accelerator = evaluation_accelerator()
    pipe = load_pipeline(args.model).to(accelerator.device)
    pipe.set_progress_bar_config(disable=True)
    split = args.split or evaluation_split(args.dataset)
    data = readable_subset(load_image_dataset(args.dataset, split, pipe.image_size, train=False,
                                              image_column=args.image_column), args.num_images)
    if args.strict and (bad := unreadable(data, accelerator)):
        raise InvalidImageError(f"{len(bad)} of {len(data)} images cannot be read, first {bad[0]['file']}: "
                                f"{bad[0]['reason']} (--strict; without it they are skipped and listed)")
    loader = batches(data, args.batch_size, accelerator)
    metrics = ModelMetrics.build(getattr(pipe, "quantizer", None), tuple(args.lpips), not args.no_fid,
                                 accelerator.device)
    for name, reason in metrics.skipped.items():
        print(f"skipping {name}: {reason}", file=sys.stderr)
    sampler = sampler_settings(args.steps, args.rho, args.guidance, args.guidance_interval)

    start, grid, skipped, count = time.perf_counter(), None, [], 0
    code_scores = torch.zeros(3, dtype=torch.float64, device=accelerator.device)  # sums of two PSNRs, images
    for index, batch in enumerate(tqdm(loader, desc="evaluate", disable=not accelerator.is_main_process)):
        skipped += batch["skipped"]
        images = batch["pixel_values"]
        if images is None:
            continue
        count += len(images)
        encoded = pipe.encode(signed_to_unit(images))  # the dataset's [-1, 1] -> the pipeline's [0, 1], and back
        recon = unit_to_signed(pipe.decode(encoded, generator=batch_generator(args.seed, index, accelerator),
                                           output_type="pt", **sampler).images).to(images.dtype)
        metrics.update(images, recon, encoded)  # a file codec's bpp: what its files reached
        if grid is None:
            grid = (images[:16].cpu(), recon[:16].cpu())
        if isinstance(pipe, FlowMoPipeline):
            use = code_use(pipe.encoder, pipe.quantizer, pipe.decoder, images, seed=args.seed * 1_000_003 + index)
            code_scores += torch.tensor([use.x0_psnr_code, use.x0_psnr_null, 1.0], dtype=torch.float64,
                                        device=code_scores.device) * len(images)

    skipped = gather_skipped(skipped, accelerator)
    if not sum(gather_object([count])):
        raise InvalidImageError(f"none of the {len(data)} images of {args.dataset} [{split}] could be read")
    values = metrics.compute()
    if isinstance(pipe, FlowMoPipeline):
        code_sum, null_sum, scored = accelerator.reduce(code_scores, "sum").tolist()
        values.update(x0_psnr_code=code_sum / scored, x0_psnr_null=null_sum / scored,
                      code_gain_db=(code_sum - null_sum) / scored)
    result = {"model": args.model, "pipeline": type(pipe).__name__, "dataset": args.dataset, "split": split,
              "num_images": len(data) - len(skipped), "image_size": pipe.image_size, "seed": args.seed,
              "sampler": {**pipe.sampling_defaults, **sampler} if isinstance(pipe, FlowMoPipeline) else "one pass",
              "lpips_backbones": args.lpips, "metrics": values, "skipped_metrics": metrics.skipped, "skipped": skipped,
              "seconds": round(time.perf_counter() - start, 2), "processes": accelerator.num_processes}
    if accelerator.is_main_process:
        model_dir = Path("outputs/codecs", args.model.removeprefix(CODEC_PREFIX)) if args.model.startswith(
            CODEC_PREFIX) else Path(args.model)
        out = Path(args.output_dir or model_dir / f"eval_{args.dataset.replace(':', '_').replace('/', '_')}")
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
        bpp = None if "bpp" in values else pipe.bpp_label  # continuous codes: "continuous (N floats)"
        (out / "table_row.md").write_text(table_row(args.name or args.model, values, bpp))
        if grid is not None:  # None when every image of this process's share was unreadable
            save_comparison_grid(*grid, out / "grid.png")
        if args.save_to_model and Path(args.model).is_dir():
            (Path(args.model) / "metrics.json").write_text(json.dumps(values, indent=2, sort_keys=True))
        print((out / "table_row.md").read_text())
        print(f"wrote {out / 'metrics.json'}, {out / 'table_row.md'} and {out / 'grid.png'}")
    return result


if __name__ == "__main__":
    sys.exit(run_main(main, "evaluate.py"))
