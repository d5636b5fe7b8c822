"""Publishing to the Hugging Face Hub: a model card built from what the pipeline knows."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

from huggingface_hub import create_repo, upload_folder

METRICS_FILE = "metrics.json"


def folder_metrics(pipe) -> dict[str, Any]:
    """Metrics in ``pipe.info["metrics"]`` and in ``metrics.json`` of the folder it was loaded from."""
    metrics = dict(pipe.info.get("metrics", {}))
    source = getattr(pipe, "source_folder", None)
    if source is not None and (Path(source) / METRICS_FILE).is_file():
        metrics.update(json.loads((Path(source) / METRICS_FILE).read_text()))
    return metrics


def _sampler_defaults(pipe) -> dict[str, Any]:
    scheduler = getattr(pipe, "scheduler", None)
    if scheduler is None:
        return {"decoder": "one pass (no sampling)"}
    return {"scheduler": type(scheduler).__name__, **pipe.sampling_defaults}


def metrics_section(metrics: dict[str, Any]) -> list[str]:
    """The ``## Metrics`` lines of a model card: a table, or a line saying there are none."""
    if not metrics:
        return ["## Metrics", "", "No metrics were measured for this folder."]
    return ["## Metrics", "", "| metric | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in sorted(metrics.items())]]


def model_card(pipe, repo_id: str) -> str:
    """Markdown model card: preset, BPP, training data, sampler defaults and measured metrics."""
    info = pipe.info
    bpp = pipe.bpp_label  # "continuous (N floats)" for continuous codes
    metrics = folder_metrics(pipe)
    lines = [
        "---", "library_name: tokenizer-zoo", "tags:", "- image-tokenizer", "- tokenizer-zoo", "---", "",
        f"# {repo_id.split('/')[-1]}", "",
        f"An image tokenizer of [tokenizer-zoo]; pipeline `{type(pipe).__name__}`.", "",
        "| | |", "|---|---|",
        f"| preset | `{info.get('preset', 'unknown')}` |",
        f"| image size | {pipe.image_size} px |",
        f"| bits per pixel (BPP) | {bpp} |",
        f"| training data | {info.get('dataset', 'unknown')} |",
        f"| training steps | {info.get('steps', 'unknown')} |", "",
        "## Sampler defaults", "", "| setting | value |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in _sampler_defaults(pipe).items()], "",
        *metrics_section(metrics),
    ]
    lines += ["", "## Use", "", "```python", f"from tokenizer_zoo.pipelines import {type(pipe).__name__}", "",
              f'pipe = {type(pipe).__name__}.from_pretrained("{repo_id}")', "tokens = pipe.encode(images)",
              "reconstructions = pipe.decode(tokens).images", "```", ""]
    return "\n".join(lines)


def push_to_hub(pipe, repo_id: str, commit_message: str | None = None, private: bool | None = None,
                token: str | None = None, create_pr: bool = False, card: Callable[[str], str] | None = None):
    """Save ``pipe`` (safetensors), add the model card (``card(repo_id)``, by default the tokenizer
    card of :func:`model_card`) and any metrics file, and upload the folder."""
    repo_id = create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as folder:
        pipe.save_pretrained(folder)
        metrics = folder_metrics(pipe)
        if metrics:
            (Path(folder) / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
        (Path(folder) / "README.md").write_text(card(repo_id) if card else model_card(pipe, repo_id))
        return upload_folder(repo_id=repo_id, folder_path=folder, token=token, create_pr=create_pr,
                             commit_message=commit_message or f"Upload {type(pipe).__name__}")
