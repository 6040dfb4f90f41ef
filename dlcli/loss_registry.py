"""The loss registry (losses.py and gan_losses.py register into it; losses.py imports both)."""

from dlcli.registry import Registry

LOSSES = Registry("loss")
