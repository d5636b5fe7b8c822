"""The models compile with ``torch.compile(fullgraph=True)`` (no graph break) and match eager mode.

Each model is compiled at a tiny configuration; its outputs and the gradients of its parameters
must equal eager ones to 1e-5. The parametrised test uses Dynamo's ``eager`` backend: a graph break
fails it just as under Inductor, in seconds rather than the minute a C++ compile takes on a CPU. Two
slower tests run the FlowMo decoder through AOTAutograd (forward and backward) and through Inductor.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass

import pytest
import torch
from safetensors import safe_open
from torch._dynamo.testing import CompileCounter

from tokenizer_zoo.decoders import CNNDecoder, RegressionDecoder
from tokenizer_zoo.decoders.flowmo import FlowMoDecoder
from tokenizer_zoo.encoders import CNNEncoder
from tokenizer_zoo.encoders.flowmo import FlowMoEncoder
from tokenizer_zoo.generation import MaskGiT
from tokenizer_zoo.quantizers.lfq import LFQuantizer

TINY = dict(image_size=16, patch_size=4, code_length=5, code_dim=6, num_heads=2, hidden_size=64, depth=2)


def _randomised(module: torch.nn.Module) -> torch.nn.Module:
    """Leave the zero-initialised gates behind so that every path carries signal (activations of order 1)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.05)
    return module


def _images(b):
    return (torch.rand(b, 3, 16, 16) * 2 - 1,)


def _decoder_inputs(b):
    return torch.randn(b, 5, 6), torch.randn(b, 3, 16, 16), torch.rand(b)


# name -> (model factory, inputs of batch b, keyword arguments of batch b)
MODELS = {
    "flowmo_encoder": (lambda: FlowMoEncoder(**TINY), _images, lambda b: {}),
    "flowmo_decoder": (lambda: FlowMoDecoder(**TINY), _decoder_inputs, lambda b: {}),
    "flowmo_decoder_guided": (lambda: FlowMoDecoder(**TINY), _decoder_inputs,
                              lambda b: {"drop_code": torch.arange(b) % 2 == 0}),
    "flowmo_decoder_release_head": (lambda: FlowMoDecoder(**TINY, output_norm="twice"), _decoder_inputs,
                                    lambda b: {}),
    "lfq_release_layout": (lambda: LFQuantizer(6, bits_per_group=3, group_layout="interleaved", bit_order="lsb_first"),
                           lambda b: (torch.randn(b, 5, 6, requires_grad=True),), lambda b: {}),
    "regression_decoder": (lambda: RegressionDecoder(**TINY), lambda b: (torch.randn(b, 5, 6),), lambda b: {}),
    "cnn_encoder": (lambda: CNNEncoder(image_size=16, block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=4,
                                       code_dim=6), _images, lambda b: {}),
    "cnn_decoder": (lambda: CNNDecoder(image_size=16, block_out_channels=[8, 16], layers_per_block=1,
                                       norm_num_groups=4, code_dim=6), lambda b: (torch.randn(b, 64, 6),),
                    lambda b: {}),
    "maskgit": (lambda: MaskGiT([4, 2], 8, 2, num_classes=3, hidden_size=32, num_layers=2, num_heads=4,
                                dropout=0.0).eval(),
                lambda b: (torch.randint(0, 9, (b, 8)), torch.arange(b) % 4), lambda b: {}),
}


def _tensors(output) -> list[torch.Tensor]:
    parts = [getattr(output, f.name) for f in fields(output)] if is_dataclass(output) else [output]
    flat = []
    for part in parts:
        flat.extend(part.values() if isinstance(part, dict) else [part])
    return [t for t in flat if isinstance(t, torch.Tensor)]


def _loss(outputs: list[torch.Tensor]) -> torch.Tensor:
    return sum(t.float().square().mean() for t in outputs if t.requires_grad)


def _run(model, inputs, kwargs):
    """Outputs and the gradients of every parameter (and float input) of a scalar loss on them."""
    for p in model.parameters():
        p.grad = None
    outputs = _tensors(model(*inputs, **kwargs))
    leaves = [*model.parameters(), *(x for x in inputs if x.requires_grad)]
    grads = []
    if any(t.requires_grad for t in outputs):
        grads = torch.autograd.grad(_loss(outputs), leaves, allow_unused=True)
    return [t.detach() for t in outputs], grads


def _assert_compiled_matches_eager(name: str, backend: str, batches=(2,)) -> None:
    factory, make_inputs, make_kwargs = MODELS[name]
    model = factory()
    if any(True for _ in model.parameters()):
        _randomised(model)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    for batch in batches:
        torch.manual_seed(batch)
        inputs, kwargs = make_inputs(batch), make_kwargs(batch)
        eager_out, eager_grads = _run(model, inputs, kwargs)
        compiled_out, compiled_grads = _run(compiled, inputs, kwargs)
        assert len(compiled_out) == len(eager_out) and eager_out
        for got, want in zip(compiled_out, eager_out):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        assert len(compiled_grads) == len(eager_grads)
        for got, want in zip(compiled_grads, eager_grads):
            assert (got is None) == (want is None)
            if want is not None:
                torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_compiles_as_one_graph_and_matches_eager(name):
    _assert_compiled_matches_eager(name, backend="eager")


def test_a_new_batch_size_recompiles_without_graph_breaks():
    """The second batch size makes Dynamo retrace with a symbolic batch dimension."""
    _assert_compiled_matches_eager("flowmo_decoder_guided", backend="eager", batches=(2, 3))


@pytest.mark.slow
def test_backward_through_aot_autograd_matches_eager():
    """Gradients through AOTAutograd's joint graph, as compiled training (Inductor) builds it."""
    _assert_compiled_matches_eager("flowmo_decoder_guided", backend="aot_eager")


@pytest.mark.slow
def test_inductor_compiled_flowmo_decoder_matches_eager():
    """The C++ code Inductor generates on this CPU (forward only: a backward graph doubles the compile)."""
    factory, make_inputs, make_kwargs = MODELS["flowmo_decoder_guided"]
    model = _randomised(factory())
    compiled = torch.compile(model, fullgraph=True)  # the default backend, Inductor
    inputs, kwargs = make_inputs(2), make_kwargs(2)
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs, **kwargs), model(*inputs, **kwargs), atol=1e-5, rtol=1e-5)


def test_pipeline_decodes_with_a_compiled_decoder(tmp_path):
    """``pipe.decoder = torch.compile(pipe.decoder)``: the same images, one call per step (guided steps
    batched), and two graphs in all (plain and guided batch), not one per step or per noise level."""
    from tests.pipelines.conftest import tiny_pipeline

    pipe = tiny_pipeline()
    tokens = pipe.encode(torch.rand(2, 3, 32, 32))
    decode = dict(num_inference_steps=8, output_type="pt", return_dict=False)
    eager = pipe.decode(tokens, generator=torch.Generator().manual_seed(0), **decode)[0]
    counter = CompileCounter()
    pipe.decoder = torch.compile(pipe.decoder, backend=counter)
    batches = []
    pipe.decoder.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    compiled = pipe.decode(tokens, generator=torch.Generator().manual_seed(0), **decode)[0]
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    assert len(batches) == 8 and set(batches) == {2, 4}  # guided steps: one call on the doubled batch
    assert counter.frame_count == 2
    # saving writes the decoder's own weights under their plain names, and they load back
    pipe.save_pretrained(tmp_path)
    with safe_open(next((tmp_path / "decoder").glob("*.safetensors")), "pt") as file:
        assert set(file.keys()) == set(pipe.decoder._orig_mod.state_dict())
    loaded = type(pipe).from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(loaded.decode(tokens, generator=torch.Generator().manual_seed(0), **decode)[0], eager,
                               atol=1e-5, rtol=1e-5)


def test_compiled_decoder_in_a_pipeline_still_reports_bad_codes():
    """A compiled model skips its input checks; the pipeline checks once, outside the compiled region."""
    from tests.pipelines.conftest import tiny_pipeline

    pipe = tiny_pipeline()
    pipe.decoder = torch.compile(pipe.decoder, fullgraph=True, backend="eager")
    with pytest.raises(ValueError, match=r"codes must have shape \(B, code_length, code_dim\)"):
        pipe.decode(torch.randn(1, 15, 18), num_inference_steps=2)
