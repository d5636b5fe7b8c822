"""Keyword arguments of pipeline calls: an unknown name is a TypeError that names the closest valid one."""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import Callable, Iterable

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def parameter_names(function: Callable) -> set[str]:
    """The arguments ``function`` takes by name (``self`` excluded; for a checked method, all it accepts)."""
    if hasattr(function, "valid_arguments"):
        return set(function.valid_arguments)
    return {p.name for p in inspect.signature(function).parameters.values() if p.kind in _NAMED} - {"self"}


def unknown_argument_error(where: str, name: str, valid: Iterable[str]) -> TypeError:
    """TypeError for the unknown keyword ``name`` of ``where``, naming the closest of ``valid``."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"valid arguments: {', '.join(valid)}"
    return TypeError(f"{where}() got an unexpected keyword argument {name!r}; {hint}")


def check_arguments(*also: Callable, extra: tuple[str, ...] = ()) -> Callable:
    """Decorator: keyword arguments must be parameters of the method, of the functions ``also`` (whose
    arguments a ``**kwargs`` of the method passes on) or in ``extra``."""

    def decorate(method: Callable) -> Callable:
        valid = parameter_names(method).union(*map(parameter_names, also), extra)

        @functools.wraps(method)
        def checked(*args, **kwargs):
            for name in kwargs:
                if name not in valid:
                    raise unknown_argument_error(method.__qualname__, name, valid)
            return method(*args, **kwargs)

        checked.valid_arguments = frozenset(valid)
        return checked

    return decorate
