"""recipes/config.py: typed recipe configs (OmegaConf structured), errors that name the key, before any model."""

import pytest

from tests.recipes import load_recipe

CONFIG_DIR = load_recipe("config").CONFIG_DIR
RECIPES = {"flowmo_1a": "Stage1AConfig", "flowmo_1b": "Stage1BConfig", "maskgit": "MaskGiTConfig",
           "flowmo_distill": "DistillConfig"}


def parse(recipe: str, *overrides: str, config: str = "tiny.yaml"):
    module = load_recipe(recipe)
    return load_recipe("config").load_config(getattr(module, RECIPES[recipe]), ["--config", str(CONFIG_DIR / config),
                                                                              *overrides], config, "test")


RECIPE_CONFIGS = sorted(p for p in CONFIG_DIR.glob("*.yaml") if not p.name.startswith("accelerate"))  # not launch configs


@pytest.mark.parametrize("path", RECIPE_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_parses_with_its_recipe(path):
    recipe = "maskgit" if path.name.startswith("maskgit") else "flowmo_1b" if path.stem.endswith("_1b") else "flowmo_1a"
    recipe = "flowmo_distill" if path.stem.endswith("_distill") else recipe
    cfg = parse(recipe, config=path.name)
    assert type(cfg).__name__ == RECIPES[recipe] and isinstance(cfg.max_steps, int) and isinstance(cfg.lr, float)


def test_values_are_coerced_to_their_annotations():
    cfg = parse("flowmo_1a", "lr=5e-5", "max_steps=12", "adam_betas=[0.8, 0.99]", "encoder_freeze_step=7",
                "preset_overrides={quantizer_name: fsq}", "preset_overrides.patch_size=8", "image_column=img")
    assert cfg.lr == 5e-5 and type(cfg.lr) is float and cfg.max_steps == 12 and cfg.encoder_freeze_step == 7
    assert cfg.adam_betas == (0.8, 0.99) and cfg.image_column == "img"
    assert cfg.preset_overrides == {"quantizer_name": "fsq", "patch_size": 8}
    assert parse("flowmo_1a", "lr=1").lr == 1.0 and type(parse("flowmo_1a", "lr=1").lr) is float


@pytest.mark.parametrize("override, message", [
    ("max_steps=abc", r"^command line: config key 'max_steps': Value 'abc' of type 'str' could not be converted to Integer$"),
    ("batch_size=1e3", r"^command line: config key 'batch_size': Value '1000.0' of type 'float' could not be converted"),
    ("encoder_freeze_step=soon", r"config key 'encoder_freeze_step'"),
    ("adam_betas=[0.9, high]", r"config key 'adam_betas"),
    ("lrr=1e-3", r"^command line: unknown config key 'lrr'; did you mean 'lr'\?$"),
    ("max_step=3", r"did you mean 'max_steps'\?$"),
    ("max_steps", r"must look like key=value"),
])
def test_bad_overrides_stop_with_one_line_naming_the_key(override, message):
    with pytest.raises(SystemExit, match=message) as error:
        parse("flowmo_1a", override)
    assert "\n" not in str(error.value)


def test_an_unknown_key_in_the_file_is_named_with_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_steps: 3\nbatch_szie: 4\n")
    with pytest.raises(SystemExit, match=rf"^{bad}: unknown config key 'batch_szie'; did you mean 'batch_size'\?$"):
        load_recipe("config").load_config(load_recipe("flowmo_1a").Stage1AConfig, ["--config", str(bad)], "", "test")


def test_a_wrong_type_stops_the_recipe_before_any_model_is_built(tmp_path, monkeypatch):
    """Issue 15, case 5: ``max_steps=abc`` used to build the model, evaluate and write grids, then crash."""
    recipe = load_recipe("flowmo_1a")
    built = []
    monkeypatch.setattr(recipe, "build_accelerator", lambda *args, **kwargs: built.append("accelerator"))
    monkeypatch.setattr(recipe, "build_tokenizer", lambda *args, **kwargs: built.append("model"))
    with pytest.raises(SystemExit, match="config key 'max_steps'"):
        recipe.main([f"output_dir={tmp_path / 'run'}", "max_steps=abc"])
    assert built == [] and not (tmp_path / "run").exists()
