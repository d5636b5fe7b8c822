"""The conformance kit can fail: each of its checks rejects a quantizer broken in the one way it checks.

Each broken quantizer is a built-in (FSQ or VQ) with one realistic bug; the healthy built-ins pass
every check (tests/quantizers/test_conformance.py).
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from diffusers import ConfigMixin, ModelMixin

import tests
from tokenizer_zoo.outputs import QuantizerOutput
from tokenizer_zoo.quantizers import FSQuantizer, VectorQuantizer
from tokenizer_zoo.quantizers._checks import check_indices
from tokenizer_zoo.registry import QUANTIZERS
from tokenizer_zoo.testing import QuantizerConformance


class ReturnsFloat64(FSQuantizer):
    def forward(self, z):
        out = super().forward(z)
        return QuantizerOutput(out.quantized.double(), out.indices, out.aux_loss, out.losses)


class OneBasedIds(FSQuantizer):
    def forward(self, z):
        out = super().forward(z)
        return QuantizerOutput(out.quantized, out.indices + 1, out.aux_loss, out.losses)


class HalfScaleCodes(FSQuantizer):
    def indices_to_codes(self, indices):
        return super().indices_to_codes(indices) / 2


class NaturalLogBits(FSQuantizer):
    @property
    def bits_per_token(self) -> float:
        return float(sum(math.log(n) for n in self.config.levels))


class NoStraightThrough(FSQuantizer):
    def forward(self, z):
        out = super().forward(z)
        rounded = torch.round(self.prequantize(z) * 100) / 100  # round() has a zero gradient
        quantized = out.quantized.detach() + (rounded - rounded.detach())
        return QuantizerOutput(quantized, out.indices, out.aux_loss, out.losses)


class NaNEntropy(FSQuantizer):
    def forward(self, z):
        out = super().forward(z)
        p = torch.nn.functional.one_hot(out.indices, self.vocab_size).float().mean((0, 1))
        return QuantizerOutput(out.quantized, out.indices, -(p * p.log()).sum(), out.losses)  # 0 log 0 = nan


class UpdatesInEval(VectorQuantizer):
    def forward(self, z):
        out = super().forward(z)
        if not self.training:
            self._ema_update(z.reshape(-1, self.dim), out.indices.reshape(-1))
        return out


class ScaleOutsideConfig(FSQuantizer):
    def __init__(self, levels: list[int], scale: float = 1.0):  # no @register_to_config: scale is lost on save
        super().__init__(levels)
        self.scale = scale

    def forward(self, z):
        return super().forward(z * self.scale)


class IdsWithASpareAxis(VectorQuantizer):
    """One id per token given as (B, S, 1): the token file then disagrees with the pipeline's (S,)."""

    def forward(self, z):
        out = super().forward(z)
        return QuantizerOutput(out.quantized, out.indices[..., None], out.aux_loss, out.losses)

    def indices_to_codes(self, indices):
        check_indices(indices, (1,), self.vocab_size, type(self).__name__)
        return self.codes()[indices[..., 0]]


class ChecksWithItem(FSQuantizer):
    def forward(self, z):
        if z.abs().max().item() > 1e6:  # a data-dependent branch: a graph break
            raise ValueError("codes too large")
        return super().forward(z)


# check -> (broken quantizer, what the failure says)
BROKEN = {
    "test_output_shapes_and_dtypes": (lambda: ReturnsFloat64(levels=[3, 4]), "quantized is torch.float64"),
    "test_indices_within_vocab_size": (lambda: OneBasedIds(levels=[2]), r"ids in \[\d, 2\] but vocab_size is 2"),
    "test_indices_to_codes_equals_quantized_in_eval": (lambda: HalfScaleCodes(levels=[3, 4]), "!= quantized in eval"),
    "test_bits_per_token_matches_vocab_size": (lambda: NaturalLogBits(levels=[3, 4]), "bits_per_token 2.48"),
    "test_gradients_reach_the_input": (lambda: NoStraightThrough(levels=[3, 4]), "12 of 12 tokens get no gradient"),
    "test_aux_loss_is_finite": (lambda: NaNEntropy(levels=[3, 4]), "aux_loss is nan"),
    "test_eval_is_deterministic": (lambda: UpdatesInEval(dim=4, codebook_size=8, ema_decay=0.5),
                                   "two eval calls on the same codes differ"),
    "test_config_round_trip_through_a_tokenizer": (lambda: ScaleOutsideConfig(levels=[3, 4], scale=3.0),
                                                   "the reloaded tokenizer quantizes differently"),
    "test_token_file_round_trip": (lambda: IdsWithASpareAxis(dim=4, codebook_size=8),
                                   "signature differs.*different token shape"),
    "test_compiled_equals_eager": (lambda: ChecksWithItem(levels=[3, 4]), r"torch.compile\(fullgraph=True\) failed"),
}


def test_every_check_has_a_broken_quantizer():
    checks = {name for name in dir(QuantizerConformance) if name.startswith("test_")}
    assert checks == set(BROKEN)


@pytest.mark.parametrize("check", sorted(BROKEN))
def test_the_kit_catches(check, tmp_path, monkeypatch):
    build, message = BROKEN[check]
    quantizer = build()
    # diffusers loads a pipeline's component as an attribute of its top-level package, next to the base classes
    for cls in (type(quantizer), ModelMixin, ConfigMixin):
        monkeypatch.setattr(tests, cls.__name__, cls, raising=False)
    # registered for this test only, as a plugin's quantizer would be: pipeline folders may name registered classes
    monkeypatch.setitem(QUANTIZERS._entries, f"broken_{check}", type(quantizer))
    monkeypatch.setitem(QUANTIZERS._sources, f"broken_{check}", "tests")
    kit = QuantizerConformance()
    kit.check_compile = True
    method = getattr(kit, check)
    arguments = (quantizer, tmp_path) if "tmp_path" in inspect.signature(method).parameters else (quantizer,)
    with pytest.raises(AssertionError, match=message):
        method(*arguments)
