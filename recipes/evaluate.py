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
import os
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, gather_object
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from tokenizer_zoo import pipelines
from tokenizer_zoo.data import InvalidImageError, evaluation_split, load_image_dataset
from tokenizer_zoo.data.transforms import signed_to_unit, unit_to_signed
from tokenizer_zoo.errors import run_main
from tokenizer_zoo.metrics import ReconstructionFID, TokenStatistics, reconstruction_metrics
from tokenizer_zoo.metrics.code_use import code_use
from tokenizer_zoo.metrics.inception import InceptionFeatureExtractor, InceptionWeightsMissingError
from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.pipelines.codecs import CODEC_PREFIX, FileCodecPipeline, codec_pipeline
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


class ReadableImages(Dataset):
    """``data`` whose unreadable items become ``{"skipped": {"file", "reason"}}`` instead of raising."""

    def __init__(self, data):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        try:
            return self.data[index]
        except InvalidImageError as error:
            file = self.data.file_name(index) if hasattr(self.data, "file_name") else f"item {index}"
            return {"skipped": {"file": file, "reason": str(error)}}


def collate(items: list[dict]) -> dict:
    """A batch of the readable images (``pixel_values`` None when there are none) and the skipped ones."""
    images = [item["pixel_values"] for item in items if "pixel_values" in item]
    return {"pixel_values": torch.stack(images) if images else None,
            "skipped": [item["skipped"] for item in items if "skipped" in item]}


def unreadable(data, accelerator: Accelerator) -> list[dict]:
    """Every unreadable image of ``data``; each process reads its share once."""
    mine = [item["skipped"] for index in range(accelerator.process_index, len(data), accelerator.num_processes)
            if "skipped" in (item := data[index])]
    return sorted(gather_object(mine), key=lambda entry: entry["file"])


def build_metrics(pipe, args, device):
    """The metrics to stream, and for each one left out the reason why."""
    pairwise = reconstruction_metrics(lpips_nets=tuple(args.lpips))
    skipped = dict(pairwise.skipped)
    rfid = None
    if args.no_fid:
        skipped["rfid"] = "disabled with --no-fid"
    else:
        try:
            rfid = ReconstructionFID(InceptionFeatureExtractor.from_pretrained()).to(device)
        except InceptionWeightsMissingError as error:
            skipped["rfid"] = str(error)
    try:
        tokens = TokenStatistics.for_quantizer(pipe.quantizer).to(device)
    except TypeError as error:  # continuous codes: no token ids, no bit rate
        tokens, skipped["tokens"] = None, str(error)
    except AttributeError:  # a file codec: the BPP of its files is measured instead
        tokens, skipped["tokens"] = None, "a file codec has no token ids; bpp is its files' size"
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}", file=sys.stderr)
    return pairwise.to(device), rfid, tokens, skipped


def table_row(name: str, values: dict) -> str:
    def cell(key, digits):
        return f"{values[key]:.{digits}f}" if key in values else "–"

    header = "| model | BPP | rFID | PSNR | SSIM | LPIPS |\n|---|---|---|---|---|---|\n"
    return header + (f"| {name} | {cell('bpp', 4)} | {cell('rfid', 2)} | {cell('psnr', 2)} | {cell('ssim', 3)} "
                     f"| {cell('lpips_vgg', 3)} |\n")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              dataloader_config=DataLoaderConfiguration(even_batches=False))
    if accelerator.device.type == "cpu" and accelerator.num_processes == 1:
        torch.set_num_threads(len(os.sched_getaffinity(0)))  # `accelerate launch` sets 1 thread without a GPU
    pipe = load_pipeline(args.model).to(accelerator.device)
    pipe.set_progress_bar_config(disable=True)
    split = args.split or evaluation_split(args.dataset)
    data = ReadableImages(load_image_dataset(args.dataset, split, pipe.image_size, train=False,
                                             image_column=args.image_column))
    if args.num_images is not None:
        data = Subset(data, range(min(args.num_images, len(data))))
    if args.strict and (bad := unreadable(data, accelerator)):
        raise InvalidImageError(f"{len(bad)} of {len(data)} images cannot be read, first {bad[0]['file']}: "
                                f"{bad[0]['reason']} (--strict; without it they are skipped and listed)")
    loader = accelerator.prepare(DataLoader(data, batch_size=args.batch_size, shuffle=False, collate_fn=collate))
    pairwise, rfid, tokens, skipped_metrics = build_metrics(pipe, args, accelerator.device)
    given = {"num_inference_steps": args.steps, "rho": args.rho, "guidance_scale": args.guidance,
             "guidance_interval": args.guidance_interval and tuple(args.guidance_interval)}
    sampler = {key: value for key, value in given.items() if value is not None}

    start, grid, skipped, count = time.perf_counter(), None, [], 0
    code_scores = torch.zeros(3, dtype=torch.float64, device=accelerator.device)  # sums of two PSNRs, images
    file_sums = torch.zeros(4, dtype=torch.float64, device=accelerator.device)  # bits, quality, images, pixels
    for index, batch in enumerate(tqdm(loader, desc="evaluate", disable=not accelerator.is_main_process)):
        skipped += batch["skipped"]
        images = batch["pixel_values"]
        if images is None:
            continue
        count += len(images)
        generator = torch.Generator(accelerator.device).manual_seed(args.seed * 1_000_003 + index * 1009
                                                                    + accelerator.process_index)
        encoded = pipe.encode(signed_to_unit(images))  # the dataset's [-1, 1] -> the pipeline's [0, 1], and back
        recon = unit_to_signed(pipe.decode(encoded, generator=generator, output_type="pt", **sampler).images)
        recon = recon.to(images.dtype)
        pairwise.update(recon, images)
        if rfid is not None:
            rfid.update(images, recon)
        if tokens is not None:
            tokens.update(encoded.indices, image_size=images.shape[-2:])
        if isinstance(pipe, FileCodecPipeline):
            file_sums += torch.tensor([sum(encoded.file_bits), sum(encoded.qualities), len(images),
                                       images[:, 0].numel()], dtype=torch.float64, device=file_sums.device)
        if grid is None:
            grid = (images[:16].cpu(), recon[:16].cpu())
        if isinstance(pipe, FlowMoPipeline):
            use = code_use(pipe.encoder, pipe.quantizer, pipe.decoder, images, seed=args.seed * 1_000_003 + index)
            code_scores += torch.tensor([use.x0_psnr_code, use.x0_psnr_null, 1.0], dtype=torch.float64,
                                        device=code_scores.device) * len(images)

    skipped = sorted(gather_object(skipped), key=lambda entry: entry["file"])
    for entry in skipped if accelerator.is_main_process else []:
        print(f"skipped {entry['file']}: {entry['reason']}", file=sys.stderr)
    if not sum(gather_object([count])):
        raise InvalidImageError(f"none of the {len(data)} images of {args.dataset} [{split}] could be read")
    values = {name: float(v) for name, v in pairwise.compute().items()}
    if rfid is not None:
        values["rfid"] = float(rfid.compute().fid)
    if tokens is not None:
        values.update({name: float(v) for name, v in tokens.compute().items()})
    if isinstance(pipe, FileCodecPipeline):  # what the files reached, against pipe.bits_per_pixel
        bits, qualities, coded, pixels = accelerator.reduce(file_sums, "sum").tolist()
        values.update(bpp=bits / pixels, mean_quality=qualities / coded)
    if isinstance(pipe, FlowMoPipeline):
        code_sum, null_sum, scored = accelerator.reduce(code_scores, "sum").tolist()
        values.update(x0_psnr_code=code_sum / scored, x0_psnr_null=null_sum / scored,
                      code_gain_db=(code_sum - null_sum) / scored)
    result = {"model": args.model, "pipeline": type(pipe).__name__, "dataset": args.dataset, "split": split,
              "num_images": len(data) - len(skipped), "image_size": pipe.image_size, "seed": args.seed,
              "sampler": {**pipe.sampling_defaults, **sampler} if isinstance(pipe, FlowMoPipeline) else "one pass",
              "lpips_backbones": args.lpips, "metrics": values, "skipped_metrics": skipped_metrics, "skipped": skipped,
              "seconds": round(time.perf_counter() - start, 2), "processes": accelerator.num_processes}
    if accelerator.is_main_process:
        model_dir = Path("outputs/codecs", args.model.removeprefix(CODEC_PREFIX)) if args.model.startswith(
            CODEC_PREFIX) else Path(args.model)
        out = Path(args.output_dir or model_dir / f"eval_{args.dataset.replace(':', '_').replace('/', '_')}")
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
        (out / "table_row.md").write_text(table_row(args.name or args.model, values))
        if grid is not None:  # None when every image of this process's share was unreadable
            save_comparison_grid(*grid, out / "grid.png")
        if args.save_to_model and Path(args.model).is_dir():
            (Path(args.model) / "metrics.json").write_text(json.dumps(values, indent=2, sort_keys=True))
        print((out / "table_row.md").read_text())
        print(f"wrote {out / 'metrics.json'}, {out / 'table_row.md'} and {out / 'grid.png'}")
    return result


if __name__ == "__main__":
    sys.exit(run_main(main, "evaluate.py"))
