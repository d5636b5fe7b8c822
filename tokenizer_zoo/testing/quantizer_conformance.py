"""The conformance kit for quantizers: a pytest base class a plugin subclasses to check its quantizer.

    from tokenizer_zoo.testing import QuantizerConformance

    class TestMyQuantizer(QuantizerConformance):
        @pytest.fixture
        def quantizer(self):
            return MyQuantizer(dim=8, codebook_size=16)

Every ``test_*`` method below then runs against that quantizer (parametrise the fixture to check
several configurations). Codes are ``batch x tokens`` random vectors of the quantizer's ``dim``; set
``batch``/``tokens`` as class attributes, ``check_compile = True`` to also check that
``torch.compile(fullgraph=True)`` gives the eager results (``compile_backend``, default "eager",
checks graph capture cheaply; "inductor" also compiles kernels, which takes seconds to minutes).

A discrete quantizer must give int64 ids of shape (B, S) (one index per token) or (B, S, P) (P index
positions, each in [0, vocab_size)), with ``bits_per_token == P * log2(vocab_size)``. A continuous one
returns ``indices=None`` and raises ``NoBitRateError`` for ``bits_per_token``, ``vocab_size`` and
``indices_to_codes``. Each check's assertion message says what is wrong.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tokenizer_zoo.quantizers import NoBitRateError
from tokenizer_zoo.tokens import TokenFileError, TokenMismatchError, load_tokens, save_tokens

IMAGE_SIZE = 8  # the tiny tokenizer of the round-trip checks: 8 px images, f = 2, 16 tokens


def is_discrete(quantizer) -> bool:
    try:
        quantizer.bits_per_token
    except NoBitRateError:
        return False
    return True


def tiny_tokenizer(quantizer):
    """A TokenizerPipeline of two tiny CNNs around ``quantizer`` (16 tokens of 8 x 8 px images)."""
    import tokenizer_zoo.decoders  # noqa: F401  (registers the built-in components)
    import tokenizer_zoo.encoders  # noqa: F401
    from tokenizer_zoo.pipelines import TokenizerPipeline
    from tokenizer_zoo.registry import DECODERS, ENCODERS

    torch.manual_seed(0)
    cnn = dict(image_size=IMAGE_SIZE, block_out_channels=[8, 8], layers_per_block=1, norm_num_groups=4,
               code_dim=quantizer.dim, code_length=(IMAGE_SIZE // 2) ** 2, mid_block_attention=False)
    pipe = TokenizerPipeline(ENCODERS.build("cnn", **cnn), quantizer, DECODERS.build("cnn", **cnn))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def public_config(module) -> dict:
    return json.loads(json.dumps({k: v for k, v in module.config.items() if not k.startswith("_")}))


class QuantizerConformance:
    """Base class of a quantizer's conformance tests; subclasses provide the ``quantizer`` fixture."""

    batch = 2
    tokens = 6
    check_compile = False
    compile_backend = "eager"

    @pytest.fixture
    def quantizer(self):
        raise NotImplementedError("a QuantizerConformance subclass must define a `quantizer` fixture")

    def codes(self, quantizer, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(self.batch, self.tokens, quantizer.dim, generator=generator) * scale

    def warm_up(self, quantizer) -> None:
        """One training forward, so that state set on first use (k-means init, EMA codebooks) exists."""
        quantizer.train()(self.codes(quantizer, seed=99))

    # --- the checks -----------------------------------------------------------------------------
    def test_output_shapes_and_dtypes(self, quantizer):
        z = self.codes(quantizer)
        for training in (True, False):
            out = quantizer.train(training)(z)
            mode = "train" if training else "eval"
            assert out.quantized.shape == z.shape, \
                f"{mode}: quantized has shape {tuple(out.quantized.shape)}, codes {tuple(z.shape)}"
            assert out.quantized.dtype == z.dtype, f"{mode}: quantized is {out.quantized.dtype}, codes {z.dtype}"
            assert isinstance(out.aux_loss, torch.Tensor) and out.aux_loss.ndim == 0, \
                f"{mode}: aux_loss must be a 0-dim tensor"
            assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in out.losses.values()), \
                f"{mode}: every value of losses must be a 0-dim tensor, got {out.losses}"
            if out.indices is not None:
                assert out.indices.dtype == torch.int64, f"{mode}: indices are {out.indices.dtype}, not int64"
                assert out.indices.ndim in (2, 3) and out.indices.shape[:2] == z.shape[:2], \
                    f"{mode}: indices must be (B, S) or (B, S, P), got {tuple(out.indices.shape)} " \
                    f"for codes {tuple(z.shape)}"

    def test_indices_within_vocab_size(self, quantizer):
        if not is_discrete(quantizer):
            assert quantizer.eval()(self.codes(quantizer)).indices is None, "continuous codes must give indices=None"
            return
        for training, scale in ((True, 1.0), (False, 1.0), (False, 10.0)):  # large codes reach the edges
            indices = quantizer.train(training)(self.codes(quantizer, scale=scale)).indices
            assert indices is not None, "a discrete quantizer (it has bits_per_token) must return indices"
            low, high = int(indices.min()), int(indices.max())
            assert 0 <= low and high < quantizer.vocab_size, \
                f"ids in [{low}, {high}] but vocab_size is {quantizer.vocab_size} (codes x {scale})"

    def test_indices_to_codes_equals_quantized_in_eval(self, quantizer):
        self.warm_up(quantizer)
        out = quantizer.eval()(self.codes(quantizer))
        if not is_discrete(quantizer):
            with pytest.raises(NoBitRateError):
                quantizer.indices_to_codes(torch.zeros(self.batch, self.tokens, dtype=torch.long))
            return
        codes = quantizer.indices_to_codes(out.indices)
        torch.testing.assert_close(codes.to(out.quantized.dtype), out.quantized, rtol=1e-5, atol=1e-5,
                                   msg=lambda m: f"indices_to_codes(indices) != quantized in eval mode: {m}")

    def test_bits_per_token_matches_vocab_size(self, quantizer):
        if not is_discrete(quantizer):
            with pytest.raises(NoBitRateError):
                quantizer.vocab_size
            return
        bits, vocab = quantizer.bits_per_token, quantizer.vocab_size
        assert isinstance(vocab, int) and vocab >= 2, f"vocab_size must be an int >= 2, got {vocab!r}"
        indices = quantizer.eval()(self.codes(quantizer)).indices
        positions = indices.shape[2] if indices.ndim == 3 else 1
        assert math.isclose(bits, positions * math.log2(vocab), rel_tol=1e-9), \
            f"bits_per_token {bits} != {positions} index positions x log2(vocab_size {vocab})"

    def test_gradients_reach_the_input(self, quantizer):
        z = self.codes(quantizer).requires_grad_()
        weight = torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
        (grad,) = torch.autograd.grad((quantizer.train()(z).quantized * weight).sum(), z)
        assert torch.isfinite(grad).all(), "the gradient of quantized w.r.t. the codes is not finite"
        starved = int((grad.abs().sum(-1) == 0).sum())
        assert starved == 0, f"{starved} of {self.batch * self.tokens} tokens get no gradient through quantized"

    def test_aux_loss_is_finite(self, quantizer):
        z = self.codes(quantizer).requires_grad_()
        for training in (True, False):
            out = quantizer.train(training)(z)
            mode = "train" if training else "eval"
            assert torch.isfinite(out.aux_loss), f"aux_loss is {float(out.aux_loss)} ({mode})"
            for name, value in out.losses.items():
                assert torch.isfinite(value) and not value.requires_grad, \
                    f"losses[{name!r}] must be finite and detached"
            if training and out.aux_loss.requires_grad:
                (grad,) = torch.autograd.grad(out.aux_loss, z, allow_unused=True)
                assert grad is None or torch.isfinite(grad).all(), "the gradient of aux_loss is not finite"

    def test_eval_is_deterministic(self, quantizer):
        self.warm_up(quantizer)
        quantizer.eval()
        before = {k: v.clone() for k, v in quantizer.state_dict().items()}
        z = self.codes(quantizer)
        first, second = quantizer(z), quantizer(z)
        assert torch.equal(first.quantized, second.quantized), "two eval calls on the same codes differ"
        assert (first.indices is None) == (second.indices is None)
        assert first.indices is None or torch.equal(first.indices, second.indices), "eval ids differ between calls"
        changed = [k for k, v in quantizer.state_dict().items() if not torch.equal(v, before[k])]
        assert not changed, f"eval mode changed the state {changed}: update it only in training mode"

    def test_config_round_trip_through_a_tokenizer(self, quantizer, tmp_path: Path):
        from tokenizer_zoo.pipelines import TOKENIZER_PIPELINES, load_pipeline

        self.warm_up(quantizer)
        pipe = tiny_tokenizer(quantizer.eval())
        pipe.save_pretrained(tmp_path)
        loaded = load_pipeline(tmp_path, kinds=TOKENIZER_PIPELINES)
        assert type(loaded.quantizer) is type(quantizer), f"loaded {type(loaded.quantizer).__name__}"
        assert public_config(loaded.quantizer) == public_config(quantizer), "the config changed through save/load"
        state, reloaded = quantizer.state_dict(), loaded.quantizer.state_dict()
        assert state.keys() == reloaded.keys(), f"saved state keys differ: {sorted(state.keys() ^ reloaded.keys())}"
        images = torch.rand(self.batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(2))
        a, b = pipe.encode(images), loaded.encode(images)
        assert torch.equal(a.codes, b.codes), "the reloaded tokenizer quantizes differently"
        assert (a.indices is None and b.indices is None) or torch.equal(a.indices, b.indices)

    def test_token_file_round_trip(self, quantizer, tmp_path: Path):
        self.warm_up(quantizer)
        pipe = tiny_tokenizer(quantizer.eval())
        images = torch.rand(self.batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(3))
        encoded = pipe.encode(images)
        path = tmp_path / "tokens.safetensors"
        if not is_discrete(quantizer):
            with pytest.raises(TokenFileError):
                save_tokens(path, torch.zeros(self.batch, 16, dtype=torch.long), quantizer, IMAGE_SIZE)
            return
        save_tokens(path, encoded.indices, quantizer, IMAGE_SIZE)
        try:  # the file's tokenizer signature (quantizer, config, bits, token shape) must be the pipeline's
            tokens = load_tokens(path, expect=pipe)
        except TokenMismatchError as error:
            raise AssertionError(f"the token file's signature differs from the pipeline's: {error}") from error
        assert torch.equal(tokens.indices, encoded.indices), "ids changed through the token file"
        torch.testing.assert_close(quantizer.indices_to_codes(tokens.indices),
                                   quantizer.indices_to_codes(encoded.indices))

    def test_compiled_equals_eager(self, quantizer):
        if not self.check_compile:
            pytest.skip("opt in with check_compile = True")
        self.warm_up(quantizer)
        quantizer.eval()
        z = self.codes(quantizer)
        eager = quantizer(z)
        torch._dynamo.reset()
        try:
            compiled = torch.compile(quantizer, fullgraph=True, backend=self.compile_backend)(z)
        except Exception as error:  # graph breaks and unsupported operations
            raise AssertionError(f"torch.compile(fullgraph=True) failed: {type(error).__name__}: "
                                 f"{str(error).splitlines()[0]}") from error
        torch.testing.assert_close(compiled.quantized, eager.quantized,
                                   msg=lambda m: f"compiled quantized differs: {m}")
        assert (compiled.indices is None) == (eager.indices is None)
        assert eager.indices is None or torch.equal(compiled.indices, eager.indices), "compiled ids differ"
