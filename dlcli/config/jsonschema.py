"""`dlcli schema`: JSON Schema of the experiment file, for editors (e.g. VS Code's YAML extension).

The base comes from the pydantic models; each component section is replaced by a oneOf over its
registry's entries, so editors complete and check names and parameters too.
"""

from typing import Any

from dlcli.config.load import registries
from dlcli.config.schema import Config

_DEFS: dict = {}  # nested parameter models (e.g. the gan's NetSpec), hoisted to the top-level $defs


def entry_schema(registry, name: str) -> dict:
    """{name: const, ...params} for one registry entry."""
    schema = registry.entry(name).params.model_json_schema()
    _DEFS.update(schema.pop("$defs", {}))
    schema.pop("title", None)
    schema["properties"] = {"name": {"const": name}, **schema.get("properties", {})}
    schema["required"] = ["name", *schema.get("required", [])]
    schema["additionalProperties"] = False
    if registry.summary(name):
        schema["description"] = registry.summary(name)
    return schema


def component(registry) -> dict:
    return {"oneOf": [entry_schema(registry, n) for n in registry.names()]}


def transform_item(registry) -> dict:
    """`name`, or `{name: {params}}`, or `{name: value-of-first-param}`."""
    forms = []
    for name in registry.names():
        params = entry_schema(registry, name)
        params["properties"].pop("name")
        params["required"] = [r for r in params["required"] if r != "name"]
        first: dict[str, Any] = next(iter(params["properties"].values()), {})
        value = {"anyOf": [params, first, {"type": "null"}]}
        forms.append({"type": "object", "properties": {name: value}, "required": [name],
                      "additionalProperties": False})
    return {"anyOf": [{"enum": registry.names()}, *forms]}


def config_schema() -> dict:
    regs = registries()
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dlcli experiment"
    props, defs = schema["properties"], schema["$defs"]
    from dlcli.tasks import TASKS

    props["extends"] = {"type": "string", "description": "a base config file to inherit from"}
    props["task"] = {"anyOf": [{"enum": list(TASKS)}, {"type": "null"}],
                     "description": "; ".join(f"{name}: {cls.summary}" for name, cls in TASKS.items())}
    props["model"] = component(regs["models"])
    props["loss"] = component(regs["losses"])
    props["optimizer"] = {"anyOf": [component(regs["optimizers"]), per_network(component(regs["optimizers"]))]}
    props["scheduler"] = {"anyOf": [component(regs["schedulers"]), per_network(component(regs["schedulers"])),
                                    {"type": "null"}]}
    props["callbacks"] = {"type": "array", "items": component(regs["callbacks"])}
    data = defs["DataConfig"]["properties"]
    data["dataset"] = component(regs["datasets"])
    for section in ("train_transforms", "eval_transforms"):
        data[section] = {"type": "array", "items": transform_item(regs["transforms"])}
    defs.update(_DEFS)
    schema["required"] = [key for key in schema["required"] if key != "name"]  # name defaults to the file's
    return with_extends(schema)


def with_extends(schema: dict) -> dict:
    """A file with `extends:` holds only what it changes, so its sections may be partial: it is
    checked for known top-level keys only; any other file against the whole schema."""
    full = {key: value for key, value in schema.items() if key not in ("$schema", "title", "$defs")}
    partial = {"type": "object", "propertyNames": {"enum": sorted(schema["properties"])}}
    return {"$schema": schema["$schema"], "title": schema["title"], "$defs": schema["$defs"],
            "if": {"type": "object", "required": ["extends"]}, "then": partial, "else": full}


def per_network(item: dict) -> dict:
    """A GAN's {generator: ..., discriminator: ...} form of the optimizer and scheduler sections."""
    return {"type": "object", "properties": {"generator": item, "discriminator": item},
            "additionalProperties": False}
