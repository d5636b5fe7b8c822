"""``tokenizer-zoo compare MODEL [MODEL ...] -o DIR``: the command-line face of :mod:`tokenizer_zoo.evaluation.compare`.

    tokenizer-zoo compare outputs/flowmo_tiny/pipeline "cnn=outputs/cnn/pipeline" -o outputs/compare
    accelerate launch --multi_gpu --num_processes 8 -m tokenizer_zoo.cli compare flowmo_lo ... \\
        --dataset imagenet-1k --split validation --resolution 256 -o outputs/compare_lo

Exit status 0 when at least one model ran (failed ones are rows with their reason), 1 when none did.
"""

from __future__ import annotations

import argparse

from tokenizer_zoo.evaluation.models import MODEL_HELP


class NoModelRanError(RuntimeError):
    """Every model of a comparison failed to load or to run."""


def _count(text: str) -> int:
    """argparse type: a positive integer."""
    if (value := int(text)) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_compare_command(commands) -> None:
    """Register ``compare`` on the ``tokenizer-zoo`` subcommand parsers."""
    summary = "many tokenizers on one dataset -> compare.md/.json, rate_distortion.png, grid.png"
    parser = commands.add_parser("compare", help=summary, description=summary + "\n\n" + MODEL_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="MODEL", help="[NAME=]SOURCE[,config=FILE][,format=F][,weights=W]")
    parser.add_argument("--dataset", default="embedded", help="embedded, imagefolder:PATH or a Hub dataset id")
    parser.add_argument("--split", help="default: 'eval' for embedded, else validation, test or train")
    parser.add_argument("--image-column", help="the image column of a Hub dataset (default: its one image column)")
    parser.add_argument("--num-images", type=_count, help="the first N images (default: all)")
    parser.add_argument("--resolution", type=_count, help="compare at R x R (default: the largest native size)")
    parser.add_argument("--steps", type=_count, help="sampling steps of diffusion decoders (default: each model's)")
    parser.add_argument("--rho", type=float, help="schedule shift of diffusion decoders (default: each model's)")
    parser.add_argument("--guidance", type=float, help="guidance scale of diffusion decoders (default: each model's)")
    parser.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="flow times where guidance applies (default: each model's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (default 0)")
    parser.add_argument("--batch-size", type=_count, default=16, help="images per batch and process (default 16)")
    parser.add_argument("--lpips", nargs="*", default=["vgg"], choices=["vgg", "alex"], help="LPIPS backbones")
    parser.add_argument("--no-fid", action="store_true", help="skip rFID (Inception features)")
    parser.add_argument("--grid-images", type=_count, default=8, help="images in grid.png (default 8)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the four files")
    parser.set_defaults(run=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from tokenizer_zoo.evaluation.compare import CompareSettings, compare
    from tokenizer_zoo.evaluation.models import ModelSpec
    from tokenizer_zoo.evaluation.report import markdown, write_report
    from tokenizer_zoo.evaluation.streaming import evaluation_accelerator

    specs = [ModelSpec.parse(text) for text in args.models]
    settings = CompareSettings(
        dataset=args.dataset, split=args.split, image_column=args.image_column, num_images=args.num_images,
        resolution=args.resolution, steps=args.steps, rho=args.rho, guidance=args.guidance,
        guidance_interval=args.guidance_interval and tuple(args.guidance_interval), seed=args.seed,
        batch_size=args.batch_size, lpips=tuple(args.lpips), fid=not args.no_fid, grid_images=args.grid_images)
    accelerator = evaluation_accelerator()
    result = compare(specs, settings, accelerator)
    if accelerator.is_main_process:
        written = write_report(result, args.output)
        print(markdown(result))
        print("wrote " + ", ".join(str(path) for path in written))
    if not result.ran:
        raise NoModelRanError(f"none of the {len(specs)} models ran; their reasons are in {args.output}/compare.md")
    return 0
