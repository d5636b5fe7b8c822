"""``tokenizer-zoo demo MODEL [MODEL ...]``: serve the comparison page (:mod:`tokenizer_zoo.demo.app`) on loopback."""

from __future__ import annotations

import argparse

from tokenizer_zoo.evaluation.models import MODEL_HELP


def add_demo_command(commands) -> None:
    """Register ``demo`` on the ``tokenizer-zoo`` subcommand parsers."""
    summary = "a local web page: pick an image, see each model's reconstruction with BPP, PSNR, LPIPS, decode time"
    parser = commands.add_parser("demo", help=summary, description=summary + "\n\n" + MODEL_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="MODEL", help="[NAME=]SOURCE[,config=FILE][,format=F][,weights=W]")
    parser.add_argument("--port", type=int, default=7860, help="port on 127.0.0.1 (default 7860; 0: the first free one "
                        "from 7860)")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps the page starts with (default 25)")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from tokenizer_zoo.demo.app import serve

    serve(args.models, port=args.port, device=args.device, steps=args.steps)
    return 0
