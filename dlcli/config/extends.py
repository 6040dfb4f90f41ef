"""`extends: base.yaml`: a config inherits another's keys; its own keys (and then command-line
overrides) win. Mappings merge key by key; lists and scalars are replaced whole."""

from pathlib import Path
from typing import Any

from dlcli.config.yamlio import read_yaml_file
from dlcli.errors import ConfigError

MAX_DEPTH = 10


def read_config(path: str, _chain: tuple = ()) -> tuple[Any, dict[str, int]]:
    """Parsed YAML with every `extends` resolved; line numbers refer to `path` itself."""
    data, lines = read_yaml_file(path)
    if not isinstance(data, dict) or "extends" not in data:
        return data, lines
    here = Path(path).resolve()
    if here in _chain or len(_chain) >= MAX_DEPTH:
        raise ConfigError(f"{path}: extends: circular or deeper than {MAX_DEPTH} files")
    parent = data.pop("extends")
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"{path}: extends: expected a file path (got {parent!r})")
    base_path = (here.parent / parent) if not Path(parent).is_absolute() else Path(parent)
    if not base_path.exists():  # read_yaml_file names a folder, a FIFO or a file too large
        raise ConfigError(f"{path}: extends: file not found: {base_path}")
    base, _ = read_config(str(base_path), _chain + (here,))
    if not isinstance(base, dict):
        raise ConfigError(f"{base_path}: the top level must be a mapping of sections")
    base.pop("name", None)  # a run is named after the file that was asked for, not its base
    return merge(base, data), lines


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and "name" not in value:
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
