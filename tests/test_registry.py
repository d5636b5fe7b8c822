import importlib
import textwrap
import warnings

import pytest

from tokenizer_zoo.registry import QUANTIZERS, PluginImportError, Registry, RegistryError


class Alpha:
    def __init__(self, width=1):
        self.width = width


class Beta:
    pass


def test_register_build_get_names():
    reg = Registry("widget", "tokenizer_zoo.test-nothing")
    reg.register("alpha")(Alpha)
    reg.register("beta", Beta)
    assert reg.names() == ["alpha", "beta"]
    assert reg.get("alpha") is Alpha
    assert reg.build("alpha", width=3).width == 3
    assert reg.name_of(Beta) == "beta"
    assert reg.source("alpha") == "<module tests>"  # not from an installed distribution: named by its package


def test_duplicate_name_raises_but_same_object_is_idempotent():
    reg = Registry("widget", "tokenizer_zoo.test-nothing")
    reg.register("alpha", Alpha)
    reg.register("alpha", Alpha)
    with pytest.raises(RegistryError, match="already registered.*pick another name"):
        reg.register("alpha", Beta)


def test_unknown_name_lists_known_names_and_closest_matches():
    reg = Registry("widget", "tokenizer_zoo.test-nothing")
    for name in ("lfq", "fsq", "vq", "continuous"):
        reg.register(name, type(name, (), {}))
    with pytest.raises(RegistryError) as info:
        reg.get("lfqq")
    message = str(info.value)
    assert "unknown widget 'lfqq'" in message
    assert "Did you mean 'lfq'" in message
    assert "Known widgets: continuous, fsq, lfq, vq" in message


def test_builtin_quantizers_come_from_core_entry_points():
    names = QUANTIZERS.names()
    assert {"lfq", "fsq", "vq", "continuous"} <= set(names)
    assert QUANTIZERS.source("lfq") == "tokenizer-zoo"


def test_installed_plugin_is_discovered_with_its_distribution():
    assert "bsq" in QUANTIZERS.names()
    assert QUANTIZERS.source("bsq") == "tokenizer-zoo-bsq"


def test_entry_points_are_loaded_lazily_and_once(monkeypatch):
    reg = Registry("quantizer", "tokenizer_zoo.quantizers")
    calls = []
    real = importlib.metadata.entry_points

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", counting)
    reg.register("local", Alpha)
    assert reg.get("local") is Alpha and calls == []  # known names never trigger discovery
    reg.get("lfq")
    reg.names()
    with pytest.raises(RegistryError):
        reg.get("does-not-exist")
    assert len(calls) == 1


def _write_fake_distribution(root, dist_name, module_name, module_source, entry_points):
    (root / f"{module_name}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{dist_name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def test_broken_plugin_is_reported_with_its_distribution_and_others_keep_working(tmp_path, monkeypatch):
    _write_fake_distribution(
        tmp_path,
        "broken-quantizer-plugin",
        "broken_quantizer_mod",
        "raise ImportError('needs libfoo >= 9')\n",
        "[tokenizer_zoo.quantizers]\nbroken = broken_quantizer_mod:Broken\n",
    )
    _write_fake_distribution(
        tmp_path,
        "working-quantizer-plugin",
        "working_quantizer_mod",
        "class Working:\n    pass\n",
        "[tokenizer_zoo.quantizers]\nworking = working_quantizer_mod:Working\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    reg = Registry("quantizer", "tokenizer_zoo.quantizers")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = reg.names()
    assert {"lfq", "bsq", "working"} <= set(names) and "broken" not in names
    assert reg.source("working") == "working-quantizer-plugin"
    (warning,) = [w for w in caught if "broken" in str(w.message)]
    assert "broken-quantizer-plugin" in str(warning.message) and "needs libfoo >= 9" in str(warning.message)
    with pytest.raises(PluginImportError, match="broken-quantizer-plugin.*needs libfoo"):
        reg.get("broken")
    assert [f.distribution for f in reg.failures] == ["broken-quantizer-plugin"]


def test_plugin_clashing_with_a_builtin_name_is_reported_not_fatal(tmp_path, monkeypatch):
    _write_fake_distribution(
        tmp_path,
        "clashing-plugin",
        "clashing_mod",
        "class Impostor:\n    pass\n",
        "[tokenizer_zoo.quantizers]\nlfq = clashing_mod:Impostor\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    reg = Registry("quantizer", "tokenizer_zoo.quantizers")
    with pytest.warns(RuntimeWarning, match="clashing-plugin.*already registered"):
        reg.names()
    assert reg.get("lfq").__name__ == "LFQuantizer"


def test_a_name_from_two_plugin_distributions_is_refused_with_both_names(tmp_path, monkeypatch):
    for dist in ("first-twin-plugin", "second-twin-plugin"):
        module = dist.replace("-", "_") + "_mod"
        _write_fake_distribution(tmp_path, dist, module, "class Twin:\n    pass\n",
                                 f"[tokenizer_zoo.quantizers]\ntwin = {module}:Twin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    reg = Registry("quantizer", "tokenizer_zoo.quantizers")
    with pytest.warns(RuntimeWarning, match="'twin' is provided by two distributions"):
        names = reg.names()
    assert "twin" not in names and "lfq" in names
    with pytest.raises(PluginImportError) as info:
        reg.get("twin")
    assert "first-twin-plugin" in str(info.value) and "second-twin-plugin" in str(info.value)
