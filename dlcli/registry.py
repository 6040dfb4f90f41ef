"""Name -> builder registries. A builder's keyword-only parameters ARE the YAML schema.

Builders live in modules that import torch lazily (inside the function body), so a
config can be validated against every registry without importing torch.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from dlcli.errors import ConfigError


def did_you_mean(word: str, choices) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def format_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# pydantic puts union-member tags ("constrained-int", "list[...]") into error locations.
_UNION_TAG = re.compile(r"^(constrained-|function-|lax-|json-|is-instance|literal\[|list\[|tuple\[|dict\[|set\[|"
                        r"nullable\[|union\[|tagged-union|int$|float$|str$|bool$|none$|\w+\[)")


def pydantic_problems(err: ValidationError, prefix: str, fields_at=None) -> list[str]:
    """One line per bad key: dotted key, message, bad value, did-you-mean."""
    lines, seen = [], set()
    for e in err.errors():
        loc = [str(p) for p in e["loc"] if not (isinstance(p, str) and _UNION_TAG.match(p))]
        if tuple(loc) in seen:
            continue  # a union reports each member's complaint; the first is enough
        seen.add(tuple(loc))
        key = ".".join([prefix, *loc] if prefix else loc)
        if e["type"] == "extra_forbidden":
            allowed = fields_at(e["loc"][:-1]) if fields_at else []
            hint = did_you_mean(loc[-1], allowed)
            known = f"; allowed: {', '.join(sorted(allowed))}" if allowed else ""
            lines.append(f"{key}: unknown key{hint}{known}")
        elif e["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        else:
            message = e["msg"].removeprefix("Value error, ")  # a validator's own words need no prefix
            lines.append(f"{key}: {message} (got {format_value(e.get('input'))})")
    return lines


@dataclass
class Entry:
    name: str
    builder: Callable
    summary: str
    tags: tuple[str, ...] = ()  # in order: a dataset's first task tag is its default task
    # Older checkpoints' specs -> the values their builds used for keys added since (None: nothing changed).
    legacy: Callable[[dict], dict] | None = None
    _params: type[BaseModel] | None = None

    @property
    def params(self) -> type[BaseModel]:
        """The pydantic model of the builder's keyword-only parameters (built on first use: it's slow)."""
        if self._params is None:
            self._params = _params_model(self.name, self.builder)
        return self._params


class Registry:
    """Maps short names to builders; validates their arguments before anything is built."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, tags: tuple[str, ...] = (), legacy: Callable[[dict], dict] | None = None):
        """Decorator: `name` builds with the function; `tags` say what it is for (e.g. the tasks a
        dataset feeds, `recurrent` for a model), so checks ask the registry, not a list of names;
        `legacy` fills, in a spec from an older checkpoint, the keys whose new defaults would build
        something else than it was trained with."""
        def decorate(builder: Callable) -> Callable:
            self._entries[name] = Entry(name, builder, _summary(builder), tuple(tags), legacy)
            return builder

        return decorate

    def names(self) -> list[str]:
        return sorted(self._entries)

    def legacy(self, spec):
        """`spec` as an older checkpoint meant it (see register's `legacy`); anything else unchanged."""
        name = spec.get("name") if isinstance(spec, dict) else None
        entry = self._entries.get(name) if isinstance(name, str) else None
        if entry is None or entry.legacy is None:
            return spec
        return entry.legacy(spec)

    def tagged(self, tag: str) -> list[str]:
        """The names registered with `tag`, sorted."""
        return [name for name in self.names() if tag in self._entries[name].tags]

    def has_tag(self, name, tag: str) -> bool:
        """True when `name` is registered with `tag` (False for an unknown or non-string name)."""
        entry = self._entries.get(name) if isinstance(name, str) else None
        return entry is not None and tag in entry.tags

    def tags(self, name: str) -> tuple[str, ...]:
        return self._entries[name].tags

    def entry(self, name: str, key: str = "name") -> Entry:
        if not isinstance(name, str):
            raise ConfigError(f"{key}: expected a {self.kind} name (got {format_value(name)}); "
                              f"available: {', '.join(self.names())}")
        if name not in self._entries:
            raise ConfigError(
                f"{key}: unknown {self.kind} {name!r}{did_you_mean(name, self._entries)}; "
                f"available: {', '.join(self.names())}"
            )
        return self._entries[name]

    def validate(self, spec: Any, key: str) -> dict:
        """Return {'name': ..., **params with defaults}; raise ConfigError listing every problem."""
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(f"{key}: expected a mapping with a 'name' key (got {format_value(spec)})")
        params = dict(spec)
        name = params.pop("name")
        entry = self.entry(name, f"{key}.name")
        try:
            checked = entry.params.model_validate(params)
        except ValidationError as err:
            fields = list(entry.params.model_fields)
            raise ConfigError(pydantic_problems(err, key, lambda loc: fields if not loc else [])) from None
        return {"name": name, **checked.model_dump(mode="json")}

    def build(self, spec: dict, *injected, **extra):
        """Call the builder with injected positional args and the spec's params."""
        params = dict(spec)
        entry = self.entry(params.pop("name"))
        checked = entry.params.model_validate(params)
        kwargs = {k: getattr(checked, k) for k in entry.params.model_fields}
        return entry.builder(*injected, **kwargs, **extra)

    def describe(self, name: str) -> list[tuple[str, str, str]]:
        """(param, type, default) rows for `dlcli list`."""
        rows = []
        for pname, field in self._entries[name].params.model_fields.items():
            default = "required" if field.is_required() else repr(field.default)
            rows.append((pname, _type_name(field.annotation), default))
        return rows

    def summary(self, name: str) -> str:
        return self._entries[name].summary


def _params_model(name: str, builder: Callable) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for param in inspect.signature(builder, eval_str=True).parameters.values():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue  # positional parameters are injected by dlcli, not read from YAML
        default = ... if param.default is inspect.Parameter.empty else param.default
        annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
        fields[param.name] = (annotation, default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
    return create_model(f"{name}_params", __config__=config, **fields)


def _summary(builder: Callable) -> str:
    doc = inspect.getdoc(builder) or ""
    return doc.splitlines()[0] if doc else ""


def _type_name(annotation) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("typing_extensions.", "")
