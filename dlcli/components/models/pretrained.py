"""Pretrained weights for torchvision architectures, offline-safe.

`weights:` is a torchvision weight name (DEFAULT, IMAGENET1K_V1, ...), read from the torch hub cache
($TORCH_HOME/hub/checkpoints/, downloaded there when online unless DLCLI_OFFLINE=1), or a local
.pth/.pt/.safetensors file (torch files are read with weights_only=True: nothing in them is run).
Loading matches names and shapes: the classifier head is skipped (and stays freshly initialised)
when the class count differs; anything else that does not fit is a CheckpointError (exit 4).
"""

import os
from pathlib import Path

from dlcli.components.models.notes import note
from dlcli.errors import CheckpointError, ConfigError, DataError, first_line
from dlcli.registry import did_you_mean

FILE_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin")
# Auxiliary classifiers torchvision's googlenet/inception weights carry; dlcli builds without them.
AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")
SHOWN = 4  # mismatching keys named in an error


def is_file(weights: str) -> bool:
    """A path rather than a weight name: it has a file suffix or a folder part."""
    return weights.endswith(FILE_SUFFIXES) or "/" in weights or os.sep in weights


def weights_enum(arch: str, name: str):
    """torchvision's weight entry `name` (DEFAULT: the recommended one) for `arch`."""
    from torchvision import models

    choices = models.get_model_weights(arch)
    if name == "DEFAULT":
        return choices.DEFAULT
    names = [w.name for w in choices]
    if name not in names:
        raise ConfigError(f"model.weights: {arch} has no weights {name!r}{did_you_mean(name, names)}; "
                          f"available: DEFAULT, {', '.join(names)}, or a .pth/.pt/.safetensors file")
    return choices[name]


def cache_file(url: str) -> Path:
    """Where torch.hub keeps (and looks for) a downloaded weight file."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def read(arch: str, weights: str) -> dict:
    """The state dict `weights` names: a local file, or a torchvision weight name from the hub cache."""
    if is_file(weights):
        return read_file(Path(weights).expanduser(), "model.weights")
    entry = weights_enum(arch, weights)
    path = cache_file(entry.url)
    if not path.is_file():
        _download(entry.url, path, f"{arch} weights {entry.name}")
    return read_file(path, "model.weights")


def _download(url: str, path: Path, what: str) -> None:
    """Fetch into the hub cache; offline (or DLCLI_OFFLINE=1) a DataError saying where to put the file."""
    import socket

    import torch

    missing = (f"{what} are not in the torch hub cache: put {path.name} into {path.parent}/ "
               f"($TORCH_HOME/hub/checkpoints/)")
    if os.environ.get("DLCLI_OFFLINE", "") not in ("", "0"):
        raise DataError(f"{missing}; DLCLI_OFFLINE is set, so nothing is downloaded", hint=f"download it from {url}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # torch.hub's urlopen has no timeout: a silent network would hang the run
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), hash_prefix=None, progress=False)
    except (OSError, RuntimeError, ValueError) as err:
        raise DataError(f"{missing}; the download failed ({first_line(err)[:120]})",
                        hint=f"download it from {url} on a connected machine") from None
    finally:
        socket.setdefaulttimeout(previous)


def read_file(path: Path, key: str) -> dict:
    """A state dict from a file: safetensors, or a torch file read with weights_only=True (a dlcli
    checkpoint's weights, or a {state_dict: ...} / {model: ...} wrapper, are taken from inside)."""
    if not path.is_file():
        raise DataError(f"{key}: weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (pickle, zip and safetensors each raise their own kinds)
        raise CheckpointError(f"{key}: {path} is not a readable weights file ({type(err).__name__}: "
                              f"{first_line(err, 'unreadable')[:160]})",
                              hint="weights files are read with weights_only=True: tensors only") from None
    return _state_dict(state, path, key)


def _state_dict(state, path: Path, key: str) -> dict:
    import torch

    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()) or not state:
        raise CheckpointError(f"{key}: {path} holds no state dict (a mapping of parameter names to tensors)")
    prefix = "module."  # saved from a DataParallel/DDP wrapper
    if all(name.startswith(prefix) for name in state):
        state = {name[len(prefix):]: value for name, value in state.items()}
    return state


def load_into(model, state: dict, num_classes: int, source: str) -> None:
    """Copy `state` into `model`: names and shapes must match, but for the classifier head when
    the class count differs (skipped, left freshly initialised; noted). Otherwise exit 4 listing keys."""
    own = model.state_dict()
    dropped = [name for name in state if name not in own and name.startswith(AUX_PREFIXES)]
    state = {name: value for name, value in state.items() if name not in dropped}
    head = [name for name, value in state.items() if name in own and _is_head(own[name], value, num_classes)]
    problems = [f"{name} not in the weights" for name in own if name not in state]
    problems += [f"{name} not in the model" for name in state if name not in own]
    problems += [f"{name}: shape {list(value.shape)} in the weights, {list(own[name].shape)} in the model"
                 for name, value in state.items() if name in own and name not in head
                 and value.shape != own[name].shape]
    if problems:
        more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
        raise CheckpointError(f"{source} do not fit the model: {'; '.join(problems[:SHOWN])}{more}",
                              hint="are they weights of this architecture?")
    model.load_state_dict({name: value for name, value in state.items() if name not in head}, strict=False)
    if head:
        classes = state[head[0]].shape[0]
        note(f"{source}: classifier head {', '.join(head)} skipped ({classes} classes in the weights, "
             f"{num_classes} here) and freshly initialised")
    if dropped:
        note(f"{source}: auxiliary classifier weights left out ({len(dropped)} tensors)")


def _is_head(own, theirs, num_classes: int) -> bool:
    """A tensor of the classifier head: sized by the class count here, by another count in the weights."""
    return (own.ndim >= 1 and theirs.ndim == own.ndim and own.shape[0] == num_classes
            and theirs.shape[0] != num_classes and own.shape[1:] == theirs.shape[1:])


def preprocessing(arch: str, weights: str) -> tuple[int, int, list[float], list[float]] | None:
    """(resize, centre crop, mean, std): the eval preprocessing a torchvision weight name was trained
    with; None for a local file (its preprocessing is unknown)."""
    if is_file(weights):
        return None
    transforms = weights_enum(arch, weights).transforms()
    return (list(transforms.resize_size)[0], list(transforms.crop_size)[0], list(transforms.mean),
            list(transforms.std))
