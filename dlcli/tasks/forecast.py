"""Forecasting: the model regresses the next `horizon` values of the target columns from a window.
The loss works on normalised values; MAE and RMSE are reported in the data's own units, next to
the naive forecast (repeat the window's last value) that a useful model must beat."""

from dlcli.compute import autocast
from dlcli.errors import ConfigError, DataError
from dlcli.tasks.base import Task
from dlcli.tasks.registry import register_task


class ForecastMetrics:
    MIN = frozenset({"loss", "mae", "rmse", "naive_mae"})
    SHOWN = ("loss", "mae")

    @staticmethod
    def names(split: str, config=None, num_classes: int | None = None) -> list[str]:
        return ["loss"] if split == "train" else ["loss", "mae", "rmse", "naive_mae"]

    def __init__(self, std: list[float], target_index: list[int], device):
        import torch

        self.std = torch.tensor(std, device=device)
        self.target_index = target_index
        self.loss_sum = torch.zeros((), device=device)
        self.abs_sum = torch.zeros((), device=device)
        self.sq_sum = torch.zeros((), device=device)
        self.naive_abs_sum = torch.zeros((), device=device)
        self.count = 0  # forecast windows
        self.values = 0  # forecast values (windows x horizon x targets)

    def update(self, loss, out, batch) -> None:
        error = (out.detach().float() - batch.y) * self.std  # in the data's units
        naive = (batch.x[:, -1:, self.target_index] - batch.y) * self.std  # repeat the last input value
        self.count += batch.y.shape[0]
        self.values += batch.y.numel()
        self.loss_sum += loss.detach().float() * batch.y.shape[0]
        self.abs_sum += error.abs().sum()
        self.sq_sum += error.square().sum()
        self.naive_abs_sum += naive.abs().sum()

    def compute(self, prefix: str) -> dict:
        if self.count == 0:
            return {}
        out = {f"{prefix}/loss": float(self.loss_sum) / self.count}
        if prefix != "train":  # training logs only the loss (cheaper per step)
            out[f"{prefix}/mae"] = float(self.abs_sum) / self.values
            out[f"{prefix}/rmse"] = (float(self.sq_sum) / self.values) ** 0.5
            out[f"{prefix}/naive_mae"] = float(self.naive_abs_sum) / self.values
        return out

    def state_dict(self) -> dict:
        return {"loss_sum": self.loss_sum, "abs_sum": self.abs_sum, "sq_sum": self.sq_sum,
                "naive_abs_sum": self.naive_abs_sum, "count": self.count, "values": self.values}

    def load_state_dict(self, state: dict) -> None:
        for key in ("loss_sum", "abs_sum", "sq_sum", "naive_abs_sum"):
            getattr(self, key).copy_(state[key])
        self.count, self.values = state["count"], state["values"]


@register_task
class ForecastTask(Task):
    name = "forecasting"
    summary = "the next `horizon` values of a series (datasets timeseries, sine)"
    default_loss = "mse"
    losses = ("mse", "l1", "huber", "smooth_l1")
    reads = ("series",)
    metrics_class = ForecastMetrics
    eval_unit = "windows"

    def __init__(self, loss_fn, meta):
        self.loss_fn = loss_fn
        self.target_index = meta.sequence["target_index"]
        self.mean = [meta.feature_mean[i] for i in self.target_index]
        self.std = [meta.feature_std[i] for i in self.target_index]

    @classmethod
    def create(cls, config, meta, loss_fn):
        return cls(loss_fn, meta)

    @staticmethod
    def num_outputs(meta) -> int:
        return meta.sequence["horizon"] * len(meta.sequence["target_index"])

    @staticmethod
    def describe_outputs(meta) -> str:
        return f"horizon {meta.sequence['horizon']}"

    @staticmethod
    def infer_options(meta) -> set[str]:
        return {"steps"}

    def infer(self, model, config, meta, inputs, options, device, precision):
        if len(inputs) != 1:
            raise ConfigError(f"a forecaster takes one CSV series (its last {meta.sequence['window']} rows are "
                              f"the input window); got {len(inputs)} inputs")
        return "forecast", forecast(model, self, meta, device, precision, inputs[0], options.get("steps"))

    def loss(self, model, batch):
        out = model(batch.x).view(batch.y.shape)  # [B, horizon, targets]
        return self.loss_fn(out, batch.y, batch.weights), out

    def metrics(self, device, full: bool = True):
        return ForecastMetrics(self.std, self.target_index, device)

    def denormalize(self, values):
        import torch

        return values * torch.tensor(self.std, device=values.device) + torch.tensor(self.mean, device=values.device)


def forecast(model, task, meta, device, precision, file: str, steps: int | None) -> list[dict]:
    """The next `steps` values after the last window of a CSV; past the model's horizon the forecasts
    are fed back as inputs (only when the model forecasts every input column)."""
    import torch

    from dlcli.data.sequences import read_series
    from dlcli.data.windows import normalize

    window, horizon = meta.sequence["window"], meta.sequence["horizon"]
    target_index = meta.sequence["target_index"]
    steps = steps or horizon
    if steps > horizon and sorted(target_index) != list(range(len(meta.feature_names))):
        raise ConfigError(f"--steps: at most {horizon} (the model's horizon), since it does not forecast every "
                          f"input column and cannot feed its forecasts back")
    _, rows = read_series(file, meta.feature_names)
    if len(rows) < window:
        raise DataError(f"{file}: {len(rows)} rows; the model needs the last {window} (its window)")
    values = normalize(rows[-window:], meta).to(device)
    predicted: list[torch.Tensor] = []
    model.eval()
    with torch.inference_mode(), autocast(device, precision):
        while len(predicted) < steps:
            out = model(values[None, -window:]).float().view(horizon, len(target_index))
            predicted += list(out)
            if steps > horizon:  # feed the forecasts back, each value into its own column
                fed_back = torch.empty(horizon, values.shape[1], device=values.device)
                fed_back[:, target_index] = out
                values = torch.cat([values, fed_back])
    names = [meta.feature_names[i] for i in target_index]
    result = task.denormalize(torch.stack(predicted[:steps])).cpu().tolist()
    return [{"step": i + 1, **{n: round(v, 6) for n, v in zip(names, row)}} for i, row in enumerate(result)]
