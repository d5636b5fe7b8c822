"""Writing a converted pipeline atomically: into a staging folder beside the target, then renamed."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tokenizer_zoo.errors import ConversionError


def check_output_folder(output: str | os.PathLike) -> Path:
    """``output`` as a Path, if it is new or an empty folder."""
    target = Path(output)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConversionError(f"-o {output} already exists and is not an empty folder; choose a new folder")
    return target


def save_converted(pipe, output: str | os.PathLike) -> Path:
    """``save_pretrained`` into a temporary folder beside ``output``, then rename it: no partial folder."""
    target = check_output_folder(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        pipe.save_pretrained(staging)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
