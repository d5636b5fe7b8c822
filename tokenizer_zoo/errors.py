"""One-line errors for the ``tokenizer-zoo`` command and the recipes; ``--verbose`` shows the traceback.

Errors raised by tokenizer-zoo itself carry messages written for users and are printed as they are;
any other exception is printed with its type name. Newlines are folded, so every error is one line.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any, Callable

VERBOSE_FLAG = "--verbose"


def one_line(error: BaseException) -> str:
    """``error`` as one line: its message, prefixed by its type unless tokenizer-zoo raised it."""
    message = " ".join(str(error).split())
    if type(error).__module__.split(".")[0] == "tokenizer_zoo" and message:
        return message
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def split_verbose(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--verbose``, and whether it was there."""
    return [arg for arg in argv if arg != VERBOSE_FLAG], VERBOSE_FLAG in argv


def report(error: BaseException, prog: str, verbose: bool) -> int:
    """Print ``error`` on stderr (one line, or the traceback with ``verbose``); return the exit status 1."""
    if verbose:
        traceback.print_exception(error)
    print(f"{prog}: error: {one_line(error)}" + ("" if verbose else f" ({VERBOSE_FLAG} shows the traceback)"),
          file=sys.stderr)
    return 1


def run_main(main: Callable[[list[str]], Any], prog: str, argv: list[str] | None = None) -> int:
    """Run a recipe's ``main(argv)`` as a command: exit status 0, 1 with a one-line error, 130 on Ctrl-C, and
    ``128 + signal`` when training stopped on a signal after writing a checkpoint (the trainer printed where)."""
    from tokenizer_zoo.training.preemption import TrainingPreempted

    argv, verbose = split_verbose(sys.argv[1:] if argv is None else list(argv))
    try:
        main(argv)
    except TrainingPreempted as error:
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # every failure becomes one line; --verbose adds the traceback
        return report(error, prog, verbose)
    return 0


class ConversionError(ValueError):
    """A release checkpoint or config that cannot be converted; the message is one line naming the file."""
