"""FSDP2 (``accelerate launch --use_fsdp``) on 2 CPU gloo processes: training equals one process with the
same global batch (which the DDP test shows DDP equals), resume is exact, a sharded checkpoint resumes in
one process, the pipeline loads and decodes, and no checkpoint file is a pickle."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from tests.recipes import RECIPES
from tests.test_recipe_flowmo_1a import FAST, _run, _weights
from tokenizer_zoo.data import EmbeddedPhotos
from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.training.checkpoints import checkpoint_dirs

STEPS = ["max_steps=3", "checkpoint_every=2"]


def _fsdp_launch(out, by_config: bool = False):
    """2 gloo processes with ``--use_fsdp``, or with ``--multi_gpu`` and ``fsdp=true``."""
    how = ["--multi_gpu"] if by_config else ["--use_fsdp"]
    command = [sys.executable, "-m", "accelerate.commands.launch", *how, "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
               str(RECIPES / "flowmo_1a.py"), *FAST, *STEPS, "batch_size=2", f"output_dir={out}",
               *(["fsdp=true"] if by_config else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def _assert_close(actual: dict, expected: dict, **tolerance):
    assert actual.keys() == expected.keys() and expected
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, msg=name, **tolerance)


def _assert_no_pickle(folder):
    """Every file is JSON or a safetensors file that safetensors opens (a pickle starts with 0x80)."""
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert files and all(path.suffix in (".json", ".safetensors") for path in files), files
    for path in files:
        assert path.read_bytes()[:1] != b"\x80", path
        if path.suffix == ".safetensors":
            with safe_open(path, framework="pt"):
                pass


@pytest.mark.slow
def test_fsdp_trains_like_one_process_resumes_exactly_and_its_checkpoint_loads_in_one_process(tmp_path):
    straight, resumed = tmp_path / "fsdp", tmp_path / "fsdp_resumed"
    _fsdp_launch(straight)
    step2, step3 = checkpoint_dirs(straight)
    assert [step2.name, step3.name] == ["step_00000002", "step_00000003"]
    shards = sorted((step2 / "sharded").glob("shard-*.safetensors"))  # one file per process, each holding
    key = ".models.0.decoder.transformer.blocks.0.code.mlp.0.weight"  # its half of a sharded weight
    halves = [safe_open(path, framework="pt").get_slice(key).get_shape() for path in shards]
    assert len(shards) == 2 and halves[0] == halves[1] and 2 * halves[0][0] == _weights(straight / "pipeline")[
        "decoder.transformer.blocks.0.code.mlp.0.weight"].shape[0]
    _assert_no_pickle(straight / "checkpoints")

    # FSDP equals one process with the same global batch, to the DDP test's tolerance
    _run(FAST + STEPS + ["batch_size=4", f"output_dir={tmp_path / 'single'}"])
    single = _weights(tmp_path / "single" / "pipeline")
    _assert_close(_weights(straight / "pipeline"), single, atol=5e-5, rtol=1e-4)

    # resumed from step 2 (FSDP asked for by the config), it ends on the uninterrupted run's weights
    shutil.copytree(step2, resumed / "checkpoints" / step2.name)
    output = _fsdp_launch(resumed, by_config=True)
    assert f"resumed from {resumed / 'checkpoints' / step2.name} at step 2" in output
    _assert_close(_weights(resumed / "pipeline"), _weights(straight / "pipeline"), atol=1e-6, rtol=0)

    # the sharded checkpoint resumes in one process (resharded by torch.distributed.checkpoint)
    one = tmp_path / "one_process"
    shutil.copytree(step2, one / "checkpoints" / step2.name)
    _run(FAST + STEPS + ["batch_size=4", f"output_dir={one}"])
    _assert_close(_weights(one / "pipeline"), single, atol=5e-5, rtol=1e-4)

    # the pipeline the FSDP run wrote loads and decodes as the one-process run's does
    images = torch.stack([EmbeddedPhotos("eval", image_size=32)[i]["pixel_values"] for i in range(2)])
    recon = {name: FlowMoPipeline.from_pretrained(folder / "pipeline")(
        (images + 1) / 2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt").images
        for name, folder in (("fsdp", straight), ("single", tmp_path / "single"))}
    assert recon["fsdp"].shape == images.shape and torch.isfinite(recon["fsdp"]).all()
    torch.testing.assert_close(recon["fsdp"], recon["single"], atol=1e-3, rtol=0)
