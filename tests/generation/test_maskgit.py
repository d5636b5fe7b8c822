"""MaskGiT: cosine schedule, decoding in exactly N steps, guidance, training that overfits a tiny token set."""

import math

import pytest
import torch

from tokenizer_zoo.generation import MaskGiT, cosine_mask_ratio, masking_schedule


def tiny_maskgit(token_shape=(4, 2), index_vocab_size=8, num_sub_tokens=2, **kwargs) -> MaskGiT:
    torch.manual_seed(0)
    settings = {"num_classes": 3, "hidden_size": 32, "num_layers": 2, "num_heads": 4, "dropout": 0.0, **kwargs}
    return MaskGiT(list(token_shape), index_vocab_size, num_sub_tokens, **settings).eval()


def test_cosine_mask_ratio_and_schedule():
    progress = torch.linspace(0, 1, 11)
    expected = torch.tensor([math.cos(math.pi / 2 * float(p)) for p in progress], dtype=torch.float64)
    assert torch.allclose(cosine_mask_ratio(progress), expected)
    assert float(cosine_mask_ratio(0.0)) == 1.0 and abs(float(cosine_mask_ratio(1.0))) < 1e-12
    # where floor(L cos(pi/2 i/N)) already decreases strictly it is the schedule itself
    assert masking_schedule(8, 32) == [math.floor(32 * math.cos(math.pi / 2 * i / 8)) for i in range(1, 8)] + [0]
    for steps, length in [(1, 1), (1, 16), (5, 5), (12, 16), (16, 256), (3, 1000)]:
        counts = masking_schedule(steps, length)
        assert len(counts) == steps and counts[-1] == 0
        assert all(a > b for a, b in zip([length, *counts], counts)), counts  # every step reveals something
    assert masking_schedule(4, 4) == [3, 2, 1, 0]
    for steps in (0, 17):
        with pytest.raises(ValueError, match=r"num_steps must lie in \[1, 16\]"):
            masking_schedule(steps, 16)


@pytest.mark.parametrize(("guidance_scale", "passes_per_step"), [(1.0, 1), (3.0, 2)])
def test_decoding_fills_every_position_in_exactly_the_requested_steps(guidance_scale, passes_per_step):
    model = tiny_maskgit()
    calls, masked_after = [], []
    model.register_forward_hook(lambda module, args, output: calls.append(args[0].clone()))
    tokens = model.generate([0, 1, 2], num_steps=5, guidance_scale=guidance_scale,
                            generator=torch.Generator().manual_seed(0),
                            callback=lambda step, seq: masked_after.append(int((seq == model.mask_id).sum(1).max())))
    assert len(calls) == 5  # one forward per step (conditional and unconditional batched together)
    assert [c.shape[0] for c in calls] == [3 * passes_per_step] * 5
    assert masked_after == masking_schedule(5, model.seq_len)
    # the inputs of step i hold exactly the positions still masked after step i - 1
    assert [int((c[:3] == model.mask_id).sum(1).min()) for c in calls] == [model.seq_len, *masked_after[:-1]]
    assert tokens.shape == (3, 4, 2) and tokens.min() >= 0 and tokens.max() < 8


def test_decoding_keeps_what_it_revealed_and_is_reproducible():
    model = tiny_maskgit()
    history = []
    first = model.generate([2, 0], num_steps=4, generator=torch.Generator().manual_seed(7),
                           callback=lambda step, seq: history.append(seq.clone()))
    for before, after in zip(history, history[1:]):
        known = before != model.mask_id
        assert torch.equal(before[known], after[known])
    again = model.generate([2, 0], num_steps=4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, again)


def test_guidance_scale_one_gives_the_conditional_logits():
    model = tiny_maskgit(token_shape=(6,), index_vocab_size=1000, num_sub_tokens=2)  # radices 40, 25
    tokens = torch.randint(25, (3, model.seq_len))
    tokens[:, ::3] = model.mask_id
    labels = torch.tensor([0, 2, 1])
    null = torch.full_like(labels, model.null_label)
    with torch.no_grad():
        cond, uncond = model(tokens, labels), model(tokens, null)
        finite = torch.isfinite(cond)
        assert torch.allclose(model.guided_logits(tokens, labels, 1.0), cond)
        assert torch.allclose(model.guided_logits(tokens, labels, 0.0)[finite], uncond[finite], atol=1e-5)
        guided = model.guided_logits(tokens, labels, 2.5)
    assert torch.allclose(guided[finite], (uncond + 2.5 * (cond - uncond))[finite], atol=1e-5)
    assert not torch.allclose(cond, uncond)  # the label matters, so the checks above can fail
    # the second sub-token of each token takes 25 values only: the others are impossible
    assert torch.isinf(guided[:, 1::2, 25:]).all() and torch.isfinite(guided[:, 1::2, :25]).all()
    assert torch.isfinite(guided[:, 0::2]).all() and not guided.isnan().any()


def test_masked_loss_masks_a_cosine_share_and_drops_labels():
    model = tiny_maskgit(token_shape=(16,), index_vocab_size=64, num_sub_tokens=1, label_dropout=0.5)
    seen = {}
    model.register_forward_hook(lambda module, args, output: seen.update(tokens=args[0], labels=args[1]))
    tokens, labels = torch.randint(64, (4000, 16)), torch.randint(3, (4000,))
    out = model.masked_loss(tokens, labels, generator=torch.Generator().manual_seed(0))
    masked = seen["tokens"] == model.mask_id
    assert torch.equal(seen["tokens"][~masked], tokens[~masked]) and masked.sum(1).min() >= 1
    # E[ceil(16 cos(pi u / 2))] / 16 for u ~ U(0, 1), by quadrature
    u = (torch.arange(100000, dtype=torch.float64) + 0.5) / 100000
    expected = torch.ceil(16 * torch.cos(torch.pi / 2 * u)).clamp(1, 16).mean() / 16
    assert abs(float(masked.float().mean()) - float(expected)) < 0.01
    dropped = seen["labels"] == model.null_label
    assert abs(float(dropped.float().mean()) - 0.5) < 0.03 and torch.equal(seen["labels"][~dropped], labels[~dropped])
    assert abs(float(out.logs["loss"]) - math.log(64)) < 0.3  # an untrained model is near uniform


def test_training_overfits_a_tiny_token_set():
    model = tiny_maskgit(token_shape=(6, 2), index_vocab_size=16, num_sub_tokens=2, label_dropout=0.1).train()
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(16, (3, 6, 2), generator=generator)
    sub, labels = model.split.split(tokens), torch.arange(3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        loss = model.masked_loss(sub.repeat(8, 1), labels.repeat(8), generator=generator).loss
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    print(f"masked-token loss {first:.3f} -> {float(loss.detach()):.4f}")
    assert float(loss) < 0.05 * first
    # each class now decodes to its own sequence, greedily and in a few steps
    assert torch.equal(model.generate(labels, num_steps=4, temperature=0.0, choice_temperature=0.0), tokens)


def test_bad_inputs_are_refused():
    model = tiny_maskgit()
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 3\)"):
        model.generate([0, 3])
    with pytest.raises(ValueError, match="expected sub-tokens"):
        model(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="token_shape"):
        MaskGiT([2, 2, 2], 8)
