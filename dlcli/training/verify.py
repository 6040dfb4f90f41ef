"""What a checkpoint must satisfy before it is used: weights that fit the model its config builds
and are finite (eval, infer, export, resume), an embedded config that validates (errors name the
checkpoint), and the tools resume_checks uses: trial loads into throwaway copies (each object's own
load_state_dict decides what it needs) and a comparison of what a copy then holds, kind by kind and
shape by shape, with what the freshly built object holds."""

import copy
from contextlib import contextmanager
from pathlib import Path

from dlcli.errors import CheckpointError, ConfigError


def check_weights(weights, model, path: Path | str, hint: str | None = None) -> None:
    """The model section has exactly the model's names and shapes, and only finite values."""
    problem = weights_problem(weights, model)
    if problem:
        raise CheckpointError(f"{path}: checkpoint weights do not fit the model its config builds: {problem}",
                              hint=hint)
    check_finite_weights(weights, model, path)


def check_finite_weights(weights: dict, model, path: Path | str) -> None:
    bad = non_finite(weights, model)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CheckpointError(f"checkpoint {path} holds non-finite weights in {bad[0]}{more}",
                              hint="training diverged before this checkpoint was saved; use an earlier one")


def weights_problem(weights, model) -> str | None:
    import torch

    if not isinstance(weights, dict):
        return f"not a mapping of tensors (got {type(weights).__name__})"
    expected = model.state_dict()
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    if missing or unexpected:
        return "; ".join(f"{what} {_some(keys)}" for what, keys in (("missing", missing), ("unexpected", unexpected))
                         if keys)
    for key, want in expected.items():
        got = weights[key]
        if not isinstance(got, torch.Tensor):
            return f"{key} is not a tensor (got {type(got).__name__})"
        if got.shape != want.shape:
            return f"{key} has shape {list(got.shape)}, the model's is {list(want.shape)}"
    return None


def non_finite(weights: dict, model) -> list[str]:
    """The names of floating-point tensors holding NaN or infinity (a buffer that is not finite in
    the freshly built model, such as a mask, may stay so)."""
    import torch

    fresh = model.state_dict()
    return [key for key, value in weights.items()
            if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex())
            and not bool(torch.isfinite(value).all()) and key in fresh and bool(torch.isfinite(fresh[key]).all())]


@contextmanager
def naming_checkpoint(path: Path | str):
    """Config errors raised while building from a checkpoint's embedded config name the checkpoint."""
    try:
        yield
    except ConfigError as err:
        raise ConfigError([f"checkpoint {path}: {problem}" for problem in err.problems], err.hint) from None


def checkpoint_config(payload: dict, overrides: list[str], path: Path | str):
    """The embedded config, validated with the overrides. A config that fails alone makes the
    checkpoint unusable (exit 4); with overrides, the user may be the one to fix it (exit 2)."""
    from dlcli.config import validate

    try:
        return validate(payload["config"], overrides, source="checkpoint")
    except ConfigError as err:
        if overrides:
            raise ConfigError([f"checkpoint {path}: {problem}" for problem in err.problems], err.hint) from None
        raise CheckpointError(f"checkpoint {path}: its embedded config does not validate: {'; '.join(err.problems)}",
                              hint="was it written by another dlcli version?") from None


def trial_load(obj, saved, keep: tuple = ()):
    """A copy of `obj` with `saved` loaded into it; `keep`: objects the copy shares, not copies
    (a schedule's optimizer)."""
    trial = copy.deepcopy(obj, {id(kept): kept for kept in keep})
    trial.load_state_dict(saved)
    return trial


def kind_problem(got, want, where: str = "", shapes: bool = True) -> str | None:
    """Where `got` (a loaded state) differs in kind or shape from `want` (a freshly built one's); None
    in `want` is a value not set yet, which any value may replace. shapes=False: tensors need only
    as many dimensions (a growing list of terms)."""
    import torch

    label = where or "the value"
    if want is None:
        return None
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{label} is not a mapping (got {type(got).__name__})"
        for key, value in want.items():
            if key not in got:
                return f"{where}{'.' if where else ''}{key} is missing"
            problem = kind_problem(got[key], value, f"{where}{'.' if where else ''}{key}", shapes)
            if problem:
                return problem
        return None
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            return f"{label} is not a list of {len(want)}"
        return next((p for i, (g, w) in enumerate(zip(got, want)) if (p := kind_problem(g, w, f"{where}.{i}", shapes))),
                    None)
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"{label} is not a tensor (got {type(got).__name__})"
        if got.shape != want.shape if shapes else got.dim() != want.dim():
            expected = list(want.shape) if shapes else f"{want.dim()} dimensions"
            return f"{label} has shape {list(got.shape)}, expected {expected}"
        return None
    return _scalar_problem(got, want, label)


def _scalar_problem(got, want, label: str) -> str | None:
    import reprlib

    number = isinstance(got, (int, float)) and not isinstance(got, bool)
    if isinstance(want, bool):
        expected, ok = "true/false", isinstance(got, bool)
    elif isinstance(want, int):
        expected, ok = "an integer", number and isinstance(got, int)
    elif isinstance(want, float):
        expected, ok = "a number", number
    elif isinstance(want, str):
        expected, ok = "a string", isinstance(got, str)
    else:
        return None
    return None if ok else f"{label} is not {expected} (got {reprlib.repr(got)})"


def _some(keys: list[str], shown: int = 3) -> str:
    return ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")
