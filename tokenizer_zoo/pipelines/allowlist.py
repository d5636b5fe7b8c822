"""Which classes a pipeline folder may name, checked before anything named by the folder is imported.

diffusers imports the module that each component entry ``[library, class]`` of ``model_index.json``
names, so a folder from anywhere could make it import any module (``"encoder": ["os", "system"]``).
The zoo's pipelines check every such entry first, against what this installation provides:

* ``encoder``, ``quantizer``, ``decoder``: the classes of the registries, installed plugins included;
* ``scheduler``: the registered samplers and diffusers' own schedulers;
* ``maskgit`` and ``tokenizer`` (a :class:`~tokenizer_zoo.pipelines.MaskGiTPipeline`): the MaskGiT
  model and the zoo's tokenizer pipelines.

The check runs in the pipelines' ``extract_init_dict``, the first thing diffusers asks the pipeline
class about a folder's config, so ``DiffusionPipeline.from_pretrained`` is covered as well as
``load_pipeline`` and each pipeline's ``from_pretrained``.
"""

from __future__ import annotations

import warnings
from typing import Any

from tokenizer_zoo.registry import ALL_REGISTRIES

REGISTRY_OF_COMPONENT = {"encoder": "encoders", "quantizer": "quantizers", "decoder": "decoders", "scheduler": "samplers"}


class ForbiddenComponentError(ValueError):
    """A pipeline folder names a class that neither the zoo nor an installed plugin provides."""


def is_component_entry(entry: Any) -> bool:
    """True for a component entry of ``model_index.json`` (``[library, class]``), not a config value (a list of
    numbers, or ``[None, None]`` for an unset component)."""
    return isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry)


def _registered(group: str) -> set[tuple[str, str]]:
    registry = ALL_REGISTRIES[group]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a broken plugin just provides nothing here
        classes = [registry.get(name) for name in registry.names()]
    return {(cls.__module__, cls.__name__) for cls in classes}


def _diffusers_schedulers() -> set[tuple[str, str]]:
    """diffusers' schedulers by the names its package exports; listing them imports nothing."""
    import diffusers

    return {("diffusers", name) for name in dir(diffusers) if name.endswith("Scheduler")}


def allowed_classes(component: str) -> set[tuple[str, str]]:
    """The ``(module, class)`` pairs a folder may name for ``component`` (empty for an unknown component)."""
    if component in REGISTRY_OF_COMPONENT:
        allowed = _registered(REGISTRY_OF_COMPONENT[component])
        return allowed | _diffusers_schedulers() if component == "scheduler" else allowed
    if component == "maskgit":
        from tokenizer_zoo.generation.maskgit import MaskGiT

        return {(MaskGiT.__module__, MaskGiT.__name__)}
    if component == "tokenizer":
        from tokenizer_zoo.pipelines.flowmo import FlowMoPipeline
        from tokenizer_zoo.pipelines.tokenizer import TokenizerPipeline

        return {(cls.__module__, cls.__name__) for cls in (FlowMoPipeline, TokenizerPipeline)}
    return set()


def _shown(allowed: set[tuple[str, str]]) -> str:
    names = sorted(f"{module}.{name}" for module, name in allowed if module != "diffusers")
    if any(module == "diffusers" for module, _ in allowed):
        names.append("a diffusers scheduler")
    return ", ".join(names) or "nothing (no zoo pipeline has such a component)"


def check_component_classes(config: dict[str, Any], pipeline: str, plugin_hints: dict[str, str] | None = None) -> None:
    """Raise :class:`ForbiddenComponentError` (one line naming the component, what the folder asks for and what
    is allowed) when a component entry of ``config`` (a ``model_index.json``) is not a class this installation
    provides. ``plugin_hints``: component -> distribution, from the folder's ``tokenizer_zoo.json``, named as the
    package to install when the class is unknown."""
    for component, entry in config.items():
        if component.startswith("_") or not is_component_entry(entry):
            continue
        allowed = allowed_classes(component)
        if tuple(entry) in allowed:
            continue
        hint = (plugin_hints or {}).get(component)
        fix = (f"if it comes from the plugin {hint!r}, install it (pip install {hint}); otherwise" if hint else
               "install the plugin that provides it, or")
        raise ForbiddenComponentError(
            f"the {pipeline} folder's {component} is {entry[0]}.{entry[1]} (model_index.json), which is not a class "
            f"this installation provides, so it is not imported; allowed for {component}: {_shown(allowed)}. "
            f"{fix[0].upper() + fix[1:]} re-save the pipeline with save_pretrained")
