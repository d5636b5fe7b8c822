"""The README's quickstart snippets run as written (against a tiny pipeline saved where they look)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.generation.test_maskgit import tiny_maskgit
from tests.pipelines.conftest import tiny_pipeline
from tokenizer_zoo.pipelines import MaskGiTPipeline

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippets(kind: str) -> list[str]:
    pattern = rf"<!-- readme-test: {kind} -->\s*```{kind}\n(.*?)```"
    found = re.findall(pattern, README.read_text(), flags=re.S)
    assert found, f"no {kind} snippet marked for testing in README.md"
    return found


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    tiny_pipeline().save_pretrained(tmp_path / "outputs" / "flowmo_1a_tiny" / "pipeline")
    maskgit = tiny_maskgit(token_shape=(16, 2), index_vocab_size=512, num_sub_tokens=2, num_classes=10)
    MaskGiTPipeline(maskgit, tiny_pipeline()).save_pretrained(tmp_path / "outputs" / "maskgit_digits" / "pipeline")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_python_quickstart_runs(workdir, capsys):
    for snippet in _snippets("python"):
        exec(compile(snippet, "README.md", "exec"), {})
    assert (workdir / "reconstruction.png").is_file()
    out = capsys.readouterr().out
    assert "torch.Size([1, 16, 2])" in out
    assert (workdir / "digits.png").is_file() and "torch.Size([2, 16, 2])" in out


def test_cli_quickstart_runs(workdir):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for snippet in _snippets("bash"):
        done = subprocess.run(["bash", "-e", "-c", snippet], cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    assert (workdir / "tokens.safetensors").is_file()
    assert (workdir / "decoded" / "teal.png").is_file()
    assert (workdir / "recon" / "grid.png").is_file()
