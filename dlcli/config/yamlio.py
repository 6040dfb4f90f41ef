"""Strict YAML reading: safe_load semantics, duplicate keys rejected, key -> line map."""

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from dlcli.errors import ConfigError

MAX_YAML_BYTES = 1_000_000
MAX_NODES = 100_000  # expanded node count; stops alias bombs before they reach validation


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, Hashable):
                raise ConfigError(f"line {line}: a mapping key must be a plain value (got {type(key).__name__})")
            if key in seen:
                raise ConfigError(f"line {line}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _count_nodes(node, budget: list[int], depth: int = 0) -> None:
    budget[0] -= 1
    if budget[0] < 0 or depth > 100:
        raise ConfigError("YAML document too large or too deeply nested (alias expansion?)")
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            _count_nodes(k, budget, depth + 1)
            _count_nodes(v, budget, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            _count_nodes(v, budget, depth + 1)


def _line_map(node, prefix: str, lines: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = f"{prefix}.{k.value}" if prefix else str(k.value)
            lines.setdefault(key, k.start_mark.line + 1)
            _line_map(v, key, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            key = f"{prefix}.{i}" if prefix else str(i)
            lines.setdefault(key, v.start_mark.line + 1)
            _line_map(v, key, lines)


def parse_yaml(text: str, source: str = "<string>") -> tuple[Any, dict[str, int]]:
    """Parse one YAML document; return (data, {dotted key: line})."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{source}: file larger than {MAX_YAML_BYTES} bytes")
    loader = None
    try:
        loader = StrictLoader(text)  # the reader already rejects control characters here
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _count_nodes(node, [MAX_NODES])
        data = loader.construct_document(node)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML too deeply nested") from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict[str, int] = {}
    _line_map(node, "", lines)
    return data, lines


def read_yaml_file(path: str) -> tuple[Any, dict[str, int]]:
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"config file not found: {path}")
    if not file.is_file():
        raise ConfigError(f"{path}: not a regular file")
    try:
        raw = file.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: binary data, not YAML")
    return parse_yaml(text, path)


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
