"""End-to-end tests of recipes/flowmo_distill.py on a tiny FlowMo teacher built in the test."""

import pytest
import torch

from tests.pipelines.conftest import tiny_pipeline
from tests.recipes import run_recipe
from tests.test_recipe_flowmo_1a import _weights
from tokenizer_zoo.errors import run_main
from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.samplers import FewStepScheduler, ShiftedEulerScheduler

FAST = ["batch_size=2", "num_trajectories=4", "eval_images=2", "log_every=1", "ema_decay=0.9", "lr=1e-3",
        "trained_steps=[1, 2]", "default_steps=2", "chain_steps=[1, 2]", "chain_weight=0.5",
        "guidance_scales=[1.0, 1.5]", "checkpoint_every=2",
        "eval_every=2"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher") / "pipeline"
    pipe = tiny_pipeline()
    pipe.scheduler = ShiftedEulerScheduler(num_inference_steps=4)  # a 4-step teacher keeps the test short
    pipe.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_resume_equals_uninterrupted_distillation_and_writes_a_few_step_student(tmp_path, teacher):
    common = FAST + [f"teacher={teacher}"]
    run_recipe("flowmo_distill", common + [f"output_dir={tmp_path / 'straight'}", "max_steps=4"])
    run_recipe("flowmo_distill", common + [f"output_dir={tmp_path / 'resumed'}", "max_steps=2"])
    run_recipe("flowmo_distill", common + [f"output_dir={tmp_path / 'resumed'}", "max_steps=4"])
    straight, resumed, initial = (_weights(p) for p in (tmp_path / "straight" / "pipeline",
                                                        tmp_path / "resumed" / "pipeline", teacher))
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], atol=1e-6, rtol=0, msg=name)
        if not name.startswith("decoder."):
            assert torch.equal(straight[name], initial[name]), name  # encoder and quantizer frozen
    switches = {n for n in straight if n.startswith(("decoder.step_embedder", "decoder.guidance_embedder"))}
    assert switches and set(straight) - switches == set(initial)
    student = FlowMoPipeline.from_pretrained(tmp_path / "resumed" / "pipeline")
    assert isinstance(student.scheduler, FewStepScheduler) and student.sampling_defaults["num_inference_steps"] == 2
    assert student.info["recipe"] == "flowmo_distill" and student.info["teacher"] == str(teacher)
    assert student.info["best_step"] in (0, 2, 4)
    assert sorted(p.name for p in (tmp_path / "resumed" / "grids").glob("*.png")) == [
        "step_00000000.png", "step_00000002.png", "step_00000004.png"]


def test_a_teacher_that_is_not_a_flowmo_pipeline_is_one_line(tmp_path, capsys):
    recipe = __import__("tests.recipes", fromlist=["load_recipe"]).load_recipe("flowmo_distill")
    (tmp_path / "empty").mkdir()
    assert run_main(recipe.main, "flowmo_distill.py", [f"teacher={tmp_path / 'empty'}",
                                                        f"output_dir={tmp_path / 'out'}"]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "has no model_index.json" in error
    assert not (tmp_path / "out" / "pipeline").exists()
