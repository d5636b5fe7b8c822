"""The conformance kit (tokenizer_zoo.testing) over the built-in quantizers and the BSQ plugin, and the
check that every registered quantizer runs it (the vqtorch entries in tests/test_plugin_vqtorch.py)."""

from __future__ import annotations

import pytest
import torch

from tests.quantizers.test_contract import TINY
from tests.test_plugin_vqtorch import CONFIGS as VQTORCH_CONFIGS
from tokenizer_zoo.registry import QUANTIZERS
from tokenizer_zoo.testing import QuantizerConformance

# one configuration per kind of state: binary, scalar, learned codebook, EMA codebook on the sphere,
# noisy continuous codes, a plugin
KIT_CASES = [("lfq", 0), ("fsq", 0), ("vq", 0), ("vq", 3), ("continuous", 1), ("bsq", 0)]


class TestBuiltinAndBSQConformance(QuantizerConformance):
    @pytest.fixture(params=KIT_CASES, ids=[f"{name}-{i}" for name, i in KIT_CASES])
    def quantizer(self, request):
        torch.manual_seed(0)
        name, i = request.param
        return QUANTIZERS.build(name, **TINY[name][i])


def test_every_registered_quantizer_runs_the_kit():
    covered = {name for name, _ in KIT_CASES} | set(VQTORCH_CONFIGS)
    missing = sorted(set(QUANTIZERS.names()) - covered)
    assert not missing, f"registered quantizers without a conformance run: {missing}; add them to KIT_CASES"
    assert {"lfq", "fsq", "vq", "continuous", "bsq"} <= set(QUANTIZERS.names())
