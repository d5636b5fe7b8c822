"""Our FlowMo beside the reference release's, both compiled, in one process: NFE, decode, training step.

    python benchmarks/reference_speed.py --reference PATH/TO/FlowMo [--settings tiny 64px] [--repeats 5]

PATH is a checkout of the release (github.com/kylesargent/FlowMo: the folder holding ``flowmo/models.py``).
It is not a dependency of the zoo: without it, or without its own requirement ``mup``
(``pip install --no-deps mup==1.0.0``), the benchmark says so and exits 0.

Each setting builds the release's ``FlowMo`` with its own code (its ``Flux`` encoder and decoder at the
setting's sizes, muP base shapes set to the model itself, so the readout multiplier is 1 as in its
``build_model``), then ours from the release model's weights through the zoo's converter, and checks that
both compute the same velocity before timing anything. Both run compiled the way each does by default:
the release through its own ``@torch.compile`` decorators on ``encode``, ``decode`` and ``_quantize`` (its
loss and sampler loops stay eager, as it ships them), ours through ``torch.compile`` of the decoder (pipeline
decoding) and of the whole stage-1A module (training). Measured, interleaved, best of ``--repeats``:

* one NFE: one decoder call under ``no_grad``;
* the 25-step guided decode: the release's ``rf_sample`` (pow_0.25 schedule, guidance 1.5 inside its
  interval, conditional and unconditional calls apart) against ``FlowMoPipeline.decode`` with the
  converted sampler settings (the same steps and guided steps; one batched call per guided step);
* one training step without LPIPS: the release's ``rf_loss`` (fat log-normal times, 10% code dropout,
  entropy and commitment losses), backward and ``torch.optim.Adam`` as its MuAdam runs it (plain Adam at
  width multiplier 1; torch's per-parameter loop on CPU) against the stage-1A module with the same loss,
  backward and the recipes' Adam (``tokenizer_zoo.training.optim.adam``: the same update, fused).

The share of the float32 matmul peak is each model's own FLOPs (torch's FlopCounterMode, run eagerly:
the release computes some outputs nobody reads, so it counts more) over its time and over the
``torch.mm`` peak measured in the same run. ``--bf16`` adds ours, compiled, under bf16 autocast beside
ours in float32 (on CPUs with native bf16; elsewhere "not measured: no native bf16").
Writes ``benchmarks/results/reference_speed.md``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from speed_common import bf16_autocast, bf16_cells, header, matmul_peak, native_bf16_flags, side_by_side
from torch.utils.flop_counter import FlopCounterMode
from train_throughput import TrainStep

from tokenizer_zoo.convert import flowmo as convert_flowmo
from tokenizer_zoo.convert.reading import Checkpoint
from tokenizer_zoo.layers.rope import default_axes_dims
from tokenizer_zoo.losses import FlowMatchingLoss
from tokenizer_zoo.presets import get_preset
from tokenizer_zoo.training.optim import adam
from tokenizer_zoo.training.stage1a import Stage1AModel

RESULTS = Path(__file__).resolve().parent / "results" / "reference_speed.md"
GOALS = {"NFE": 1.5, "training step": 1.3}  # ours / reference speed (issue 23)
PEAK_GOAL = 0.60  # share of the fp32 matmul peak on the 64 px setting
SAMPLING = {"sample_steps": 25, "schedule": "pow_0.25", "cfg": 1.5, "cfg_interval": "(.17,1.02)"}


@dataclass
class Setting:
    """A configuration both models are built at: (hidden size, depth, heads) of encoder and decoder."""

    label: str
    image_size: int
    batch: int
    encoder: tuple[int, int, int]
    decoder: tuple[int, int, int]
    patch_size: int = 4
    code_length: int = 16
    code_dim: int = 18
    bits_per_group: int = 9

    def release_config(self) -> dict:
        """The release's yaml tree for this setting (what its code and our converter both read)."""
        model = {"patch_size": self.patch_size, "code_length": self.code_length, "context_dim": self.code_dim,
                 "codebook_size_for_entropy": self.bits_per_group, "quantization_type": "lfq",
                 "entropy_loss_weight": 0.0025, "commit_loss_weight": 0.000625, "enc_mup_width": None,
                 "enc_depth": self.encoder[1], "dec_depth": self.decoder[1], "enable_cfg": True,
                 "posttrain_sample": False}
        return {"data": {"image_size": self.image_size}, "model": model,
                "opt": {"schedule": "fat_lognormal", "lpips_weight": 0.0}, "eval": {"sampling": dict(SAMPLING)}}


def tiny_setting() -> Setting:
    kwargs = {part: getattr(get_preset("flowmo_tiny"), part).kwargs for part in ("encoder", "decoder")}
    sizes = {part: (k["hidden_size"], k["depth"], k["num_heads"]) for part, k in kwargs.items()}
    return Setting("tiny: flowmo_tiny's sizes, 32 px", 32, 16, sizes["encoder"], sizes["decoder"])


SETTINGS = {
    "tiny": tiny_setting,
    # the release's width-2 muP model (hidden 192 x 2, 12 heads): the width of the fixture made by its code
    "64px": lambda: Setting("64 px, width 384 (12 heads), depth 2 + 2", 64, 8, (384, 2, 12), (384, 2, 12)),
}


def namespace(tree):
    """The release reads its OmegaConf config by attribute; nested namespaces read the same."""
    return SimpleNamespace(**{k: namespace(v) if isinstance(v, dict) else v for k, v in tree.items()}) \
        if isinstance(tree, dict) else tree


def import_release(path: Path):
    """(models, mup) of the release checkout at ``path``, or a one-line reason it cannot be used."""
    if not (path / "flowmo" / "models.py").is_file():
        return None, f"{path} is not a checkout of the FlowMo release (no flowmo/models.py there)"
    sys.path.insert(0, str(path))
    try:
        import mup
        from flowmo import models
    except ImportError as error:
        return None, (f"the release at {path} needs its own requirements: {error} "
                      "(pip install --no-deps mup==1.0.0)")
    return (models, mup), None


def build_release(models, mup, setting: Setting, tree: dict) -> torch.nn.Module:
    """The release's FlowMo with its own Flux encoder and decoder at the setting's sizes."""
    models.MUP_ENABLED = True
    model = models.FlowMo(width=1, config=namespace(tree))
    patch = setting.patch_size
    for part, (hidden, depth, heads), context in (("encoder", setting.encoder, setting.code_dim),
                                                  ("decoder", setting.decoder, setting.code_dim + 1)):
        params = models.FluxParams(in_channels=3 * patch**2, patch_size=patch, context_dim=context,
                                   hidden_size=hidden, mlp_ratio=4.0, num_heads=heads, depth=depth,
                                   axes_dim=default_axes_dims(hidden // heads), theta=10_000, qkv_bias=True)
        setattr(model, part, models.Flux(params, name=part))
    mup.set_base_shapes(model, copy.deepcopy(model))  # base = the model itself: readout width multiplier 1
    return model


def build_ours(release: torch.nn.Module, tree: dict):
    """Our pipeline with the release model's weights, through the zoo's converter."""
    state = {k: v.detach().clone() for k, v in release.state_dict().items()}
    checkpoint = Checkpoint(path=Path("release-model"), name="the release model", content={"model_ema_state_dict": state})
    pipe = convert_flowmo.load(checkpoint, config=tree)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def flops_of(fn) -> int:
    """FLOPs of ``fn`` run eagerly (compiled callables fall back to eager inside)."""
    counter = FlopCounterMode(display=False)
    with torch.compiler.set_stance("force_eager"), counter:
        fn()
    return counter.get_total_flops()


def measure(setting: Setting, models, mup, repeats: int, with_bf16: bool = False) -> list[dict]:
    torch.manual_seed(0)
    tree = setting.release_config()
    release = build_release(models, mup, setting, tree).eval()
    pipe = build_ours(release, tree)
    size, batch = setting.image_size, setting.batch
    images = torch.rand(batch, 3, size, size) * 2 - 1
    codes = torch.sign(torch.randn(batch, setting.code_length, setting.code_dim))
    code_input = torch.cat([codes, torch.ones_like(codes[..., :1])], dim=-1)  # the release appends its mask channel
    x_t, t = torch.randn(batch, 3, size, size), torch.full((batch,), 0.7)
    with torch.no_grad(), torch.compiler.set_stance("force_eager"):
        difference = (release._decode(x_t, code_input, t)[0] - pipe.decoder(codes, x_t, t)).abs().max().item()
    if difference > 1e-4:
        raise RuntimeError(f"{setting.label}: the converted model differs from the release's by {difference:.2e}")
    print(f"{setting.label}: our converted decoder equals the release's velocity to {difference:.1e}", flush=True)
    decoder = torch.compile(pipe.decoder)
    compiled_pipe = type(pipe)(**{**pipe.components, "decoder": decoder})
    compiled_pipe.set_progress_bar_config(disable=True)
    sampling = convert_flowmo.release_sampling(convert_flowmo.read_release_config(tree, "the setting"))
    z = torch.randn(batch, 3, size, size)

    def release_decode():
        return models.rf_sample(release, z.clone(), code_input, null_code=code_input * 0.0, sample_steps=25, cfg=1.5,
                                schedule=SAMPLING["schedule"])[-1]

    def our_decode():
        return compiled_pipe.decode(codes, **sampling, output_type="pt", generator=torch.Generator().manual_seed(0))

    rows = [("NFE", {"reference": lambda: release.decode(x_t, code_input, t), "ours": lambda: decoder(codes, x_t, t)}),
            ("25-step guided decode", {"reference": release_decode, "ours": our_decode})]
    results = []
    with torch.no_grad():
        for label, fns in rows:
            results.append(timed(label, {**fns, **({"ours bf16": bf16_autocast(fns["ours"])} if with_bf16 else {})}, repeats,
                                 dict(fns)))
    config = namespace(tree)
    release.train()
    release_optimizer = torch.optim.Adam(release.parameters(), lr=1e-4, betas=(0.9, 0.95))

    def release_step():
        release_optimizer.zero_grad(set_to_none=True)
        loss, _ = models.rf_loss(config, release, {"image": images}, {})
        loss.backward()
        release_optimizer.step()

    loss = FlowMatchingLoss(perceptual_weight=0)
    ours = Stage1AModel(pipe.encoder, pipe.quantizer, pipe.decoder, loss).train()
    our_optimizer = adam(ours.parameters(), lr=1e-4, betas=(0.9, 0.95))
    our_step = TrainStep(torch.compile(ours), loss, our_optimizer, images)
    eager_step = TrainStep(ours, loss, our_optimizer, images)
    our_bf16_step = {"ours bf16": TrainStep(our_step.model, loss, our_optimizer, images, autocast=True)} if with_bf16 else {}
    results.append(timed("training step (no LPIPS)", {"reference": release_step, "ours": our_step, **our_bf16_step},
                         repeats, {"reference": release_step, "ours": eager_step}))
    return results


def timed(label: str, fns: dict, repeats: int, eager: dict) -> dict:
    """The eager FLOPs of ``eager``'s callables, then best times of ``fns`` after two interleaved warm-up rounds
    (compilation; a compile of one can invalidate the other's guards once, e.g. einops' backend list)."""
    flops = {name: flops_of(fn) for name, fn in eager.items()}
    start = time.perf_counter()
    for _ in range(2):
        for fn in fns.values():
            fn()
    warm_up = time.perf_counter() - start
    return {"label": label, "warm_up": warm_up, "flops": flops, **side_by_side(fns, repeats)}


def verdict(label: str, ratio: float) -> str:
    goal = GOALS.get(label.split(" (")[0])
    if goal is None:
        return "–"
    return f"≥ {goal}x: {'met' if ratio >= goal else f'missed by {goal - ratio:.2f}x'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, default=None, help="a checkout of github.com/kylesargent/FlowMo")
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=["tiny", "64px"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--bf16", action="store_true", help="also time ours compiled under bf16 autocast (CPUs "
                                                             "with native bf16 only)")
    args = parser.parse_args()
    if args.reference is None:
        print("skipped: give the FlowMo release checkout with --reference PATH (it is not a dependency of the zoo)")
        return 0
    release, reason = import_release(args.reference.resolve())
    if release is None:
        print(f"skipped: {reason}")
        return 0
    with_bf16 = args.bf16 and bool(native_bf16_flags())
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_peak()
    lines = ["# Our FlowMo against the reference release's, compiled against compiled", "",
             "Measured in one run of `python benchmarks/reference_speed.py --reference PATH` (see its docstring).",
             "", header(peak).replace("\n", "; "), "",
             "| setting | measure | reference ms | ours ms | ours / reference speed | goal | "
             "% of fp32 matmul peak (ours / reference) | warm-up s (all) |"
             + (" ours bf16 ms | ours bf16 / fp32 speed |" if args.bf16 else ""), "|---" * (8 + 2 * args.bf16) + "|"]
    peak_shares = []
    for name in args.settings:
        setting = SETTINGS[name]()
        for r in measure(setting, *release, args.repeats, with_bf16):
            ratio = r["reference"] / r["ours"]
            share = [100 * r["flops"][who] / r[who] / peak for who in ("ours", "reference")]
            lines.append(f"| {setting.label}, batch {setting.batch} | {r['label']} | {1e3 * r['reference']:.1f} | "
                         f"{1e3 * r['ours']:.1f} | {ratio:.2f}x | {verdict(r['label'], ratio)} | "
                         f"{share[0]:.0f}% / {share[1]:.0f}% | {r['warm_up']:.0f}"
                         + bf16_cells(args.bf16, r["ours"], r.get("ours bf16"), 1e3, 1) + " |")
            print(lines[-1], flush=True)
            if name == "64px":
                peak_shares.append(share[0])
    if peak_shares:
        low, high = min(peak_shares), max(peak_shares)
        verdict_64 = "met" if low >= 100 * PEAK_GOAL else f"missed by {100 * PEAK_GOAL - low:.0f} points at worst"
        lines += ["", f"Ours on the 64 px setting: {low:.0f}-{high:.0f}% of the fp32 matmul peak; goal ≥ "
                      f"{100 * PEAK_GOAL:.0f}% (issue 23): {verdict_64}."]
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
