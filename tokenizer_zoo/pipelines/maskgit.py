"""MaskGiTPipeline: class labels -> tokens (MaskGiT) -> images (the tokenizer's pipeline).

    pipe = MaskGiTPipeline.from_pretrained("outputs/maskgit_digits/pipeline")
    images = pipe([3, 1, 4], num_inference_steps=8, guidance_scale=2.0,
                  generator=torch.Generator().manual_seed(0)).images

A ``DiffusionPipeline`` of two components, saved by diffusers beside ``model_index.json`` (whose config
holds the sampling defaults ``num_inference_steps``, ``guidance_scale``, ``temperature``,
``choice_temperature``):

    maskgit/      MaskGiT (diffusers config.json + safetensors)
    tokenizer/    the FlowMoPipeline or TokenizerPipeline folder (model_index.json, ...)

Folders of the earlier layout (``maskgit_pipeline.json`` instead of ``model_index.json``) still load;
``save_pretrained`` writes them in this one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput

from tokenizer_zoo.generation.maskgit import MaskGiT
from tokenizer_zoo.pipelines.arguments import check_arguments
from tokenizer_zoo.pipelines.base import ZooPipelineMixin
from tokenizer_zoo.pipelines.hub import folder_metrics, metrics_section, push_to_hub
from tokenizer_zoo.tokens import signature_of
from tokenizer_zoo.validation import check_finite_weights

LEGACY_CONFIG = "maskgit_pipeline.json"  # the layout before MaskGiTPipeline was a DiffusionPipeline


def check_tokens_match(maskgit: MaskGiT, tokenizer) -> None:
    """Raise ValueError when ``maskgit`` was not made for ``tokenizer``'s tokens."""
    signature = signature_of(tokenizer)
    expected = (tuple(maskgit.config.token_shape), maskgit.config.index_vocab_size)
    found = (signature.token_shape, int(tokenizer.quantizer.vocab_size))
    if signature.token_shape is not None and expected != found:
        raise ValueError(f"the MaskGiT model generates tokens of shape {expected[0]} with {expected[1]} values per "
                         f"index, but the tokenizer makes tokens of shape {found[0]} with {found[1]} values: "
                         "pair the model with the tokenizer whose tokens it was trained on")


class MaskGiTPipeline(ZooPipelineMixin, DiffusionPipeline):
    """A class-conditional image generator: a :class:`MaskGiT` over the tokens of ``tokenizer``."""

    def __init__(self, maskgit: MaskGiT, tokenizer: DiffusionPipeline, num_inference_steps: int = 8,
                 guidance_scale: float = 2.0, temperature: float = 1.0, choice_temperature: float = 4.5):
        super().__init__()
        check_tokens_match(maskgit, tokenizer)
        self.register_modules(maskgit=maskgit, tokenizer=tokenizer)
        self.register_to_config(num_inference_steps=int(num_inference_steps), guidance_scale=float(guidance_scale),
                                temperature=float(temperature), choice_temperature=float(choice_temperature))
        self.info: dict[str, Any] = {}

    @property
    def sampling_defaults(self) -> dict:
        """The MaskGiT settings ``__call__`` uses when not given (the pipeline's config)."""
        return {key: self.config[key] for key in ("num_inference_steps", "guidance_scale", "temperature",
                                                  "choice_temperature")}

    @property
    def image_size(self) -> int:
        return self.tokenizer.image_size

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> "MaskGiTPipeline":
        """Load a folder or Hub id; a local folder of the earlier layout (``maskgit_pipeline.json``) too."""
        folder = Path(pretrained_model_name_or_path)
        if (folder / LEGACY_CONFIG).is_file() and not (folder / "model_index.json").is_file():
            return cls._from_legacy_folder(folder, **kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def _from_legacy_folder(cls, folder: Path, **kwargs) -> "MaskGiTPipeline":
        from tokenizer_zoo.pipelines.loading import TOKENIZER_PIPELINES, load_pipeline

        config = json.loads((folder / LEGACY_CONFIG).read_text())
        defaults = dict(config.get("sampling_defaults", {}))
        if "num_steps" in defaults:  # renamed to diffusers' name
            defaults["num_inference_steps"] = defaults.pop("num_steps")
        tokenizer = load_pipeline(folder / "tokenizer", kinds=TOKENIZER_PIPELINES, **kwargs)
        maskgit = MaskGiT.from_pretrained(folder / "maskgit", use_safetensors=True)
        check_finite_weights(maskgit.state_dict(), folder / "maskgit")
        pipe = cls(maskgit, tokenizer, **defaults)
        pipe.info = config.get("info", {})
        return pipe

    def to(self, *args, **kwargs) -> "MaskGiTPipeline":
        self.tokenizer.to(*args, **kwargs)  # a pipeline, which diffusers' `to` does not move
        return super().to(*args, **kwargs)

    def set_progress_bar_config(self, **kwargs) -> None:
        super().set_progress_bar_config(**kwargs)
        self.tokenizer.set_progress_bar_config(**kwargs)

    @check_arguments()
    def generate_tokens(self, class_labels, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                        temperature: float | None = None, choice_temperature: float | None = None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """Token indices (b, *token_shape) for ``class_labels`` (ints); settings left out come from the config."""
        given = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
                 "temperature": temperature, "choice_temperature": choice_temperature}
        settings = {**self.sampling_defaults, **{k: v for k, v in given.items() if v is not None}}
        self.maskgit.eval()
        return self.maskgit.generate(class_labels, num_steps=settings.pop("num_inference_steps"),
                                     generator=generator, **settings)

    @check_arguments(generate_tokens)
    @torch.no_grad()
    def __call__(self, class_labels, generator: torch.Generator | None = None, output_type: str = "pil",
                 return_dict: bool = True, decode_kwargs: dict[str, Any] | None = None,
                 **sampling) -> ImagePipelineOutput | tuple:
        """Images of the classes ``class_labels``: MaskGiT's tokens decoded by the tokenizer.
        ``sampling``: the settings of :meth:`generate_tokens`; ``decode_kwargs`` go to the tokenizer's
        ``decode`` (e.g. ``{"num_inference_steps": 25}`` for FlowMo)."""
        tokens = self.generate_tokens(class_labels, generator=generator, **sampling)
        return self.tokenizer.decode(tokens, generator=generator, output_type=output_type, return_dict=return_dict,
                                     **(decode_kwargs or {}))

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
                 f'pipe = MaskGiTPipeline.from_pretrained("{repo_id}")', "images = pipe([0, 1, 2]).images", "```", ""]
        return "\n".join(lines)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload the pipeline folder with a model card (and ``metrics.json`` when metrics are known)."""
        return push_to_hub(self, repo_id, card=self.model_card, **kwargs)
