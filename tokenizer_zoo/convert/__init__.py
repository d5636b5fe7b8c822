"""Published tokenizer releases -> zoo pipelines, one module per release format.

    from tokenizer_zoo.convert import load_release, convert_release
    pipe = load_release("vq_ds8_c2i.pt")                          # format detected from the file's keys
    pipe = load_release("run/00200000.pth", format="flowmo", config="run/config.yaml", weights="raw")
    convert_release("vq_ds16_c2i.pt", "outputs/llamagen_vq16")     # atomic folder write, prints dropped keys
    tokenizer-zoo convert SOURCE -o FOLDER [--format flowmo|llamagen|...] [--config FILE] [--weights ema|raw]

A format module defines ``NAME``, ``EXPECTS`` (one line: what a file of the format holds, for the
error that names every format tried), ``detect(checkpoint) -> bool``, ``load(checkpoint,
config=None, weights="ema") -> pipeline``, and optionally ``RELEASES`` (release name -> Hub repo,
file: names the source may be) and ``SAFE_GLOBALS`` (the exact Python types its files may hold
besides tensors). Files are read by :mod:`tokenizer_zoo.convert.reading`; keys are mapped and the
dropped ones accounted for by :mod:`tokenizer_zoo.convert.keys`. This package never imports
``pipelines/``: a format builds its pipeline class from :data:`tokenizer_zoo.registry.PIPELINES`.
"""

from __future__ import annotations

import os
from types import ModuleType

from tokenizer_zoo.convert import flowmo, llamagen
from tokenizer_zoo.convert.keys import dropped_of
from tokenizer_zoo.convert.output import check_output_folder, save_converted
from tokenizer_zoo.convert.reading import Checkpoint, read_checkpoint, resolve_source
from tokenizer_zoo.errors import ConversionError

FORMATS: dict[str, ModuleType] = {module.NAME: module for module in (flowmo, llamagen)}
"""Release formats by name, in the order detection tries them."""

__all__ = ["FORMATS", "ConversionError", "convert_release", "detect_format", "load_release"]


def _formats(format: str | None) -> list[ModuleType]:
    if format is None:
        return list(FORMATS.values())
    if format not in FORMATS:
        raise ConversionError(f"unknown release format {format!r}; choose one of {', '.join(FORMATS)}")
    return [FORMATS[format]]


def detect_format(checkpoint: Checkpoint) -> ModuleType:
    """The format whose ``detect`` accepts ``checkpoint``; one line naming every format tried otherwise."""
    for module in FORMATS.values():
        if module.detect(checkpoint):
            return module
    keys = sorted(checkpoint.keys())
    shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "") if keys else "no tensors"
    tried = "; ".join(f"{name}: {module.EXPECTS}" for name, module in FORMATS.items())
    raise ConversionError(f"{checkpoint.name}: not a checkpoint of any release format tokenizer-zoo converts (its "
                          f"keys: {shown}). Tried {tried}. Give --format to see what a format misses")


def read_release(source: str | os.PathLike, format: str | None = None, **download_kwargs) -> tuple[Checkpoint, ModuleType]:
    """(checkpoint, format module) of ``source``: a file, a folder, a Hub URL / owner/repo/file or a release name."""
    modules = _formats(format)
    releases = {name: where for module in modules for name, where in getattr(module, "RELEASES", {}).items()}
    path = resolve_source(source, releases, **download_kwargs)
    safe_globals = tuple({cls for module in modules for cls in getattr(module, "SAFE_GLOBALS", ())})
    checkpoint = read_checkpoint(path, name=str(source) if str(source) in releases else str(path),
                                 safe_globals=safe_globals)
    module = modules[0] if format is not None else detect_format(checkpoint)
    return checkpoint, module


def load_release(source: str | os.PathLike, format: str | None = None, config=None, weights: str = "ema",
                 **download_kwargs):
    """A ready pipeline from a published release's file or folder (see the module doc).

    ``config``: a path or dict for what tensor shapes cannot tell (the release's yaml or
    ``config.json``; a folder's ``config.json`` is read by default). ``weights``: "ema" (the
    default, where a file holds both) or "raw". The dropped keys are in
    ``tokenizer_zoo.convert.keys.dropped_of(pipe)`` and counted in ``pipe.info["dropped_keys"]``.
    """
    if weights not in ("ema", "raw"):
        raise ConversionError(f"weights={weights!r}: choose 'ema' (the default) or 'raw'")
    checkpoint, module = read_release(source, format, **download_kwargs)
    pipe = module.load(checkpoint, config=config, weights=weights)
    pipe.info.setdefault("release_format", module.NAME)
    return pipe


def convert_release(source: str | os.PathLike, output_dir: str | os.PathLike, format: str | None = None,
                    config=None, weights: str = "ema", quiet: bool = False, **download_kwargs):
    """:func:`load_release`, then ``save_pretrained`` into ``output_dir`` atomically; prints the dropped keys."""
    check_output_folder(output_dir)
    pipe = load_release(source, format=format, config=config, weights=weights, **download_kwargs)
    folder = save_converted(pipe, output_dir)
    if not quiet:
        print(dropped_of(pipe).summary())
    return folder
