"""Registries of components, with lazy entry-point discovery for third-party plugins.

This module holds the package's only global state: one :class:`Registry` per kind of
component. Built-in components register themselves with a decorator::

    @QUANTIZERS.register("lfq")
    class LFQuantizer(ModelMixin, ConfigMixin): ...

Third-party packages add components through the entry-point group of the registry, e.g. in
their ``pyproject.toml``::

    [project.entry-points."tokenizer_zoo.quantizers"]
    bsq = "tokenizer_zoo_bsq:BSQuantizer"

The group is read once, the first time a name is missing or the full list is asked for. An
entry point either points at a module whose import registers components, or directly at a
class, which is then registered under the entry point's name. A plugin that fails to import
is reported (with its distribution and the exception) and the other plugins keep working. A name
that two plugin distributions both provide is given to neither (the error names both).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import warnings
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

T = TypeVar("T")

CORE_DISTRIBUTION = "tokenizer-zoo"


class RegistryError(KeyError):
    """An unknown or duplicate name. ``str()`` gives the full message (KeyError quotes it otherwise)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PluginImportError(ImportError):
    """A component's plugin is installed but could not be imported."""


@dataclass(frozen=True)
class PluginFailure:
    """An entry point that could not be loaded."""

    name: str
    distribution: str
    target: str
    error: BaseException

    def describe(self) -> str:
        return (
            f"plugin {self.name!r} ({self.target}) from distribution {self.distribution!r} failed to "
            f"load: {type(self.error).__name__}: {self.error}. Reinstall or fix that package, or "
            f"uninstall it (pip uninstall {self.distribution})."
        )


def _distribution_of(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    return dist.metadata["Name"] if dist is not None else "<unknown distribution>"


class Registry:
    """A name -> component mapping for one kind of component (encoder, quantizer, ...)."""

    def __init__(self, kind: str, group: str):
        self.kind = kind
        self.group = group
        self._entries: dict[str, Any] = {}
        self._sources: dict[str, str] = {}
        self._failures: dict[str, PluginFailure] = {}
        self._loading_distribution: str | None = None
        self._entry_points_loaded = False

    # --- registration -------------------------------------------------------------------
    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; used bare as a decorator when ``obj`` is omitted."""

        def add(target: T) -> T:
            if not isinstance(name, str) or not name:
                raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")
            existing = self._entries.get(name)
            if existing is not None and existing is not target:
                raise RegistryError(
                    f"{self.kind} {name!r} is already registered to {_qualname(existing)} "
                    f"(from {self._sources[name]}); pick another name for {_qualname(target)}."
                )
            self._entries[name] = target
            self._sources[name] = self._loading_distribution or _distribution_for_module(target)
            return target

        return add if obj is None else add(obj)

    # --- lookup ---------------------------------------------------------------------------
    def get(self, name: str) -> Any:
        """The component registered under ``name``; loads plugins once if it is not known yet."""
        if name not in self._entries:
            self.load_entry_points()
        if name in self._entries:
            return self._entries[name]
        if name in self._failures:
            raise PluginImportError(f"{self.kind} {name!r} is unavailable: {self._failures[name].describe()}")
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise RegistryError(
            f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(known) or '(none)'}. "
            f"Third-party {self.kind}s register through the entry-point group {self.group!r}."
        )

    def build(self, name: str, /, **kwargs: Any) -> Any:
        """Instantiate the component ``name`` with keyword arguments."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        """Sorted names of every registered component, plugins included."""
        self.load_entry_points()
        return sorted(self._entries)

    def source(self, name: str) -> str:
        """The distribution that provides ``name``."""
        self.get(name)
        return self._sources[name]

    def name_of(self, obj: Any) -> str | None:
        """The name under which ``obj`` (a class) is registered, if any."""
        self.load_entry_points()
        return next((n for n, o in self._entries.items() if o is obj), None)

    @property
    def failures(self) -> list[PluginFailure]:
        """Entry points of this group that failed to load."""
        self.load_entry_points()
        return list(self._failures.values())

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except (RegistryError, PluginImportError):
            return False
        return True

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r}, names={sorted(self._entries)})"

    # --- plugins --------------------------------------------------------------------------
    def load_entry_points(self, force: bool = False) -> None:
        """Import every entry point of the group, once (again with ``force=True``)."""
        if self._entry_points_loaded and not force:
            return
        self._entry_points_loaded = True
        entry_points = importlib.metadata.entry_points(group=self.group)
        # built-ins first, so a plugin can never take over a core name
        for entry_point in sorted(entry_points, key=lambda ep: _distribution_of(ep) != CORE_DISTRIBUTION):
            self._load_one(entry_point)

    def _load_one(self, entry_point: importlib.metadata.EntryPoint) -> None:
        distribution = _distribution_of(entry_point)
        self._loading_distribution = distribution
        try:
            loaded = entry_point.load()
            if isinstance(loaded, type) and loaded not in self._entries.values():
                self._refuse_a_second_plugin(entry_point.name, distribution)
                self.register(entry_point.name, loaded)
        except Exception as error:  # a broken or clashing plugin must not break the others
            failure = PluginFailure(entry_point.name, distribution, entry_point.value, error)
            self._failures[entry_point.name] = failure
            warnings.warn(failure.describe(), RuntimeWarning, stacklevel=3)
        finally:
            self._loading_distribution = None

    def _refuse_a_second_plugin(self, name: str, distribution: str) -> None:
        """A name two plugin distributions provide is ambiguous: neither gets it (the core keeps its own names)."""
        owner = self._sources.get(name)
        if owner is None or owner in (CORE_DISTRIBUTION, distribution):
            return
        self._entries.pop(name, None)  # the source stays recorded, so a third claimant is refused too
        raise RegistryError(
            f"{self.kind} {name!r} is provided by two distributions, {owner!r} and {distribution!r}; uninstall one "
            f"(pip uninstall {distribution}) or rename the entry point in one of them."
        )


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _distribution_for_module(obj: Any) -> str:
    top = (getattr(obj, "__module__", "") or "").split(".")[0]
    if top == "tokenizer_zoo":
        return CORE_DISTRIBUTION
    names = importlib.metadata.packages_distributions().get(top)
    return names[0] if names else f"<module {top}>"


ENCODERS = Registry("encoder", "tokenizer_zoo.encoders")
QUANTIZERS = Registry("quantizer", "tokenizer_zoo.quantizers")
DECODERS = Registry("decoder", "tokenizer_zoo.decoders")
SAMPLERS = Registry("sampler", "tokenizer_zoo.samplers")

PIPELINES = Registry("pipeline", "tokenizer_zoo.pipelines")
"""Pipeline classes by class name, for code below ``pipelines/`` (``convert/``) that builds them; not a component
registry, so not in :data:`ALL_REGISTRIES`."""

ALL_REGISTRIES = {"encoders": ENCODERS, "quantizers": QUANTIZERS, "decoders": DECODERS, "samplers": SAMPLERS}
