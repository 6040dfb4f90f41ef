"""The loss registry (standard.py and gan.py register into it; the package imports both)."""

from dlcli.registry import Registry

LOSSES = Registry("loss")
