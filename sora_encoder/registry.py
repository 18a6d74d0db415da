"""Named model variants: `model_configs/<name>.json` files holding overrides of the defaults.

list_models()            -> ["sora-b", "sora-s", "sora-t"]
get_model_config(name)   -> SoraConfig (defaults <- the JSON's overrides)
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from sora_encoder.config import SoraConfig

_PACKAGE = "sora_encoder.model_configs"


@cache
def _overrides() -> dict[str, dict]:
    found = {}
    for entry in resources.files(_PACKAGE).iterdir():
        if entry.name.endswith(".json"):
            found[entry.name.removesuffix(".json")] = json.loads(entry.read_text("utf-8"))
    return found


def list_models() -> list[str]:
    """The names of the registered variants, sorted."""
    return sorted(_overrides())


def get_model_config(name: str) -> SoraConfig:
    """The full config of variant `name`; ValueError if there is no such variant."""
    overrides = _overrides().get(name)
    if overrides is None:
        raise ValueError(f"unknown model {name!r}; known: {list_models()}")
    if overrides.get("name", name) != name:
        raise ValueError(f"model_configs/{name}.json names itself {overrides['name']!r}")
    return SoraConfig.from_dict({**overrides, "name": name})
