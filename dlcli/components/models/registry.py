"""The model registry (builders register from their own modules; models/__init__ imports them all)."""

from dlcli.registry import Registry

MODELS = Registry("model")
