"""The GAN task (task.py), its image sampling (images.py) and offline quality numbers (quality.py)."""

from dlcli.tasks.gan.task import GANTask

__all__ = ["GANTask"]
