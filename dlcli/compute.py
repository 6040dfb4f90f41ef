"""Device-side helpers every layer uses: autocast for a configured precision, and the one batched
inference loop (predictions, text classification, GAN sampling and feature extraction all go
through `batched`). torch is imported inside the functions."""

import contextlib
from collections.abc import Callable
from typing import Any

DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def autocast(device, precision: str):
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, DTYPES[precision]))


def batched(model, step: Callable, rows: int, device, precision: str = "fp32", batch_size: int = 512):
    """step(slice) for consecutive slices of `rows` rows, with the model in eval mode (its mode is
    restored after), without gradients and under the precision's autocast; each step's output moved to
    the CPU and concatenated (a tuple of outputs gives a tuple of concatenations)."""
    import torch

    was_training = model.training
    model.eval()
    outputs: list[Any] = []
    try:
        with torch.inference_mode(), autocast(device, precision):
            for start in range(0, rows, batch_size):
                out = step(slice(start, start + batch_size))
                outputs.append(tuple(o.cpu() for o in out) if isinstance(out, tuple) else out.cpu())
    finally:
        model.train(was_training)
    if outputs and isinstance(outputs[0], tuple):
        return tuple(torch.cat(column) for column in zip(*outputs))
    return torch.cat(outputs)
