"""Test-time augmentation (`--tta flip|crops` for eval and infer): an image model's predicted
probabilities averaged over a few transformed copies of each input, as timm's and fastai's TTA do.

The averaged model returns what the task's loss and predictions expect of logits (log of the mean
softmax, or the logit of the mean sigmoid), so metrics and `infer` need no change of their own."""

from dlcli.errors import ConfigError

CHOICES = ("flip", "crops")


def check_choice(mode: str | None) -> str | None:
    """The --tta value, checked before any checkpoint is read."""
    if mode is not None and mode not in CHOICES:
        raise ConfigError(f"--tta: expected {' or '.join(CHOICES)} (got {mode!r})")
    return mode


def with_tta(model, mode: str | None, task, meta):
    """`model` itself without `mode`; else the model averaging its probabilities over the views."""
    mode = check_choice(mode)
    if mode is None:
        return model
    if meta.kind != "image" or task.tta_average is None:
        raise ConfigError(f"--tta: only for models of image classes or labels (this checkpoint is a {task.name} "
                          f"model over {meta.kind} data)")
    return _averaged(model, mode, task.tta_average, meta.input_shape)


def views(mode: str, height: int, width: int) -> list:
    """flip: the image and its mirror. crops: the image and its four corner crops after a reflected
    pad of an eighth of its size (the shifts random-crop training teaches the model to expect)."""
    import torch.nn.functional as F

    if mode == "flip":
        return [lambda x: x, lambda x: x.flip(-1)]
    pad = max(1, min(height, width) // 8)

    def corner(top: int, left: int):
        return lambda x: F.pad(x, (pad,) * 4, mode="reflect")[..., top:top + height, left:left + width]

    return [lambda x: x, *(corner(t, s) for t in (0, 2 * pad) for s in (0, 2 * pad))]


def _averaged(model, mode: str, average: str, input_shape: list[int]):
    import torch

    class Averaged(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.views = model, views(mode, *input_shape[-2:])

        def forward(self, x):
            if average == "softmax":
                probs = torch.stack([self.model(view(x)).float().softmax(-1) for view in self.views]).mean(0)
                return probs.clamp_min(1e-12).log()
            probs = torch.stack([self.model(view(x)).float().sigmoid() for view in self.views]).mean(0)
            return probs.clamp(1e-12, 1 - 1e-7).logit()

    return Averaged().eval()
