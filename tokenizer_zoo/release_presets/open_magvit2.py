"""Open-MAGVIT2's image tokenizer (Luo et al. 2024, "Open-MAGVIT2: An Open-Source Project Toward Democratizing
Auto-regressive Visual Generation"; TencentARC/SEED-Voken, ``src/Open_MAGVIT2``).

A CNN encoder and decoder (our ``open_magvit2`` encoder and decoder: no attention, adaptive GroupNorm and
depth-to-space upsampling in the decoder) around lookup-free quantisation of 18 bits (our ``lfq`` with
``bit_order="lsb_first"`` and one group of all 18 bits, the release's index order).

| preset           | release file (Hub: TencentARC/Open-MAGVIT2-Tokenizer-256-resolution) | tokens at 256 px  | BPP    |
| open_magvit2_256 | imagenet_256_L.ckpt (ch 128 x [1,1,2,2,4], 4 blocks a level)        | 16 x 16 x 18 bits | 0.0703 |

115.13 M parameters (encoder 49.75 M, decoder 65.38 M), the count of the release's ``VQModel`` encoder and
decoder at ``imagenet_lfqgan_256_L.yaml`` (tests/convert/test_open_magvit2.py).
"""

from __future__ import annotations

from tokenizer_zoo.presets import ComponentSpec, TokenizerPreset, register_preset

REPO = "TencentARC/Open-MAGVIT2-Tokenizer-256-resolution"
RELEASE_FILES = {"open_magvit2_256": "imagenet_256_L.ckpt"}
"""Preset -> file of the released weights in :data:`REPO`."""
AR_FACTORIZED_BITS = [6, 12]
"""How the release's AR stage splits an 18-bit id into (pre, post) sub-ids (``factorized_bits`` of its
``imagenet_conditional_llama_*.yaml``): ``factorize_indices(ids, AR_FACTORIZED_BITS)``, least significant first."""


@register_preset
def open_magvit2_256() -> TokenizerPreset:
    arch = dict(image_size=256, channels=128, channel_mult=[1, 1, 2, 2, 4], num_res_blocks=4, code_dim=18,
                code_length=256)
    return TokenizerPreset("open_magvit2_256", 256, ComponentSpec("open_magvit2", dict(arch)),
                           ComponentSpec("lfq", dict(dim=18, bits_per_group=18, bit_order="lsb_first")),
                           ComponentSpec("open_magvit2", dict(arch)),
                           description="Open-MAGVIT2 (TencentARC) imagenet_256_L: 16x16 tokens x 18 bits (LFQ), "
                                       "0.0703 BPP")
