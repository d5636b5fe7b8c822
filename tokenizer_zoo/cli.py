"""The ``tokenizer-zoo`` command line.

    tokenizer-zoo list              every registered component, plugins included, with its distribution
"""

from __future__ import annotations

import argparse
import sys
import warnings

from tokenizer_zoo.registry import ALL_REGISTRIES


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
    headers = ("kind", "name", "class", "distribution")
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    for failure in failures:
        print(f"BROKEN: {failure.describe()}", file=sys.stderr)
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenizer-zoo", description="Image tokenizers: list, train, use.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="print every registered component and the distribution providing it")
    listing.add_argument("--kind", choices=sorted(ALL_REGISTRIES), help="only this kind of component")
    listing.set_defaults(run=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
