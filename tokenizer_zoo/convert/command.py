"""``tokenizer-zoo convert SOURCE -o FOLDER [--format F] [--config FILE] [--weights ema|raw]``."""

from __future__ import annotations

import argparse


def add_convert_command(commands) -> argparse.ArgumentParser:
    """Register the ``convert`` subcommand on the CLI's subparsers."""
    from tokenizer_zoo.convert import FORMATS

    summary = "a published tokenizer release (checkpoint file or folder) -> a pipeline folder"
    parser = commands.add_parser("convert", help=summary, description=summary)
    parser.add_argument("source", metavar="SOURCE", help="the release's file or folder, a Hub URL, owner/repo/file, "
                        "or a release name (flowmo_lo, flowmo_hi, llamagen_vq16, llamagen_vq8, ...)")
    parser.add_argument("--format", choices=list(FORMATS), help="the release format (default: detected from the "
                        "file's keys)")
    parser.add_argument("--config", metavar="FILE", help="the release's config (FlowMo's yaml, a config.json) for "
                        "what tensor shapes cannot tell; default: the config.json of a folder, else the release's "
                        "defaults")
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema",
                        help="EMA (default) or raw weights, where a file holds both")
    parser.add_argument("-o", "--output", required=True, metavar="FOLDER", help="new folder for the pipeline")
    parser.add_argument("--quiet", action="store_true", help="no summary lines")
    parser.set_defaults(run=run_convert)
    return parser


def run_convert(args: argparse.Namespace) -> int:
    from tokenizer_zoo.convert import convert_release

    folder = convert_release(args.source, args.output, format=args.format, config=args.config, weights=args.weights,
                             quiet=args.quiet)
    if not args.quiet:
        print(f"converted {args.source} -> {folder} (use it as --model {folder})")
    return 0
