"""Forecasting: the model regresses the next `horizon` values of the target columns from a window.
By default (`difference: 1`) it reads the window's changes and predicts the next changes, added back
onto the window's last values (data/differencing.py). The loss works on normalised values; MAE and
RMSE are reported in the data's own units, next to the naive forecast (repeat the window's last
value) and, with `seasonal_difference: K`, the seasonal naive one (repeat the value K rows back)."""

from dlcli.compute import autocast
from dlcli.data.differencing import differenced, integrated, lag_polynomial
from dlcli.errors import ConfigError, DataError
from dlcli.tasks.base import Task
from dlcli.tasks.registry import register_task


class ForecastMetrics:
    MIN = frozenset({"loss", "mae", "rmse", "naive_mae", "seasonal_naive_mae"})
    SHOWN = ("loss", "mae")

    @staticmethod
    def names(split: str, config=None, num_classes: int | None = None) -> list[str]:
        if split == "train":
            return ["loss"]
        return ["loss", "mae", "rmse", "naive_mae"] + (["seasonal_naive_mae"] if season_of(config) else [])

    def __init__(self, std: list[float], target_index: list[int], device, season: int = 0):
        import torch

        self.std = torch.tensor(std, device=device)
        self.target_index, self.season = target_index, season
        self.seasonal_abs_sum = torch.zeros((), device=device)
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
        if self.season:  # step h repeats the value a whole number of seasons back
            window, horizon, k = batch.x.shape[1], batch.y.shape[1], self.season
            rows = [window - 1 + h - k * -(-h // k) for h in range(1, horizon + 1)]
            self.seasonal_abs_sum += ((batch.x[:, rows][..., self.target_index] - batch.y) * self.std).abs().sum()

    def compute(self, prefix: str) -> dict:
        if self.count == 0:
            return {}
        out = {f"{prefix}/loss": float(self.loss_sum) / self.count}
        if prefix != "train":  # training logs only the loss (cheaper per step)
            out[f"{prefix}/mae"] = float(self.abs_sum) / self.values
            out[f"{prefix}/rmse"] = (float(self.sq_sum) / self.values) ** 0.5
            out[f"{prefix}/naive_mae"] = float(self.naive_abs_sum) / self.values
            if self.season:
                out[f"{prefix}/seasonal_naive_mae"] = float(self.seasonal_abs_sum) / self.values
        return out

    def state_dict(self) -> dict:
        return {"loss_sum": self.loss_sum, "abs_sum": self.abs_sum, "sq_sum": self.sq_sum,
                "naive_abs_sum": self.naive_abs_sum, "seasonal_abs_sum": self.seasonal_abs_sum,
                "count": self.count, "values": self.values}

    def load_state_dict(self, state: dict) -> None:
        for key in ("loss_sum", "abs_sum", "sq_sum", "naive_abs_sum", "seasonal_abs_sum"):
            if key in state:  # checkpoints before seasonal differencing have no seasonal_abs_sum
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
        seq = meta.sequence
        self.target_index = seq["target_index"]
        self.mean = [meta.feature_mean[i] for i in self.target_index]
        self.std = [meta.feature_std[i] for i in self.target_index]
        # checkpoints from before differencing forecast levels (no "difference" in their meta)
        self.season = seq.get("seasonal_difference", 0)
        self.lags = lag_polynomial(seq.get("difference", 0), self.season)
        self.change_std = seq.get("change_std")
        self._scales: dict = {}

    @classmethod
    def create(cls, config, meta, loss_fn):
        return cls(loss_fn, meta)

    def scales(self, device):
        """(input scale [F], output scale [T]) of the changes, as tensors on `device` (made once)."""
        import torch

        if device not in self._scales:
            full = torch.tensor(self.change_std, device=device)
            self._scales[device] = (full, full[self.target_index])
        return self._scales[device]

    def model_input(self, x):
        """What the model reads from windows x [B, window, F]: the window itself, or its changes."""
        if len(self.lags) == 1:
            return x
        return differenced(x, self.lags) / self.scales(x.device)[0]

    def levels(self, out, x):
        """The model's outputs [B, horizon, T] as forecasts of the levels (normalised), from windows x."""
        if len(self.lags) == 1:
            return out
        return integrated(out.float() * self.scales(x.device)[1], x[..., self.target_index], self.lags)

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
        """(loss, level forecasts): the loss on what the model predicts (levels, or changes)."""
        out = model(self.model_input(batch.x)).view(batch.y.shape)  # [B, horizon, targets]
        if len(self.lags) == 1:
            return self.loss_fn(out, batch.y, batch.weights), out
        import torch

        spans = torch.cat([batch.x[..., self.target_index], batch.y], 1)  # the targets' past, then future
        target = differenced(spans, self.lags)[:, -batch.y.shape[1]:] / self.scales(out.device)[1]
        return self.loss_fn(out, target, batch.weights), self.levels(out.detach(), batch.x)

    def metrics(self, device, full: bool = True):
        return ForecastMetrics(self.std, self.target_index, device, self.season)

    def denormalize(self, values):
        import torch

        return values * torch.tensor(self.std, device=values.device) + torch.tensor(self.mean, device=values.device)


def forecast(model, task, meta, device, precision, file: str, steps: int | None) -> list[dict]:
    """The next `steps` values after the last window of a CSV (of each series, with an `id` column);
    past the model's horizon the forecasts are fed back as inputs (only when the model forecasts
    every input column)."""
    from dlcli.data.sequences import read_series

    window, horizon = meta.sequence["window"], meta.sequence["horizon"]
    target_index = meta.sequence["target_index"]
    steps = steps or horizon
    if steps > horizon and sorted(target_index) != list(range(len(meta.feature_names))):
        raise ConfigError(f"--steps: at most {horizon} (the model's horizon), since it does not forecast every "
                          f"input column and cannot feed its forecasts back")
    id_column = meta.sequence.get("id")
    _, rows, lengths, ids = read_series(file, meta.feature_names, id_column)
    result = []
    for name, part in zip(ids, rows.split(lengths or [len(rows)])):
        if len(part) < window:
            series = f"series {name!r} of " if id_column else ""
            raise DataError(f"{series}{file}: {len(part)} rows; the model needs the last {window} (its window)")
        named = {id_column: name} if id_column else {}
        result += [{**named, **row} for row in _forecast_series(model, task, meta, device, precision, part, steps)]
    return result


def _forecast_series(model, task, meta, device, precision, rows, steps: int) -> list[dict]:
    import torch

    from dlcli.data.windows import normalize

    window, horizon = meta.sequence["window"], meta.sequence["horizon"]
    target_index = meta.sequence["target_index"]
    values = normalize(rows[-window:], meta).to(device)
    predicted: list[torch.Tensor] = []
    model.eval()
    with torch.inference_mode(), autocast(device, precision):
        while len(predicted) < steps:
            last = values[None, -window:]
            out = task.levels(model(task.model_input(last)).float().view(1, horizon, len(target_index)), last)[0]
            predicted += list(out)
            if steps > horizon:  # feed the forecasts back, each value into its own column
                fed_back = torch.empty(horizon, values.shape[1], device=values.device)
                fed_back[:, target_index] = out
                values = torch.cat([values, fed_back])
    names = [meta.feature_names[i] for i in target_index]
    result = task.denormalize(torch.stack(predicted[:steps])).cpu().tolist()
    return [{"step": i + 1, **{n: round(v, 6) for n, v in zip(names, row)}} for i, row in enumerate(result)]


def season_of(config) -> int:
    """The seasonal lag a config's dataset differences by (0: none)."""
    dataset = getattr(getattr(config, "data", None), "dataset", None) or {}
    season = dataset.get("seasonal_difference", 0)
    return season if isinstance(season, int) else 0
