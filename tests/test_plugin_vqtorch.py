"""The vector-quantize-pytorch plugin (plugins/tokenizer-zoo-vqtorch): conformance kit, id layout, training."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

from tests.recipes import run_recipe
from tokenizer_zoo.pipelines import MissingPluginError, TokenizerPipeline
from tokenizer_zoo.registry import QUANTIZERS
from tokenizer_zoo.testing import QuantizerConformance

if importlib.util.find_spec("tokenizer_zoo_vqtorch") is None:
    pytest.fail(
        "the vqtorch plugin is not installed: run `.venv/bin/pip install vector-quantize-pytorch` and "
        "`.venv/bin/pip install --no-deps -e plugins/tokenizer-zoo-vqtorch` (scripts/setup.sh does it)",
        pytrace=False,
    )

# One tiny configuration per entry point (the kit's cost grows with their number), plus the
# training features of VectorQuantize that change state: k-means init, EMA, dead-code reset.
CONFIGS = {
    "vqtorch_vq": [dict(dim=6, codebook_size=16),
                   dict(dim=6, codebook_size=32, kmeans_init=True, threshold_ema_dead_code=0.5, use_cosine_sim=True)],
    "vqtorch_simvq": [dict(dim=6, codebook_size=16)],
    "vqtorch_residual_vq": [dict(dim=6, codebook_size=16, num_quantizers=3)],
    "vqtorch_grouped_residual_vq": [dict(dim=6, codebook_size=8, groups=2, num_quantizers=2)],
    "vqtorch_residual_fsq": [dict(dim=4, levels=[3, 4], num_quantizers=2)],
    "vqtorch_residual_lfq": [dict(dim=4, codebook_size=16, num_quantizers=2)],
}
CASES = [pytest.param((name, kwargs), id=f"{name}-{i}") for name, configs in CONFIGS.items()
         for i, kwargs in enumerate(configs)]


class TestVQTorchConformance(QuantizerConformance):
    @pytest.fixture(params=CASES)
    def quantizer(self, request):
        torch.manual_seed(0)
        name, kwargs = request.param
        return QUANTIZERS.build(name, **kwargs)


def test_simvq_compiles_with_fullgraph():
    """The kit's opt-in torch.compile(fullgraph=True) check on one entry (graph capture, eager backend).

    The VectorQuantize-based entries (vq, residual_vq, grouped_residual_vq) do not capture in one graph:
    vector-quantize-pytorch's codebook branches on its ``initted`` buffer (k-means init) in every forward.
    """
    kit = QuantizerConformance()
    kit.check_compile = True
    kit.test_compiled_equals_eager(QUANTIZERS.build("vqtorch_simvq", dim=6, codebook_size=16))


def test_every_entry_point_is_registered_from_this_distribution():
    assert {name for name in QUANTIZERS.names() if name.startswith("vqtorch_")} == set(CONFIGS)
    assert {QUANTIZERS.source(name) for name in CONFIGS} == {"tokenizer-zoo-vqtorch"}
    assert not QUANTIZERS.failures


def test_grouped_residual_ids_are_group_major_and_match_the_library():
    q = QUANTIZERS.build("vqtorch_grouped_residual_vq", dim=6, codebook_size=8, groups=2, num_quantizers=3).eval()
    z = torch.randn(2, 5, 6)
    out = q(z)
    _, library_ids, _ = q.vq(z)  # (g, b, s, q)
    assert out.indices.shape == (2, 5, 6) and q.bits_per_token == 6 * 3
    for g in range(2):
        assert torch.equal(out.indices[..., g * 3:(g + 1) * 3], library_ids[g])
    # the codes of group 0 come from group 0's codebooks alone: the first 3 channels
    lone = q.vq.rvqs[0].get_output_from_indices(out.indices[..., :3])
    torch.testing.assert_close(q.indices_to_codes(out.indices)[..., :3], lone)


def test_residual_codes_are_sums_of_level_codebook_vectors():
    q = QUANTIZERS.build("vqtorch_residual_vq", dim=4, codebook_size=8, num_quantizers=2).eval()
    out = q(torch.randn(3, 4, 4))
    books = [layer.codebook for layer in q.vq.layers]  # (c, d) each
    expected = books[0][out.indices[..., 0]] + books[1][out.indices[..., 1]]
    torch.testing.assert_close(out.quantized, expected)


def test_dead_codes_are_replaced_by_batch_vectors():
    q = QUANTIZERS.build("vqtorch_vq", dim=4, codebook_size=16, threshold_ema_dead_code=0.9, decay=0.5).train()
    z = torch.randn(2, 8, 4)
    far = torch.full((16, 4), 100.0)
    far[0] = 0.0
    q.vq.codebook = far  # every token picks code 0; codes 1..15 sit far away, unused
    assert q.eval()(z).indices.unique().tolist() == [0]
    q.train()(z)  # their EMA cluster size falls from 1 to 0.5 < 0.9: replaced by vectors of the batch
    distance_to_batch = torch.cdist(q.vq.codebook[1:], z.reshape(-1, 4)).min(-1).values
    assert distance_to_batch.max() < 1e-5
    assert q.eval()(z).indices.unique().numel() > 4


def test_residual_ids_go_through_a_token_file_into_maskgit(tmp_path):
    from tokenizer_zoo.generation import MaskGiT
    from tokenizer_zoo.testing.quantizer_conformance import tiny_tokenizer
    from tokenizer_zoo.tokens import load_tokens, save_tokens

    pipe = tiny_tokenizer(QUANTIZERS.build("vqtorch_residual_vq", dim=4, codebook_size=8, num_quantizers=2).eval())
    indices = pipe.encode(torch.rand(3, 3, 8, 8)).indices
    assert indices.shape == (3, 16, 2) and pipe.bits_per_pixel == 16 * 2 * 3 / 8**2
    save_tokens(tmp_path / "tokens.safetensors", indices, pipe.quantizer, 8)
    tokens = load_tokens(tmp_path / "tokens.safetensors", expect=pipe)
    assert tokens.token_shape == (16, 2) and tokens.vocab_size == 8
    model = MaskGiT(token_shape=list(tokens.token_shape), index_vocab_size=tokens.vocab_size, num_sub_tokens=2,
                    hidden_size=16, num_layers=1, num_heads=2)
    sub = model.split.split(tokens.indices)  # a token's 8 x 8 values as two sub-tokens of 8 values
    assert sub.shape == (3, 32) and model.sub_vocab_size == 8
    assert torch.equal(model.split.merge(sub, grouped=True), indices)


def test_bad_configurations_are_refused_with_a_fix():
    with pytest.raises(ValueError, match=r"dim=7 into groups=2.*multiple"):
        QUANTIZERS.build("vqtorch_grouped_residual_vq", dim=7, codebook_size=8, groups=2)
    with pytest.raises(ValueError, match="power-of-two codebook_size"):
        QUANTIZERS.build("vqtorch_residual_lfq", dim=4, codebook_size=12)
    with pytest.raises(ValueError, match=r"built for 6 channels.*dim=5"):
        QUANTIZERS.build("vqtorch_simvq", dim=6, codebook_size=8)(torch.randn(1, 2, 5))


def test_missing_vqtorch_plugin_names_the_distribution(tmp_path, monkeypatch):
    from tokenizer_zoo.testing.quantizer_conformance import tiny_tokenizer

    tiny_tokenizer(QUANTIZERS.build("vqtorch_residual_vq", dim=4, codebook_size=8)).save_pretrained(tmp_path)
    record = json.loads((tmp_path / "tokenizer_zoo.json").read_text())["components"]["quantizer"]
    assert record["distribution"] == "tokenizer-zoo-vqtorch" and record["name"] == "vqtorch_residual_vq"
    for name in [m for m in sys.modules if m.startswith("tokenizer_zoo_vqtorch")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tokenizer_zoo_vqtorch", None)  # "not installed": its import fails
    with pytest.raises(MissingPluginError, match="'tokenizer-zoo-vqtorch'.*pip install tokenizer-zoo-vqtorch"):
        TokenizerPipeline.from_pretrained(tmp_path)


@pytest.mark.slow
def test_trains_the_tiny_cnn_preset_through_the_recipe(tmp_path):
    overrides = json.dumps({"quantizer_name": "vqtorch_residual_vq",
                            "quantizer": {"dim": 18, "codebook_size": 64, "num_quantizers": 2,
                                          "options": {"kmeans_init": True, "threshold_ema_dead_code": 0.1}}})
    run_recipe("train_tokenizer", ["--preset", "cnn_lfq_tiny", f"preset_overrides={overrides}", "max_steps=2",
                                   "perceptual_weight=0", "batch_size=4", "eval_images=2", "grid_every=1000",
                                   "checkpoint_every=1000", f"output_dir={tmp_path}"])
    pipe = TokenizerPipeline.from_pretrained(tmp_path / "pipeline")
    assert type(pipe.quantizer).__name__ == "VQTorchResidualVQ"
    assert bool(pipe.quantizer.vq.layers[0]._codebook.initted)  # k-means ran on the first batch
    tokens = pipe.encode(torch.rand(2, 3, 32, 32)).indices
    assert tokens.shape == (2, 16, 2) and pipe.bits_per_pixel == pytest.approx(16 * 2 * 6 / 32**2)
