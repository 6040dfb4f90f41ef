"""`model: {name: timm, arch: ...}`: timm's catalogue, with the optional extra `pip install 'dlcli[timm]'`."""

from pathlib import Path

from dlcli.components.models.registry import MODELS
from dlcli.errors import ConfigError, DataError, first_line

INSTALL = "pip install 'dlcli[timm]'"


@MODELS.register("timm", tags=("timm", "weights"))
def timm_model(input_shape, num_classes, load_weights: bool = True, *, arch: str, weights: str | None = None,
               drop_rate: float = 0.0):
    """A timm architecture by name (timm.list_models()); weights: DEFAULT (timm's pretrained, from the
    Hugging Face cache) or a .pth/.pt/.safetensors file."""
    timm = _timm()
    names = timm.list_models()
    if arch not in names:
        from dlcli.registry import did_you_mean

        raise ConfigError(f"model.arch: unknown timm architecture {arch!r}{did_you_mean(arch, names)} "
                          f"(timm.list_models() names {len(names)})")
    from dlcli.components.models import pretrained
    from dlcli.components.models.vision import check_input

    if len(input_shape) != 3:
        raise ConfigError(f"model: timm {arch} takes images (channels x height x width); this data gives "
                          f"inputs of shape {list(input_shape)}")
    download = weights == "DEFAULT" and load_weights
    try:  # timm adapts the first convolution to in_chans (summed kernels for 1 channel) and sizes the head
        model = timm.create_model(arch, pretrained=download, num_classes=num_classes, in_chans=input_shape[0],
                                  drop_rate=drop_rate)
    except (OSError, RuntimeError, ValueError) as err:
        if download:
            raise DataError(f"model.weights: timm's pretrained {arch} weights could not be read from the Hugging "
                            f"Face cache or downloaded ({first_line(err)[:160]})",
                            hint="online once, or set HF_HOME to a cache holding them") from None
        raise ConfigError(f"model: timm {arch}: {first_line(err)[:200]}") from None
    if weights not in (None, "DEFAULT") and load_weights:
        state = pretrained.read_file(Path(weights).expanduser(), "model.weights")
        pretrained.load_into(model, _channels_adapted(state, model, input_shape[0]), num_classes,
                             f"model.weights {weights}")
    check_input(model, f"timm {arch}", tuple(input_shape))
    return model


def _timm():
    try:
        import timm
    except ImportError:
        raise ConfigError(f"model: timm models need the timm package: {INSTALL}") from None
    return timm


def _channels_adapted(state: dict, model, channels: int) -> dict:
    """RGB first-layer kernels in a weights file, adapted to `channels` as timm does for its own weights."""
    if channels == 3:
        return state
    from timm.models import adapt_input_conv

    own = model.state_dict()
    return {name: adapt_input_conv(channels, value) if name in own and value.ndim == 4 and value.shape[1] == 3
            and own[name].shape[1] == channels and value.shape[0] == own[name].shape[0] else value
            for name, value in state.items()}
