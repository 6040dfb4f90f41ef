"""Strict YAML reading: safe_load semantics, duplicate keys rejected, key -> line map."""

import os
import stat
from collections.abc import Hashable
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


def parse_yaml(text: str, source: str = "<string>", at: str = "") -> tuple[Any, dict[str, int]]:
    """Parse one YAML document; return (data, {dotted key: line}). `at`: the dotted key the document
    is the value of (a command-line override's key)."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{source}: file larger than {MAX_YAML_BYTES} bytes")
    loader = _guarded(lambda: StrictLoader(text), source)  # the reader already rejects control characters
    try:
        node = _guarded(loader.get_single_node, source)
        if node is None:
            return None, {}
        _guarded(lambda: _count_nodes(node, [MAX_NODES]), source)
        huge = _huge_integers(loader, node, at)
        if huge:
            raise ConfigError([f"{key or 'the top level'}: {problem}  "
                               f"[{'command-line override' if at else f'{source}:{line}'}]"
                               for key, line, problem in huge])
        data = _guarded(lambda: loader.construct_document(node), source)
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    _line_map(node, "", lines)
    return data, lines


def _guarded(step, source: str):
    """step(), with YAML's errors (and ours from the loader) as one-line ConfigErrors naming the source."""
    try:
        return step()
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML too deeply nested") from None


INT_TAG = "tag:yaml.org,2002:int"
MAX_INT = 2**63 - 1  # the largest integer torch (int64) holds: no setting takes more


def _huge_integers(loader: yaml.SafeLoader, node, key: str) -> list[tuple[str, int, str]]:
    """(dotted key, line, problem) of each integer beyond +-MAX_INT, found before they are built:
    Python refuses to convert a decimal string of more than 4300 digits (a ValueError)."""
    if isinstance(node, yaml.ScalarNode):
        problem = _integer_problem(loader, node) if node.tag == INT_TAG else None
        return [(key, node.start_mark.line + 1, problem)] if problem else []
    found = []
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            found += _huge_integers(loader, k, key)  # a key that is a huge integer: named by its mapping
            found += _huge_integers(loader, v, f"{key}.{k.value}" if key else str(k.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            found += _huge_integers(loader, v, f"{key}.{i}" if key else str(i))
    return found


def _integer_problem(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str | None:
    digits = node.value.replace("_", "").lstrip("+-")
    size = f"{len(digits)} digits" if len(digits) > 30 else node.value
    try:
        if len(digits) <= 80 and abs(loader.construct_yaml_int(node)) <= MAX_INT:  # 80: any base
            return None
    except ValueError:  # an explicit !!int tag on text that is no integer
        return f"not an integer: {node.value[:30]!r}"
    return f"integer out of range ({size}); integers lie within +-(2**63 - 1)"


def read_yaml_file(path: str) -> tuple[Any, dict[str, int]]:
    raw = _config_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: binary data, not YAML")
    return parse_yaml(text, path)


def _config_bytes(path: str) -> bytes:
    """The file's bytes, checked before any is read: a FIFO or device is refused (reading one blocks or
    never ends), and so is a file over MAX_YAML_BYTES (its size from fstat, so a huge file is never read)."""
    from dlcli.data.folders import kind_of

    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then checks the file opened
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: {kind_of(info.st_mode)}, not a regular file")
        if info.st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: file larger than {MAX_YAML_BYTES} bytes ({info.st_size} bytes)")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)  # it may have grown since fstat
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: file larger than {MAX_YAML_BYTES} bytes")
    return raw


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
