"""Pipeline folders name only classes the zoo's registries, plugins and diffusers' schedulers provide: a hostile
``model_index.json`` gets one line, and the module it names is never imported."""

import json
import sys

import pytest
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler

from tests.pipelines.conftest import tiny_pipeline
from tokenizer_zoo.errors import one_line
from tokenizer_zoo.pipelines import FlowMoPipeline, MaskGiTPipeline, load_pipeline
from tokenizer_zoo.pipelines.allowlist import ForbiddenComponentError

PROBE = "zoo_hostile_probe"


@pytest.fixture()
def probe(tmp_path, monkeypatch):
    """An importable module whose import leaves a marker file: the module a hostile folder names."""
    code = tmp_path / "code"
    code.mkdir()
    marker = tmp_path / "imported"
    (code / f"{PROBE}.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Boom:\n    pass\n")
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.delitem(sys.modules, PROBE, raising=False)
    yield marker
    sys.modules.pop(PROBE, None)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("genuine")
    tiny_pipeline().save_pretrained(folder)
    return folder


def _hostile_copy(saved, tmp_path, component="encoder", entry=(PROBE, "Boom"), index="model_index.json"):
    import shutil

    folder = tmp_path / "hostile"
    shutil.copytree(saved, folder)
    config = json.loads((folder / index).read_text())
    if index == "model_index.json":
        config[component] = list(entry)
    else:
        config["components"][component].update(module=entry[0], **{"class": entry[1]})
    (folder / index).write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("loader", [load_pipeline, FlowMoPipeline.from_pretrained, DiffusionPipeline.from_pretrained],
                         ids=["load_pipeline", "FlowMoPipeline", "DiffusionPipeline"])
def test_a_hostile_component_gets_one_line_and_is_never_imported(saved, tmp_path, probe, loader):
    folder = _hostile_copy(saved, tmp_path)
    with pytest.raises(ForbiddenComponentError) as caught:
        loader(folder)
    line = one_line(caught.value)
    assert "\n" not in str(caught.value)
    assert f"encoder is {PROBE}.Boom" in line and "tokenizer_zoo.encoders.flowmo.FlowMoEncoder" in line
    assert not probe.exists() and PROBE not in sys.modules


def test_os_system_and_the_metadata_file_are_refused_too(saved, tmp_path, probe):
    with pytest.raises(ForbiddenComponentError, match=r"scheduler is os\.system .*a diffusers scheduler"):
        load_pipeline(_hostile_copy(saved, tmp_path, "scheduler", ("os", "system")))
    # tokenizer_zoo.json names modules too (for the install hint): an unknown one is never imported
    folder = _hostile_copy(saved, tmp_path / "meta", "decoder", index="tokenizer_zoo.json")
    assert isinstance(FlowMoPipeline.from_pretrained(folder), FlowMoPipeline)
    assert not probe.exists()


def test_an_unknown_plugin_class_names_the_distribution_to_install(saved, tmp_path):
    folder = _hostile_copy(saved, tmp_path, "quantizer", ("tokenizer_zoo_nonesuch.q", "NoneSuchQuantizer"))
    meta = json.loads((folder / "tokenizer_zoo.json").read_text())
    meta["components"]["quantizer"].update(module="tokenizer_zoo_nonesuch.q", distribution="tokenizer-zoo-nonesuch",
                                           **{"class": "NoneSuchQuantizer"})
    (folder / "tokenizer_zoo.json").write_text(json.dumps(meta))
    with pytest.raises(ForbiddenComponentError, match="pip install tokenizer-zoo-nonesuch.*allowed for quantizer|"
                                                      "allowed for quantizer.*pip install tokenizer-zoo-nonesuch"):
        load_pipeline(folder)


def test_a_maskgit_folder_may_only_hold_a_zoo_tokenizer(tmp_path, probe):
    from tests.generation.test_maskgit import tiny_maskgit

    maskgit = tiny_maskgit(token_shape=(16, 2), index_vocab_size=512, num_sub_tokens=2, num_classes=10)
    MaskGiTPipeline(maskgit, tiny_pipeline()).save_pretrained(tmp_path / "mg")
    config = json.loads((tmp_path / "mg" / "model_index.json").read_text())
    config["tokenizer"] = [PROBE, "Boom"]
    (tmp_path / "mg" / "model_index.json").write_text(json.dumps(config))
    with pytest.raises(ForbiddenComponentError, match="tokenizer is .*allowed for tokenizer: "
                                                      "tokenizer_zoo.pipelines.flowmo.FlowMoPipeline"):
        DiffusionPipeline.from_pretrained(tmp_path / "mg")
    assert not probe.exists()


def test_genuine_folders_still_load_through_diffusers(saved, tmp_path):
    pipe = DiffusionPipeline.from_pretrained(saved)
    assert isinstance(pipe, FlowMoPipeline)
    reference = tiny_pipeline()
    for name, tensor in reference.decoder.state_dict().items():
        assert torch.equal(pipe.decoder.state_dict()[name], tensor), name
    reference.scheduler = FlowMatchEulerDiscreteScheduler()  # diffusers' schedulers are allowed
    reference.save_pretrained(tmp_path / "diffusers_scheduler")
    assert isinstance(load_pipeline(tmp_path / "diffusers_scheduler").scheduler, FlowMatchEulerDiscreteScheduler)
