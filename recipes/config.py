"""Recipe configuration: a YAML file (recipes/configs/) plus ``key=value`` overrides, typed by the
recipe's dataclass through OmegaConf structured configs.

    accelerate launch recipes/flowmo_1a.py --config recipes/configs/lo.yaml batch_size=64 dataset=imagenet-1k

Values of overrides are parsed as YAML (``lr=5e-5``, ``preset_overrides={quantizer_name: fsq}``); nested
keys use dots (``preset_overrides.patch_size=8``). Every value is checked against its field's annotation
when the config is read, before anything is built: an unknown key, or a value of the wrong type
(``max_steps=abc``, ``batch_size=1e3``, which is a float), stops the recipe with a one-line error naming
the key (and for unknown keys the closest known one).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def _merge(config: DictConfig, addition: DictConfig, source: str, cls: type) -> DictConfig:
    """``addition`` merged into the typed ``config`` one key at a time; a bad key or value exits with one
    line naming it (OmegaConf's own message does not always name the key)."""
    known = [field.name for field in dataclasses.fields(cls)]
    for key in addition:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(known))}"
            raise SystemExit(f"{source}: unknown config key {key!r}; {hint}")
        try:
            config = OmegaConf.merge(config, OmegaConf.masked_copy(addition, [key]))
        except OmegaConfBaseException as error:
            message = str(error).splitlines()[0].replace("$VALUE_TYPE", "this type").replace("'$VALUE'", "a value")
            raise SystemExit(f"{source}: config key {getattr(error, 'full_key', None) or key!r}: {message}") from None
    return config


def load_config(cls: type, argv: list[str] | None, default_config: str, description: str):
    """Parse ``[--config FILE] [key=value ...]`` into an instance of the dataclass ``cls``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=str(CONFIG_DIR / default_config), help="YAML file of settings")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="settings that replace the file's")
    args = parser.parse_args(argv)
    path = Path(args.config)
    if not path.is_file():
        raise SystemExit(f"config file {path} not found; the shipped ones are in {CONFIG_DIR}")
    for item in args.overrides:
        if "=" not in item:
            raise SystemExit(f"override {item!r} must look like key=value")
    config = _merge(OmegaConf.structured(cls), OmegaConf.load(path), str(path), cls)
    try:
        overrides = OmegaConf.from_dotlist(args.overrides)
    except OmegaConfBaseException as error:
        raise SystemExit(f"cannot parse the overrides {' '.join(args.overrides)}: {str(error).splitlines()[0]}") from None
    config = _merge(config, overrides, "command line", cls)
    return OmegaConf.to_object(config)
