"""Experiment config: schema, strict YAML, overrides, validation."""

from dlcli.config.load import apply_overrides, load, validate
from dlcli.config.schema import Config

__all__ = ["Config", "apply_overrides", "load", "validate"]
