"""recipes/maskgit.py: token cache, training with resume, sample grids, metrics rows, the pipeline folder."""

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from tests.metrics.test_generation import MeanColourFeatures
from tests.pipelines.conftest import tiny_pipeline
from tests.recipes import assert_trained, load_recipe, run_recipe
from tokenizer_zoo.data import EmbeddedDigits
from tokenizer_zoo.pipelines import MaskGiTPipeline

TINY = ["hidden_size=32", "num_layers=1", "num_heads=2", "batch_size=8", "warmup_steps=10", "log_every=1",
        "checkpoint_every=2", "grid_every=100", "grid_per_class=1", "eval_steps=2", "num_inference_steps=4", "eval_samples=0"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer") / "pipeline"
    tiny_pipeline().save_pretrained(folder)
    return folder


def _pooled_grey(data, count):
    grey = [data[i]["pixel_values"].numpy().mean(0) for i in range(count)]
    return np.stack([image.reshape(16, 2, 16, 2).mean((1, 3)).ravel() for image in grey])


@torch.no_grad()
def _heldout_masked_loss(pipe: MaskGiTPipeline, count: int = 40) -> float:
    """MaskGiT's masked-token loss on held-out digits (their tokens and labels), fixed masks."""
    data = EmbeddedDigits("eval")
    images = torch.stack([data[i]["pixel_values"] for i in range(count)])
    sub_tokens = pipe.maskgit.split.split(pipe.tokenizer.encode((images + 1) / 2).indices)
    labels = torch.tensor([int(data[i]["label"]) for i in range(count)])
    pipe.maskgit.eval()
    return pipe.maskgit.masked_loss(sub_tokens, labels, generator=torch.Generator().manual_seed(0)).loss.item()


def _maskgit_weights(folder):
    return MaskGiTPipeline.from_pretrained(folder / "pipeline").maskgit.state_dict()


def test_resumed_training_equals_an_uninterrupted_run(tmp_path, tokenizer):
    common = [f"tokenizer={tokenizer}", *TINY]
    run_recipe("maskgit", [*common, f"output_dir={tmp_path / 'straight'}", "max_steps=6"])
    run_recipe("maskgit", [*common, f"output_dir={tmp_path / 'resumed'}", "max_steps=4"])
    assert len(list((tmp_path / "resumed" / "tokens").glob("tokens_train_*.safetensors"))) == 1
    pipe = run_recipe("maskgit", [*common, f"output_dir={tmp_path / 'resumed'}", "max_steps=6"])
    assert pipe.info["steps"] == 6 and (tmp_path / "resumed" / "grids" / "step_00000006.png").is_file()
    straight, resumed = _maskgit_weights(tmp_path / "straight"), _maskgit_weights(tmp_path / "resumed")
    for name, value in straight.items():
        assert torch.allclose(resumed[name], value, atol=1e-6), name
    loaded = MaskGiTPipeline.from_pretrained(tmp_path / "resumed" / "pipeline")
    assert loaded.maskgit.config.token_shape == [16, 2] and loaded.maskgit.split.radices == [512, 512]
    initial = run_recipe("maskgit", [*common, f"output_dir={tmp_path / 'initial'}", "max_steps=0"])  # no step
    assert_trained(initial.maskgit.state_dict(), loaded.maskgit.state_dict(),
                   _heldout_masked_loss(initial), _heldout_masked_loss(loaded))
    assert loaded.sampling_defaults["num_inference_steps"] == 4 and loaded.info["recipe"] == "maskgit"


def test_metrics_rows_with_a_stand_in_feature_network(tmp_path, tokenizer, monkeypatch):
    recipe = load_recipe("maskgit")

    class StandIn(MeanColourFeatures):
        pool_features, spatial_features, num_classes, source = 2, 2, None, "a tiny random stand-in (test only)"

        @classmethod
        def from_pretrained(cls):
            return cls()

    monkeypatch.setattr(recipe, "InceptionFeatureExtractor", StandIn)
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    pipe = recipe.main([f"tokenizer={tokenizer}", *TINY, f"output_dir={tmp_path}", "max_steps=2", "eval_samples=20",
                        "reference_images=30", "classifier_images=200", "eval_batch_size=10"])
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["reference"] == "30 real images of digits [train]"
    assert set(saved["rows"]) == {"MaskGiT samples", "tokenizer reconstructions of held-out images", "real held-out images"}
    assert all(row["images"] == 20 and 0 <= row["precision"] <= 1 for row in saved["rows"].values())
    assert "pt_inception" in saved["skipped"]["inception_score"]
    table = (tmp_path / "metrics.md").read_text()
    assert "| MaskGiT samples | 20 |" in table and "n/a" in table
    assert pipe.info["metrics"]["gfid (MaskGiT samples)"] == saved["rows"]["MaskGiT samples"]["gfid"]
    assert (tmp_path / "samples.png").is_file()
    # class accuracy of the real held-out row, recomputed with scikit-learn on 2 x 2-pooled grey pixels
    train, held = EmbeddedDigits("train"), EmbeddedDigits("eval")
    model = LogisticRegression(max_iter=1000).fit(_pooled_grey(train, 200), train.labels[:200].numpy())
    expected = (model.predict(_pooled_grey(held, 20)) == held.labels[:20].numpy()).mean()
    assert saved["rows"]["real held-out images"]["class_accuracy"] == pytest.approx(expected, abs=1e-4)
