"""The ``tokenizer-zoo`` command line.

    tokenizer-zoo list                                   every registered component, plugins included
    tokenizer-zoo encode IMAGES... --model M -o tokens.safetensors [--batch-size 16]
    tokenizer-zoo decode tokens.safetensors --model M -o DIR [--steps N --rho R --guidance G --seed 0]
    tokenizer-zoo reconstruct IMAGES... --model M -o DIR [sampler flags]   PNGs + grid.png
    tokenizer-zoo likelihood IMAGES... --model M [--steps 25 --seed 0]     bits/dim per image
    tokenizer-zoo convert SOURCE -o FOLDER [--format F --config FILE]    a published release -> pipeline
    tokenizer-zoo compare MODEL... -o DIR  /  tokenizer-zoo demo MODEL...   table, plot, grid  /  a local web page

IMAGES are files, directories (searched recursively for image files) and glob patterns. Images
are read by :func:`tokenizer_zoo.data.images.open_image` and resized/cropped by the pipeline's
evaluation transform, the rules the datasets follow. Unreadable images are reported on stderr and
skipped, or stop the command with ``--strict``. M is a pipeline folder or a Hub id (the local
cache is used with ``HF_HUB_OFFLINE=1``) of any kind: FlowMoPipeline, TokenizerPipeline, or
MaskGiTPipeline, whose tokenizer is used. Sampler flags left out take the model's saved defaults.
Errors are one line; ``--verbose`` adds the traceback.
Exit status: 0 success, 1 error, 2 bad usage.
"""

from __future__ import annotations

import argparse
import glob
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tokenizer_zoo.convert.command import add_convert_command
from tokenizer_zoo.demo.command import add_demo_command
from tokenizer_zoo.errors import VERBOSE_FLAG, report, split_verbose
from tokenizer_zoo.evaluation.command import add_compare_command
from tokenizer_zoo.registry import ALL_REGISTRIES

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                              ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico"})
GRID_NAME = "grid.png"


class CLIError(Exception):
    """A user error: printed as one line (no traceback), exit status 1."""


# --- list -------------------------------------------------------------------------------------
def _list(args: argparse.Namespace) -> int:
    rows = []
    failures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # failures are printed below instead
        for group, registry in ALL_REGISTRIES.items():
            if args.kind and group != args.kind:
                continue
            for name in registry.names():
                component = registry.get(name)
                rows.append((group, name, f"{component.__module__}.{component.__qualname__}", registry.source(name)))
            failures.extend(registry.failures)
    _print_table(("kind", "name", "class", "distribution"), rows)
    for failure in failures:
        print(f"BROKEN: {failure.describe()}", file=sys.stderr)
    return 1 if failures else 0


def _print_table(headers: tuple[str, ...], rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


# --- images in --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageSource:
    path: Path
    name: str  # as shown to the user
    stored_name: str  # as stored in token files: relative to the folder given, else the file name, never absolute


def find_images(patterns: list[str], strict: bool) -> list[ImageSource]:
    """Files as given, image files under directories (recursive, sorted) and glob matches, without repeats."""
    found: dict[Path, ImageSource] = {}
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            matches = [ImageSource(p, str(p), p.relative_to(path).as_posix()) for p in sorted(path.rglob("*"))
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        elif path.is_file():
            matches = [ImageSource(path, pattern, path.name)]
        else:
            hits = sorted(glob.glob(pattern, recursive=True))
            matches = [m for hit in hits for m in (find_images([hit], strict) if Path(hit).is_dir()
                                                   else [ImageSource(Path(hit), hit, Path(hit).name)])]
            if not matches:
                _skip(f"{pattern}: no such file, directory or matching image", strict)
        for source in matches:
            found.setdefault(source.path.resolve(), source)
    return list(found.values())


def _skip(message: str, strict: bool) -> None:
    if strict:
        raise CLIError(f"{message} (--strict)")
    print(f"tokenizer-zoo: skipping: {message}", file=sys.stderr)


def read_batches(sources: list[ImageSource], batch_size: int, strict: bool
                 ) -> Iterator[tuple[list, list[ImageSource]]]:
    """(PIL images, their sources) batches of the readable images; each unreadable one is reported or fatal."""
    from tokenizer_zoo.data.images import InvalidImageError, open_image

    images, batch, readable = [], [], 0
    for source in sources:
        try:
            image = open_image(source.path, source.name)
        except InvalidImageError as error:
            _skip(str(error), strict)
            continue
        images.append(image)
        batch.append(source)
        readable += 1
        if len(images) == batch_size:
            yield images, batch
            images, batch = [], []
    if images:
        yield images, batch
    if not readable:
        raise CLIError(f"none of the {len(sources)} image files could be read")


def _sources(args: argparse.Namespace) -> list[ImageSource]:
    sources = find_images(args.images, args.strict)
    if not sources:
        raise CLIError(f"no images found in {' '.join(args.images)} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return sources


# --- models -----------------------------------------------------------------------------------
def load_pipeline(args: argparse.Namespace):
    """The tokenizer of ``--model`` (a FlowMoPipeline or TokenizerPipeline folder, or a MaskGiTPipeline
    folder's tokenizer) on ``--device``, with progress bars per ``--quiet``."""
    import torch
    from diffusers.utils import logging as diffusers_logging

    from tokenizer_zoo.pipelines import MaskGiTPipeline, load_pipeline
    from tokenizer_zoo.pipelines.base import MissingPluginError
    from tokenizer_zoo.pipelines.folders import PipelineFolderError
    from tokenizer_zoo.validation import NonFiniteError

    was_enabled = diffusers_logging.is_progress_bar_enabled()
    if args.quiet:
        diffusers_logging.disable_progress_bar()  # the "Loading pipeline components" bar
    try:
        pipe = load_pipeline(args.model)
    except (PipelineFolderError, NonFiniteError, MissingPluginError) as error:  # their messages say what to do
        raise CLIError(f"--model {error}") from error
    except ValueError as error:  # not a pipeline folder of the zoo
        raise CLIError(f"cannot load the model {args.model}: {error}") from error
    except Exception as error:  # diffusers / huggingface_hub raise many types for missing or offline models
        raise CLIError(f"cannot load the model {args.model}: {type(error).__name__}: {error}. For a Hub id, "
                       "download it once online (or set HF_HUB_OFFLINE=1 to use the local cache).") from error
    finally:
        if was_enabled:
            diffusers_logging.enable_progress_bar()
    if isinstance(pipe, MaskGiTPipeline):
        pipe = pipe.tokenizer
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        pipe.to(torch.device(device))
    except (RuntimeError, AssertionError) as error:  # unknown device strings, CUDA missing from this torch build
        raise CLIError(f"cannot use --device {device}: {error}") from error
    pipe.set_progress_bar_config(disable=args.quiet)
    return pipe


def _sampling(args: argparse.Namespace) -> dict:
    import torch

    given = {"num_inference_steps": args.steps, "rho": args.rho, "guidance_scale": args.guidance}
    return {**{key: value for key, value in given.items() if value is not None},
            "generator": torch.Generator().manual_seed(args.seed)}


def _info(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message)


# --- images out -------------------------------------------------------------------------------
class OutputNames:
    """Unique flat PNG file names in one folder, from image names ("a/b/x.jpg" -> "x.png", "x-1.png", ...)."""

    def __init__(self, reserved: tuple[str, ...] = ()):
        self.used = {name.lower() for name in reserved}

    def __call__(self, name: str | None, index: int) -> str:
        stem = Path(name).stem if name else ""
        stem = stem.strip(". ") or f"{index:06d}"
        candidate, counter = f"{stem}.png", 0
        while candidate.lower() in self.used:
            counter += 1
            candidate = f"{stem}-{counter}.png"
        self.used.add(candidate.lower())
        return candidate


def _output_folder(path: str) -> Path:
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"-o {path} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --- commands ---------------------------------------------------------------------------------
def _encode(args: argparse.Namespace) -> int:
    import torch

    from tokenizer_zoo.tokens import save_tokens, signature_of

    if Path(args.output).is_dir():
        raise CLIError(f"-o {args.output} is a folder; give the path of the token file to write")
    sources = _sources(args)
    pipe = load_pipeline(args)
    signature_of(pipe)  # fails early, with its message, for a model without token ids (continuous codes)
    indices, names = [], []
    for images, batch_sources in read_batches(sources, args.batch_size, args.strict):
        indices.append(pipe.encode(images).indices.cpu())
        names.extend(source.stored_name for source in batch_sources)
    preset = (getattr(pipe, "info", None) or {}).get("preset")
    path = save_tokens(args.output, torch.cat(indices), pipe.quantizer, pipe.image_size, preset=preset, names=names)
    _info(args, f"encoded {len(names)} images -> {path} ({path.stat().st_size} bytes)")
    return 0


def _decode(args: argparse.Namespace) -> int:
    from tokenizer_zoo.tokens import load_tokens

    pipe = load_pipeline(args)
    tokens = load_tokens(args.tokens, expect=pipe)
    folder = _output_folder(args.output)
    sampling, names = _sampling(args), OutputNames()
    for start in range(0, len(tokens), args.batch_size):
        batch = tokens.indices[start:start + args.batch_size]
        for offset, image in enumerate(pipe.decode(batch, output_type="pil", **sampling).images):
            index = start + offset
            image.save(folder / names(tokens.names[index] if tokens.names else None, index))
    _info(args, f"decoded {len(tokens)} images -> {folder}")
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    import torch

    from tokenizer_zoo.data.images import from_model_output
    from tokenizer_zoo.data.transforms import to_model_input
    from tokenizer_zoo.training.reporting import save_comparison_grid

    sources = _sources(args)
    pipe = load_pipeline(args)
    folder = _output_folder(args.output)
    sampling, out_names = _sampling(args), OutputNames(reserved=(GRID_NAME,))
    originals, reconstructions, count = [], [], 0
    for images, batch_sources in read_batches(sources, args.batch_size, args.strict):
        pixels = to_model_input(images, pipe.image_size)  # [-1, 1], the grid's convention
        recon = pipe(images, output_type="pt", **sampling).images.cpu() * 2 - 1
        for image, source in zip(from_model_output(recon, "pil"), batch_sources):
            image.save(folder / out_names(source.name, count))
            count += 1
        originals.append(pixels)
        reconstructions.append(recon)
    grid = save_comparison_grid(torch.cat(originals), torch.cat(reconstructions), folder / GRID_NAME)
    _info(args, f"reconstructed {count} images -> {folder} (originals above reconstructions in {grid})")
    return 0


def _likelihood(args: argparse.Namespace) -> int:
    import torch

    sources = _sources(args)
    pipe = load_pipeline(args)
    if not callable(getattr(pipe, "likelihood", None)):
        raise CLIError(f"{type(pipe).__name__} has no likelihood(); this version of tokenizer-zoo cannot compute it")
    generator = torch.Generator().manual_seed(args.seed)
    rows = []
    for images, batch_sources in read_batches(sources, args.batch_size, args.strict):
        result = pipe.likelihood(images, **({"num_inference_steps": args.steps} if args.steps else {}),
                                 generator=generator)
        rows.extend(zip([source.name for source in batch_sources], result.bits_per_dim.float().cpu().tolist()))
    mean = sum(value for _, value in rows) / len(rows)
    _print_table(("image", "bits/dim"), [(name, f"{value:.4f}") for name, value in rows] + [("mean", f"{mean:.4f}")])
    return 0


# --- parser -----------------------------------------------------------------------------------
def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _model_options(parser: argparse.ArgumentParser, batch_size: int = 16) -> None:
    parser.add_argument("--model", required=True, metavar="DIR|HUB_ID", help="pipeline folder or Hub id")
    parser.add_argument("--batch-size", type=_positive, default=batch_size, metavar="N",
                        help=f"images per forward pass (default {batch_size})")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or summary lines")


def _image_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders (recursive) or glob patterns")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first unreadable image or unmatched pattern (default: report and skip)")


def _sampler_options(parser: argparse.ArgumentParser, full: bool = True) -> None:
    parser.add_argument("--steps", type=_positive, default=None, help="sampling steps (default: the model's)")
    if full:
        parser.add_argument("--rho", type=float, default=None, help="timestep schedule shift (default: the model's)")
        parser.add_argument("--guidance", type=float, default=None,
                            help="classifier-free guidance scale (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (default 0)")


def _command(commands, name: str, summary: str, run, images: bool = False, output: tuple[str, str] | None = None,
             sampler: str | None = None) -> argparse.ArgumentParser:
    """A subcommand that loads a model: its inputs, output (metavar, help) and sampler flags ("full", "seed")."""
    parser = commands.add_parser(name, help=summary, description=summary)
    if images:
        _image_options(parser)
    _model_options(parser)
    if output:
        parser.add_argument("-o", "--output", required=True, metavar=output[0], help=output[1])
    if sampler:
        _sampler_options(parser, full=sampler == "full")
    parser.set_defaults(run=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenizer-zoo", description="Image tokenizers: list, encode, decode, use.")
    parser.add_argument(VERBOSE_FLAG, action="store_true",
                        help="on an error, print its traceback too (accepted anywhere on the command line)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="print every registered component and the distribution providing it")
    listing.add_argument("--kind", choices=sorted(ALL_REGISTRIES), help="only this kind of component")
    listing.set_defaults(run=_list)

    _command(commands, "encode", "images -> a token file (.safetensors)", _encode, images=True,
             output=("TOKENS", "token file to write"))
    decode = _command(commands, "decode", "a token file -> PNG images", _decode,
                      output=("DIR", "folder for the PNGs"), sampler="full")
    decode.add_argument("tokens", metavar="TOKENS", help="token file written by `tokenizer-zoo encode`")
    _command(commands, "reconstruct", "images -> tokens -> PNG reconstructions and grid.png", _reconstruct,
             images=True, output=("DIR", "folder for the PNGs"), sampler="full")
    _command(commands, "likelihood", "bits/dim of images under the decoder, per image and mean", _likelihood,
             images=True, sampler="seed")
    add_convert_command(commands)
    add_compare_command(commands)
    add_demo_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv, verbose = split_verbose(sys.argv[1:] if argv is None else [str(arg) for arg in argv])
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except Exception as error:  # one line each (tokenizer-zoo's own errors say what to do); --verbose: traceback
        return report(error, f"tokenizer-zoo {args.command}", verbose)
    except KeyboardInterrupt:
        print("tokenizer-zoo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
