"""Search spaces: `suggest(trial) -> TrainConfig`, built-in ones and ones read from a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from maskopt.errors import ConfigError
from maskopt.spaces.builtin import BUILTIN
from maskopt.spaces.space import Param, Space, parse_params
from maskopt.trainer.config import read_structured_file

__all__ = ["Param", "Space", "get_space", "list_spaces", "space_from_dict", "load_space_file"]

TOP_KEYS = {"name", "description", "epochs", "params"}


def space_from_dict(
    d: Any, where: str, *, default_name: str = "space", source: str = "built-in"
) -> Space:
    """A Space from its mapping form (the space file's content); ConfigError naming the key."""
    if not isinstance(d, dict):
        raise ConfigError(
            f"{where}: expected a mapping with 'params' (and 'epochs', 'name'), "
            f"got {type(d).__name__}."
        )
    unknown = sorted(set(d) - TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(TOP_KEYS))}."
        )
    if "params" not in d:
        raise ConfigError(
            f"{where}: key 'params' is missing (a mapping of TrainConfig key -> spec)."
        )
    epochs = d.get("epochs", 10)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ConfigError(
            f"{where}: key 'epochs': expected a whole number >= 1, but got {epochs!r}."
        )
    name = d.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: key 'name': expected a non-empty string, but got {name!r}.")
    params = parse_params(where, d["params"])
    space = Space(
        name=name,
        description=str(d.get("description", "")),
        epochs=epochs,
        params=params,
        source=source,
    )
    try:
        space.fixed_config()  # fixed values and first choices must make a valid TrainConfig
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    space.check(where)
    return space


def load_space_file(path: str | os.PathLike) -> Space:
    """A space from a .yaml / .yml / .toml file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise ConfigError(
            f"space file {str(path)!r}: expected .yaml, .yml or .toml, got {suffix!r}."
        )

    data = read_structured_file(path, suffix, "space file")
    return space_from_dict(data, str(path), default_name=path.stem, source=str(path))


def get_space(name_or_path: str) -> Space:
    """A built-in space by name, or a space file."""
    if name_or_path in BUILTIN:
        return space_from_dict(BUILTIN[name_or_path], f"space {name_or_path!r}")
    if Path(name_or_path).suffix.lower() in (".yaml", ".yml", ".toml"):
        return load_space_file(name_or_path)
    raise ConfigError(
        f"space {name_or_path!r}: expected one of {', '.join(BUILTIN)} or a .yaml/.yml/.toml file."
    )


def list_spaces() -> list[Space]:
    return [get_space(name) for name in BUILTIN]
