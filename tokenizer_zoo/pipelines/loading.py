"""One loader for every pipeline folder of the zoo, by the ``_class_name`` of its ``model_index.json``.

    pipe = load_pipeline("outputs/flowmo_1a_tiny/pipeline")     # FlowMoPipeline, TokenizerPipeline or MaskGiTPipeline
    tokenizer = load_pipeline(folder, kinds=TOKENIZER_PIPELINES)  # refuses other kinds with a clear error

``diffusers.DiffusionPipeline.from_pretrained(folder)`` looks the class name up as an attribute of the
diffusers package, so importing this module registers the zoo's pipeline classes there; it then
loads these folders too. This function (or ``FlowMoPipeline.from_pretrained`` etc.) also runs the
zoo's checks: the folder's files, plugins, finite weights, and the saved ``info`` of the model card.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from diffusers import DiffusionPipeline

from tokenizer_zoo.pipelines.base import pop_download_kwargs
from tokenizer_zoo.pipelines.flowmo import FlowMoPipeline
from tokenizer_zoo.pipelines.folders import resolve_folder
from tokenizer_zoo.pipelines.maskgit import LEGACY_CONFIG, MaskGiTPipeline
from tokenizer_zoo.pipelines.tokenizer import TokenizerPipeline

PIPELINES = {cls.__name__: cls for cls in (FlowMoPipeline, TokenizerPipeline, MaskGiTPipeline)}
TOKENIZER_PIPELINES = ("FlowMoPipeline", "TokenizerPipeline")


def register_with_diffusers() -> None:
    """Make ``diffusers.<ClassName>`` resolve to the zoo's pipelines, where DiffusionPipeline looks."""
    import diffusers

    for name, cls in PIPELINES.items():
        if getattr(diffusers, name, None) is None:
            setattr(diffusers, name, cls)


register_with_diffusers()


def pipeline_class(folder: str | os.PathLike, kinds: tuple[str, ...] = tuple(PIPELINES)) -> type:
    """The pipeline class named by ``folder/model_index.json`` (ValueError when it is missing or not in ``kinds``)."""
    index = Path(folder) / "model_index.json"
    if not index.is_file() and (Path(folder) / LEGACY_CONFIG).is_file() and "MaskGiTPipeline" in kinds:
        return MaskGiTPipeline  # a MaskGiT folder of the earlier layout
    if not index.is_file():
        raise ValueError(f"{folder} has no model_index.json: give a pipeline folder written by save_pretrained "
                         "(a recipe's output_dir/pipeline)")
    try:
        class_name = json.loads(index.read_text()).get("_class_name")
    except json.JSONDecodeError as error:
        raise ValueError(f"{index} is not valid JSON ({error}); re-save the pipeline with save_pretrained") from None
    if class_name not in kinds:
        raise ValueError(f"{folder} holds a {class_name}; expected one of {', '.join(kinds)}")
    return PIPELINES[class_name]


def load_pipeline(name_or_path: str | os.PathLike, kinds: tuple[str, ...] = tuple(PIPELINES), **kwargs):
    """The pipeline of a local folder or Hub id, of the class its ``model_index.json`` names."""
    download = pop_download_kwargs(kwargs)
    folder = resolve_folder(name_or_path, lambda name: DiffusionPipeline.download(name, **download))
    return pipeline_class(folder, kinds).from_pretrained(folder, **kwargs)
