"""MaskGiTPipeline: class labels -> tokens (MaskGiT) -> images (the tokenizer's pipeline).

    pipe = MaskGiTPipeline.from_pretrained("outputs/maskgit_digits/pipeline")
    images = pipe([3, 1, 4], num_steps=8, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))

A saved folder holds the MaskGiT model and the whole tokenizer pipeline beside it:

    maskgit_pipeline.json   {"format_version": 1, "tokenizer_class": "FlowMoPipeline", "info": {...},
                             "sampling_defaults": {"num_steps": 8, "guidance_scale": 2.0, ...}}
    maskgit/                MaskGiT (diffusers config.json + safetensors)
    tokenizer/              FlowMoPipeline or TokenizerPipeline folder (model_index.json, ...)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download

from tokenizer_zoo.generation.maskgit import MaskGiT
from tokenizer_zoo.pipelines.base import pop_download_kwargs
from tokenizer_zoo.pipelines.flowmo import FlowMoPipeline
from tokenizer_zoo.pipelines.folders import INDEX_FILE, check_component_files, resolve_folder
from tokenizer_zoo.pipelines.hub import folder_metrics, metrics_section, push_to_hub
from tokenizer_zoo.pipelines.tokenizer import TokenizerPipeline
from tokenizer_zoo.tokens import signature_of
from tokenizer_zoo.validation import check_finite_weights

TOKENIZER_PIPELINES = {cls.__name__: cls for cls in (FlowMoPipeline, TokenizerPipeline)}
CONFIG_FILE = "maskgit_pipeline.json"
CONFIG_VERSION = 1


def load_tokenizer_pipeline(name_or_path: str | os.PathLike, **kwargs):
    """A FlowMoPipeline or TokenizerPipeline, whichever the folder (or Hub id) holds."""
    download = pop_download_kwargs(kwargs)
    folder = resolve_folder(name_or_path, lambda name: FlowMoPipeline.download(name, **download))
    check_component_files(folder)
    class_name = json.loads((folder / INDEX_FILE).read_text()).get("_class_name")
    if class_name not in TOKENIZER_PIPELINES:
        raise ValueError(f"{folder} holds a {class_name}, not a tokenizer pipeline ({', '.join(TOKENIZER_PIPELINES)})")
    return TOKENIZER_PIPELINES[class_name].from_pretrained(folder, **kwargs)


def check_tokens_match(maskgit: MaskGiT, tokenizer) -> None:
    """Raise ValueError when ``maskgit`` was not made for ``tokenizer``'s tokens."""
    signature = signature_of(tokenizer)
    expected = (tuple(maskgit.config.token_shape), maskgit.config.index_vocab_size)
    found = (signature.token_shape, int(tokenizer.quantizer.vocab_size))
    if signature.token_shape is not None and expected != found:
        raise ValueError(f"the MaskGiT model generates tokens of shape {expected[0]} with {expected[1]} values per "
                         f"index, but the tokenizer makes tokens of shape {found[0]} with {found[1]} values: "
                         "pair the model with the tokenizer whose tokens it was trained on")


class MaskGiTPipeline:
    """A class-conditional image generator: a :class:`MaskGiT` over the tokens of ``tokenizer``."""

    sampling_defaults = {"num_steps": 8, "guidance_scale": 2.0, "temperature": 1.0, "choice_temperature": 4.5}

    def __init__(self, maskgit: MaskGiT, tokenizer, info: dict[str, Any] | None = None):
        check_tokens_match(maskgit, tokenizer)
        self.maskgit, self.tokenizer = maskgit, tokenizer
        self.info = dict(info or {})
        self.source_folder: Path | None = None

    @property
    def device(self) -> torch.device:
        return self.maskgit.device

    @property
    def image_size(self) -> int:
        return self.tokenizer.image_size

    def to(self, device) -> "MaskGiTPipeline":
        self.maskgit.to(device)
        self.tokenizer.to(device)
        return self

    def set_progress_bar_config(self, **kwargs) -> None:
        self.tokenizer.set_progress_bar_config(**kwargs)

    def generate_tokens(self, class_labels, generator: torch.Generator | None = None, **sampling) -> torch.Tensor:
        """Token indices (b, *token_shape) for ``class_labels`` (ints; see ``sampling_defaults``)."""
        settings = {**self.sampling_defaults, **sampling}
        self.maskgit.eval()
        return self.maskgit.generate(class_labels, generator=generator, **settings)

    @torch.no_grad()
    def __call__(self, class_labels, generator: torch.Generator | None = None, output_type: str = "pil",
                 decode_kwargs: dict[str, Any] | None = None, **sampling):
        """Images of the classes ``class_labels``: MaskGiT's tokens decoded by the tokenizer
        (``decode_kwargs`` go to its ``decode``, e.g. ``num_inference_steps`` for FlowMo)."""
        tokens = self.generate_tokens(class_labels, generator=generator, **sampling)
        return self.tokenizer.decode(tokens, generator=generator, output_type=output_type, **(decode_kwargs or {}))

    # --- saving and loading -----------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.maskgit.save_pretrained(folder / "maskgit", safe_serialization=True)
        self.tokenizer.save_pretrained(folder / "tokenizer")
        config = {"format_version": CONFIG_VERSION, "tokenizer_class": type(self.tokenizer).__name__, "info": self.info,
                  "sampling_defaults": self.sampling_defaults}
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs) -> "MaskGiTPipeline":
        """Load from a local folder or a Hub id (the local cache is used with ``HF_HUB_OFFLINE=1``)."""
        download = pop_download_kwargs(kwargs)
        folder = resolve_folder(name_or_path, lambda name: snapshot_download(name, **download))
        path = folder / CONFIG_FILE
        if not path.is_file():
            raise ValueError(f"{folder} has no {CONFIG_FILE}: give a folder written by MaskGiTPipeline.save_pretrained")
        config = json.loads(path.read_text())
        if config.get("format_version") != CONFIG_VERSION:
            raise ValueError(f"{path} has format_version {config.get('format_version')!r}; this tokenizer-zoo reads "
                             f"version {CONFIG_VERSION}. Upgrade tokenizer-zoo or re-save the pipeline.")
        tokenizer = load_tokenizer_pipeline(folder / "tokenizer", **kwargs)
        maskgit = MaskGiT.from_pretrained(folder / "maskgit", use_safetensors=True)
        check_finite_weights(maskgit.state_dict(), folder / "maskgit")
        pipe = cls(maskgit, tokenizer, config.get("info"))
        pipe.sampling_defaults = {**cls.sampling_defaults, **config.get("sampling_defaults", {})}
        pipe.source_folder = folder
        return pipe

    def model_card(self, repo_id: str) -> str:
        """Markdown: what generates what, from which data, the sampling defaults and measured metrics."""
        config, metrics = self.maskgit.config, folder_metrics(self)
        lines = ["---", "library_name: tokenizer-zoo", "tags:", "- maskgit", "- class-conditional-image-generation",
                 "---", "", f"# {repo_id.split('/')[-1]}", "",
                 f"A class-conditional MaskGiT of [tokenizer-zoo] over the tokens of a `{type(self.tokenizer).__name__}` "
                 f"(preset `{self.tokenizer.info.get('preset', 'unknown')}`, {self.image_size} px).", "",
                 "| | |", "|---|---|",
                 f"| classes | {config.num_classes} |",
                 f"| tokens per image | {list(config.token_shape)} as {self.maskgit.seq_len} sub-tokens "
                 f"(radices {self.maskgit.split.radices}) |",
                 f"| training data | {self.info.get('dataset', 'unknown')} |",
                 f"| training steps | {self.info.get('steps', 'unknown')} |", "",
                 "## Sampling defaults", "", "| setting | value |", "|---|---|",
                 *[f"| {k} | {v} |" for k, v in self.sampling_defaults.items()], "", *metrics_section(metrics),
                 "", "## Use", "", "```python", "from tokenizer_zoo.pipelines import MaskGiTPipeline", "",
                  f'pipe = MaskGiTPipeline.from_pretrained("{repo_id}")', "images = pipe([0, 1, 2])", "```", ""]
        return "\n".join(lines)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload the pipeline folder with a model card (and ``metrics.json`` when metrics are known)."""
        return push_to_hub(self, repo_id, card=self.model_card, **kwargs)
