from pathlib import Path

import pytest
import torch

from tokenizer_zoo.pipelines import FlowMoPipeline
from tokenizer_zoo.presets import build_tokenizer
from tokenizer_zoo.samplers import ShiftedEulerScheduler


def tiny_pipeline(**overrides) -> FlowMoPipeline:
    torch.manual_seed(0)
    parts = build_tokenizer("flowmo_tiny", **overrides)
    # a freshly initialised decoder has zero gates and ignores its input: perturb every weight so
    # that codes, noise and guidance all change the output
    with torch.no_grad():
        for p in parts.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    pipe = FlowMoPipeline(parts.encoder, parts.quantizer, parts.decoder, ShiftedEulerScheduler())
    pipe.info = {"preset": "flowmo_tiny", "dataset": "embedded", "steps": 0}
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture()
def hub_recorder(monkeypatch) -> dict:
    """Replaces the Hub calls of ``push_to_hub`` by recorders: ``create_repo`` answers with the repo
    ``someone/<name>``; the returned dict gets the calls and every uploaded file's bytes."""
    from tokenizer_zoo.pipelines import hub as hub_module

    recorded = {}

    class Repo:
        def __init__(self, name):
            self.repo_id = f"someone/{name.split('/')[-1]}"

    def fake_create_repo(repo_id, **kwargs):
        recorded["create_repo"] = (repo_id, kwargs)
        return Repo(repo_id)

    def fake_upload_folder(repo_id, folder_path, **kwargs):
        files = {p.relative_to(folder_path).as_posix(): p.read_bytes() for p in Path(folder_path).rglob("*") if p.is_file()}
        recorded["upload"] = {"repo_id": repo_id, "kwargs": kwargs, "files": files}
        return "https://example.invalid/commit/1"

    monkeypatch.setattr(hub_module, "create_repo", fake_create_repo)
    monkeypatch.setattr(hub_module, "upload_folder", fake_upload_folder)
    return recorded


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture()
def images():
    from tokenizer_zoo.data import EmbeddedPhotos

    data = EmbeddedPhotos("eval", image_size=32)
    return (torch.stack([data[i]["pixel_values"] for i in range(3)]) + 1) / 2  # [0, 1], the pipelines' convention
