"""Named tokenizer configurations (timm style): ``get_preset("flowmo_lo")``, ``build_tokenizer("flowmo_lo")``.

A preset is a :class:`TokenizerPreset`: the image size plus a registry name and keyword arguments
for the encoder, quantizer and decoder. Each preset is a tiny function registered in
:data:`PRESETS` (third-party packages can add theirs through the entry-point group
``tokenizer_zoo.presets``). Every preset function accepts the overrides of
:meth:`TokenizerPreset.with_overrides`, e.g. ``flowmo_lo(patch_size=8)`` for the 2x-patch ablation.

| preset               | encoder H/depth | decoder H/depth | patch | image | tokens x bits | BPP     |
| flowmo_lo            | 768 / 8         | 1152 / 16       | 4     | 256   | 256 x 18      | 0.0703  |
| flowmo_hi            | 768 / 8         | 1152 / 16       | 4     | 256   | 256 x 56      | 0.2188  |
| flowmo_small         | 768 / 8         | 768 / 16        | 8     | 256   | 256 x 18      | 0.0703  |
| flowmo_small_patch16 | 768 / 8         | 768 / 16        | 16    | 256   | 256 x 18      | 0.0703  |
| flowmo_tiny          | 96 / 2          | 128 / 3         | 4     | 32    | 16 x 18       | 0.2813  |

Baselines (:data:`BASELINE_PRESETS`), each at exactly the BPP of the FlowMo preset it names:

| preset       | encoder                 | quantizer        | decoder                   | image | tokens x bits | BPP    | as          |
| cnn_lfq_lo   | cnn f16, 26.1 M         | lfq 18 (2 x 9)   | cnn f16, 38.2 M           | 256   | 256 x 18      | 0.0703 | flowmo_lo   |
| cnn_lfq_hi   | cnn f16, 26.3 M         | lfq 56 (4 x 14)  | cnn f16, 38.4 M           | 256   | 256 x 56      | 0.2188 | flowmo_hi   |
| cnn_fsq_lo   | cnn f16, 26.0 M         | fsq 8^6          | cnn f16, 38.1 M           | 256   | 256 x 18      | 0.0703 | flowmo_lo   |
| cnn_fsq_hi   | cnn f16, 26.1 M         | fsq 8^18 x 4     | cnn f16, 38.2 M           | 256   | 256 x 56      | 0.2188 | flowmo_hi   |
| cnn_lfq_tiny | cnn f8, 1.14 M          | lfq 18 (2 x 9)   | cnn f8, 1.88 M            | 32    | 16 x 18       | 0.2813 | flowmo_tiny |
| cnn_fsq_tiny | cnn f8, 1.13 M          | fsq 8^6          | cnn f8, 1.87 M            | 32    | 16 x 18       | 0.2813 | flowmo_tiny |
| titok_lo     | flowmo 768/8, 107.5 M   | lfq 18 (2 x 9)   | regression 1152/16, 501 M | 256   | 256 x 18      | 0.0703 | flowmo_lo   |
| titok_hi     | flowmo 768/8, 107.6 M   | lfq 56 (4 x 14)  | regression 1152/16, 502 M | 256   | 256 x 56      | 0.2188 | flowmo_hi   |
| titok_tiny   | flowmo 96/2, 0.36 M     | lfq 18 (2 x 9)   | regression 128/3, 1.04 M  | 32    | 16 x 18       | 0.2813 | flowmo_tiny |

Reference codec (no parameters): ``thumbnail_tiny``, the 4 x 4 mean colours at flowmo_tiny's 16 x 18 bits
(FSQ 64^3), upsampled bicubically (:func:`thumbnail_preset` for other grids and bit counts).

The CNN presets use VQGAN's f=16 layout (channels 128-128-256-256-512, 2 ResNet blocks a level); the
regression decoder has the FlowMo decoder's width and depth without time modulation (so fewer
parameters). There is no VQ preset: equal BPP needs 18 bits per token on a square grid (f=16 at
256 px, f=8 at 32 px), i.e. a 2^18-entry codebook (2^56 for Hi), far beyond the 2^10-2^14 codebooks
VQ trains well. VQ still works on any CNN preset, at its own BPP. The recommended VQ is
vector-quantize-pytorch's, from the tokenizer-zoo-vqtorch plugin, with k-means init, EMA and dead-code reset:
``build_tokenizer("cnn_lfq_tiny", quantizer_name="vqtorch_vq", quantizer={"dim": 18, "codebook_size": 1024,
"kmeans_init": True, "threshold_ema_dead_code": 0.05})``. The built-in ``quantizer_name="vq"`` (codebook
trained by its loss, no re-initialisation) used 1-2 of 1024 codes on held-out images after 40 steps on this
preset, that one 48-73% (benchmarks/results/codebook_usage.md).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

import tokenizer_zoo.decoders  # noqa: F401  (registers the built-in decoders)
import tokenizer_zoo.encoders  # noqa: F401  (registers the built-in encoders)
import tokenizer_zoo.quantizers  # noqa: F401  (registers the built-in quantizers)
from tokenizer_zoo.registry import DECODERS, ENCODERS, QUANTIZERS, Registry

PRESETS = Registry("preset", "tokenizer_zoo.presets")

# Overrides that several components share, and which components' keyword they set.
_SHARED = {
    "image_size": ("encoder", "decoder"),
    "patch_size": ("encoder", "decoder"),
    "code_length": ("encoder", "decoder"),
    "code_dim": ("encoder", "decoder"),
}
_PARTS = ("encoder", "quantizer", "decoder")


@dataclass(frozen=True)
class ComponentSpec:
    """A registry name and the keyword arguments (the component's config) to build it with."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenizerPreset:
    """What a tokenizer is made of. ``bpp`` = code_length * bits_per_token / (image_size ** 2)."""

    name: str
    image_size: int
    encoder: ComponentSpec
    quantizer: ComponentSpec
    decoder: ComponentSpec
    description: str = ""

    @property
    def code_length(self) -> int:
        return int(self.encoder.kwargs["code_length"])

    @property
    def bits_per_token(self) -> float:
        """From the quantizer itself (raises the quantizer's error for continuous codes)."""
        return float(QUANTIZERS.build(self.quantizer.name, **self.quantizer.kwargs).bits_per_token)

    @property
    def bpp(self) -> float:
        return self.code_length * self.bits_per_token / self.image_size**2

    def with_overrides(self, **overrides: Any) -> "TokenizerPreset":
        """A copy with changes. Accepted keys:

        * ``image_size``, ``patch_size``, ``code_length``, ``code_dim``: set in encoder and decoder
          (``code_dim`` also sets the quantizer's ``dim`` when it has one);
        * ``encoder``, ``quantizer``, ``decoder``: dicts merged into that component's kwargs;
        * ``encoder_name``, ``quantizer_name``, ``decoder_name``: another registered component, whose
          kwargs then start empty (give them with the dict of the same part);
        * ``name``, ``description``.
        """
        allowed = set(_SHARED) | set(_PARTS) | {f"{p}_name" for p in _PARTS} | {"name", "description"}
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise ValueError(f"unknown preset override(s) {unknown}; allowed: {sorted(allowed)}")
        specs = {part: getattr(self, part) for part in _PARTS}
        for part in _PARTS:
            new_name = overrides.get(f"{part}_name")
            kwargs = {} if new_name and new_name != specs[part].name else dict(specs[part].kwargs)
            kwargs.update(overrides.get(part) or {})
            specs[part] = ComponentSpec(new_name or specs[part].name, kwargs)
        for key, parts in _SHARED.items():
            if key in overrides:
                for part in parts:
                    specs[part].kwargs[key] = overrides[key]
        if "code_dim" in overrides and "dim" in specs["quantizer"].kwargs:
            specs["quantizer"].kwargs["dim"] = overrides["code_dim"]
        return dataclasses.replace(self, name=overrides.get("name", self.name),
                                   description=overrides.get("description", self.description),
                                   image_size=overrides.get("image_size", self.image_size), **specs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (for model cards and logs)."""
        return dataclasses.asdict(self)


@dataclass
class Tokenizer:
    """What :func:`build_tokenizer` returns."""

    encoder: torch.nn.Module
    quantizer: torch.nn.Module
    decoder: torch.nn.Module
    preset: TokenizerPreset


def register_preset(fn: Callable[[], TokenizerPreset]) -> Callable[..., TokenizerPreset]:
    """Register a zero-argument preset function under its name; the registered function takes overrides."""

    @functools.wraps(fn)
    def preset(**overrides: Any) -> TokenizerPreset:
        return fn().with_overrides(**overrides) if overrides else fn()

    PRESETS.register(fn.__name__, preset)
    return preset


def get_preset(name: str, /, **overrides: Any) -> TokenizerPreset:
    """The preset ``name`` with ``overrides`` applied (see :meth:`TokenizerPreset.with_overrides`)."""
    return PRESETS.build(name, **overrides)


def list_presets() -> list[str]:
    return PRESETS.names()


def build_tokenizer(preset: str | TokenizerPreset, /, **overrides: Any) -> Tokenizer:
    """Build encoder, quantizer and decoder of a preset (name or object) through the registries.

    Use ``with torch.device("meta"):`` around the call to inspect a large model without memory.
    """
    spec = get_preset(preset, **overrides) if isinstance(preset, str) else preset.with_overrides(**overrides)
    encoder = ENCODERS.build(spec.encoder.name, **spec.encoder.kwargs)
    quantizer = QUANTIZERS.build(spec.quantizer.name, **spec.quantizer.kwargs)
    decoder = DECODERS.build(spec.decoder.name, **spec.decoder.kwargs)
    code_dim = spec.encoder.kwargs.get("code_dim")
    quantizer_dim = getattr(quantizer, "dim", code_dim)
    if code_dim is not None and quantizer_dim != code_dim:
        raise ValueError(f"preset {spec.name!r}: encoder code_dim {code_dim} != quantizer dim {quantizer_dim}; "
                         f"override code_dim to change both")
    return Tokenizer(encoder=encoder, quantizer=quantizer, decoder=decoder, preset=spec)


def flowmo_preset(name: str, *, image_size: int, patch_size: int, encoder: tuple[int, int, int],
                  decoder: tuple[int, int, int], code_length: int, code_dim: int, bits_per_group: int,
                  mlp_ratio: float = 4.0, description: str = "") -> TokenizerPreset:
    """A FlowMo tokenizer with an LFQ quantizer; ``encoder``/``decoder`` are (hidden_size, depth, num_heads)."""

    def transformer(hidden_size: int, depth: int, num_heads: int) -> dict[str, Any]:
        return dict(image_size=image_size, patch_size=patch_size, hidden_size=hidden_size, depth=depth,
                    num_heads=num_heads, mlp_ratio=mlp_ratio, code_length=code_length, code_dim=code_dim)

    return TokenizerPreset(
        name=name, image_size=image_size, description=description,
        encoder=ComponentSpec("flowmo", transformer(*encoder)),
        quantizer=ComponentSpec("lfq", dict(dim=code_dim, bits_per_group=bits_per_group)),
        decoder=ComponentSpec("flowmo", transformer(*decoder)),
    )


@register_preset
def flowmo_lo() -> TokenizerPreset:
    return flowmo_preset("flowmo_lo", image_size=256, patch_size=4, encoder=(768, 8, 12), decoder=(1152, 16, 12),
                         code_length=256, code_dim=18, bits_per_group=9,
                         description="FlowMo-Lo: 256 tokens x 18 bits, 0.0703 BPP at 256 px")


@register_preset
def flowmo_hi() -> TokenizerPreset:
    return flowmo_lo(name="flowmo_hi", code_dim=56, quantizer={"bits_per_group": 14},
                     description="FlowMo-Hi: 256 tokens x 56 bits (1024 sub-tokens of 14 bits), 0.219 BPP")


@register_preset
def flowmo_small() -> TokenizerPreset:
    return flowmo_lo(name="flowmo_small", patch_size=8, decoder={"hidden_size": 768},
                     description="the paper's ablation model: patch 8, 768-wide decoder, 0.0703 BPP")


@register_preset
def flowmo_small_patch16() -> TokenizerPreset:
    return flowmo_small(name="flowmo_small_patch16", patch_size=16,
                        description="'2x patch' ablation of flowmo_small (patch 16)")


@register_preset
def flowmo_tiny() -> TokenizerPreset:
    return flowmo_preset("flowmo_tiny", image_size=32, patch_size=4, encoder=(96, 2, 3), decoder=(128, 3, 4),
                         code_length=16, code_dim=18, bits_per_group=9,
                         description="CPU smoke-test size: 32 px, 16 tokens x 18 bits; minutes of training show progress")


@register_preset
def flowmo_tiny_fsq() -> TokenizerPreset:
    return flowmo_tiny(name="flowmo_tiny_fsq", quantizer_name="fsq", quantizer={"levels": [8] * 6}, code_dim=6,
                       description="flowmo_tiny with FSQ 8^6 instead of LFQ (the same 16 tokens x 18 bits): the main "
                                   "job's preset, +0.7-0.9 dB held-out PSNR in 400 CPU steps")


# Baselines (issue 7): the same bit budgets as FlowMo with other encoders, quantizers and decoders.

def cnn_preset(name: str, *, image_size: int, block_out_channels: list[int], layers_per_block: int,
               norm_num_groups: int, quantizer: ComponentSpec, code_dim: int, description: str = "") -> TokenizerPreset:
    """A CNN autoencoder of the VQGAN family (``cnn`` encoder and decoder) around ``quantizer``.

    The downsampling factor is f = 2^(len(block_out_channels) - 1), so there are (image_size / f)^2 tokens.
    """
    grid = image_size // 2 ** (len(block_out_channels) - 1)
    cnn = dict(image_size=image_size, block_out_channels=list(block_out_channels), layers_per_block=layers_per_block,
               norm_num_groups=norm_num_groups, code_dim=code_dim, code_length=grid**2)
    return TokenizerPreset(name=name, image_size=image_size, description=description,
                           encoder=ComponentSpec("cnn", dict(cnn)), quantizer=quantizer,
                           decoder=ComponentSpec("cnn", dict(cnn)))


def titok_preset(flowmo: TokenizerPreset, name: str, description: str) -> TokenizerPreset:
    """``flowmo`` with its diffusion decoder replaced by a one-pass ``regression`` decoder of the same size."""
    return flowmo.with_overrides(name=name, description=description, decoder_name="regression",
                                 decoder=dict(flowmo.decoder.kwargs))


# VQGAN's f=16 layout (Esser et al. 2021): channels 128-128-256-256-512, two ResNet blocks per level.
_CNN_256 = dict(image_size=256, block_out_channels=[128, 128, 256, 256, 512], layers_per_block=2, norm_num_groups=32)
# 32 px at f=8 gives flowmo_tiny's 16 tokens.
_CNN_TINY = dict(image_size=32, block_out_channels=[32, 64, 64, 128], layers_per_block=1, norm_num_groups=16)


def _lfq(bits: int, bits_per_group: int) -> ComponentSpec:
    return ComponentSpec("lfq", dict(dim=bits, bits_per_group=bits_per_group))


def _fsq(levels: list[int]) -> ComponentSpec:
    return ComponentSpec("fsq", dict(levels=list(levels)))


@register_preset
def cnn_lfq_lo() -> TokenizerPreset:
    return cnn_preset("cnn_lfq_lo", **_CNN_256, quantizer=_lfq(18, 9), code_dim=18,
                      description="VQGAN-style CNN (f=16) + LFQ: 256 tokens x 18 bits, 0.0703 BPP (as flowmo_lo)")


@register_preset
def cnn_lfq_hi() -> TokenizerPreset:
    return cnn_preset("cnn_lfq_hi", **_CNN_256, quantizer=_lfq(56, 14), code_dim=56,
                      description="VQGAN-style CNN (f=16) + LFQ: 256 tokens x 56 bits, 0.219 BPP (as flowmo_hi)")


@register_preset
def cnn_fsq_lo() -> TokenizerPreset:
    return cnn_preset("cnn_fsq_lo", **_CNN_256, quantizer=_fsq([8] * 6), code_dim=6,
                      description="VQGAN-style CNN (f=16) + FSQ 8^6: 256 tokens x 18 bits, 0.0703 BPP (as flowmo_lo)")


@register_preset
def cnn_fsq_hi() -> TokenizerPreset:
    return cnn_preset("cnn_fsq_hi", **_CNN_256, quantizer=_fsq([8] * 18 + [4]), code_dim=19,
                      description="VQGAN-style CNN (f=16) + FSQ 8^18*4: 256 tokens x 56 bits, 0.219 BPP (as flowmo_hi)")


@register_preset
def cnn_lfq_tiny() -> TokenizerPreset:
    return cnn_preset("cnn_lfq_tiny", **_CNN_TINY, quantizer=_lfq(18, 9), code_dim=18,
                      description="CPU-size CNN (f=8) + LFQ: 32 px, 16 tokens x 18 bits (as flowmo_tiny)")


@register_preset
def cnn_fsq_tiny() -> TokenizerPreset:
    return cnn_preset("cnn_fsq_tiny", **_CNN_TINY, quantizer=_fsq([8] * 6), code_dim=6,
                      description="CPU-size CNN (f=8) + FSQ 8^6: 32 px, 16 tokens x 18 bits (as flowmo_tiny)")


@register_preset
def titok_lo() -> TokenizerPreset:
    return titok_preset(flowmo_lo(), "titok_lo", "FlowMo-Lo encoder + LFQ, one-pass MMDiT decoder (TiTok style), "
                                                 "0.0703 BPP")


@register_preset
def titok_hi() -> TokenizerPreset:
    return titok_preset(flowmo_hi(), "titok_hi", "FlowMo-Hi encoder + LFQ, one-pass MMDiT decoder (TiTok style), "
                                                 "0.219 BPP")


@register_preset
def titok_tiny() -> TokenizerPreset:
    return titok_preset(flowmo_tiny(), "titok_tiny", "flowmo_tiny encoder + LFQ, one-pass MMDiT decoder, 32 px, "
                                                     "0.2813 BPP")


def thumbnail_preset(name: str, image_size: int, code_length: int, bits_per_token: int) -> TokenizerPreset:
    """The parameter-free thumbnail codec (:mod:`tokenizer_zoo.encoders.thumbnail`): cell means on a
    square grid of ``code_length`` tokens, FSQ with exactly ``bits_per_token`` bits (2^k levels a channel,
    the spare bits to green, then red), bicubic upsampling."""
    levels = [2 ** (bits_per_token // 3 + (channel < bits_per_token % 3)) for channel in (1, 0, 2)]
    shape = dict(image_size=image_size, code_length=code_length, levels=levels)
    return TokenizerPreset(name=name, image_size=image_size, encoder=ComponentSpec("thumbnail", dict(shape)),
                           quantizer=_fsq(levels), decoder=ComponentSpec("thumbnail", dict(shape)),
                           description=f"reference codec: {math.isqrt(code_length)}^2 mean colours, "
                                       f"{bits_per_token} bits a token (FSQ {levels}), bicubic upsampling")


@register_preset
def thumbnail_tiny() -> TokenizerPreset:
    return thumbnail_preset("thumbnail_tiny", image_size=32, code_length=16, bits_per_token=18)


# Each baseline and the FlowMo preset whose bit budget (BPP) it matches exactly.
BASELINE_PRESETS: dict[str, str] = {
    "cnn_lfq_lo": "flowmo_lo", "cnn_lfq_hi": "flowmo_hi", "cnn_fsq_lo": "flowmo_lo", "cnn_fsq_hi": "flowmo_hi",
    "cnn_lfq_tiny": "flowmo_tiny", "cnn_fsq_tiny": "flowmo_tiny",
    "titok_lo": "flowmo_lo", "titok_hi": "flowmo_hi", "titok_tiny": "flowmo_tiny",
}
