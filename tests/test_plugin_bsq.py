"""The example plugin tokenizer-zoo-bsq, found through its entry point (plugins/tokenizer-zoo-bsq)."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from tests.quantizers._reference import brute_entropy_terms
from tokenizer_zoo.registry import QUANTIZERS

if importlib.util.find_spec("tokenizer_zoo_bsq") is None:
    pytest.fail(
        "the example plugin is not installed: run `.venv/bin/pip install --no-deps -e plugins/tokenizer-zoo-bsq` "
        "(scripts/setup.sh does it)",
        pytrace=False,
    )


def test_built_by_name_from_its_own_distribution():
    from tokenizer_zoo_bsq import BSQuantizer

    q = QUANTIZERS.build("bsq", dim=8, bits_per_group=4)
    assert type(q) is BSQuantizer and QUANTIZERS.get("bsq") is BSQuantizer
    assert QUANTIZERS.source("bsq") == "tokenizer-zoo-bsq"
    assert "bsq" in QUANTIZERS.names() and not QUANTIZERS.failures


def test_codes_are_signs_on_the_unit_sphere():
    q = QUANTIZERS.build("bsq", dim=6, bits_per_group=3)
    z = torch.randn(2, 5, 6) * 4
    out = q(z)
    torch.testing.assert_close(out.quantized, torch.where(z > 0, 1.0, -1.0) / math.sqrt(6))
    assert torch.allclose(out.quantized.norm(dim=-1), torch.ones(2, 5))
    assert torch.equal(q.indices_to_codes(out.indices), out.quantized)


def test_losses_match_a_brute_force_spherical_softmax():
    q = QUANTIZERS.build("bsq", dim=8, bits_per_group=4, temperature=0.05)
    z = torch.randn(3, 4, 8, dtype=torch.float64)
    out = q(z)
    u = z / z.norm(dim=-1, keepdim=True)
    # codes of a group are {-1/sqrt(d), +1/sqrt(d)}^k, logits 2 u.c / T
    per_sample, batch = brute_entropy_terms(u.reshape(-1, 4), 0.05, scale=1 / math.sqrt(8))
    torch.testing.assert_close(out.losses["entropy"], per_sample - batch, rtol=1e-9, atol=1e-12)
    commitment = (u - torch.sign(u) / math.sqrt(8)).pow(2).mean()
    torch.testing.assert_close(out.losses["commitment"], commitment)
    torch.testing.assert_close(out.aux_loss, 0.0025 * (per_sample - batch) + 0.000625 * commitment)


def test_save_pretrained_from_pretrained_round_trip(tmp_path):
    q = QUANTIZERS.build("bsq", dim=12, bits_per_group=6, entropy_weight=0.01)
    q.save_pretrained(tmp_path)
    loaded = QUANTIZERS.get("bsq").from_pretrained(tmp_path)
    assert loaded.config.entropy_weight == 0.01 and loaded.config.bits_per_group == 6
    z = torch.randn(2, 3, 12)
    a, b = q(z), loaded(z)
    assert torch.equal(a.quantized, b.quantized) and torch.equal(a.indices, b.indices)
    assert torch.equal(a.aux_loss, b.aux_loss)
