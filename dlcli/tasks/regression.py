"""Regression: numeric target columns of a table. Targets are z-scored with the training split's
statistics (kept in the checkpoint) for the loss; MAE, RMSE and R² are reported in the data's own
units, per target and averaged, next to the baseline that predicts the training mean."""

from dlcli.errors import ConfigError
from dlcli.tasks.base import Task
from dlcli.tasks.registry import register_task


def _targets(config) -> list[str]:
    """The target column names of a (validated or raw) config; [] when there are none (or they are
    not names: the dataset's own check reports that)."""
    dataset = config.data.dataset if config is not None else {}
    targets = dataset.get("targets") if isinstance(dataset, dict) else None
    targets = [targets] if isinstance(targets, str) else targets
    return [t for t in targets if isinstance(t, str)] if isinstance(targets, list) else []


class RegressionMetrics:
    """Running sums on the device, per target: |error|, error², y, y², |y - training mean|."""

    MIN = frozenset({"loss", "mae", "rmse", "baseline_mae"})
    SHOWN = ("loss", "mae")
    PER_TARGET = ("mae", "rmse", "r2")

    @classmethod
    def names(cls, split: str, config=None, num_classes: int | None = None) -> list[str]:
        if split == "train":
            return ["loss"]
        targets = _targets(config)
        per = [f"{m}:{t}" for t in targets for m in cls.PER_TARGET] if len(targets) > 1 else []
        return ["loss", "mae", "rmse", "r2", "baseline_mae", *per]

    def __init__(self, std: list[float], targets: list[str], device, full: bool = True):
        import torch

        self.std, self.targets, self.full = torch.tensor(std, device=device), targets, full
        zeros = (lambda: torch.zeros(len(targets), device=device))
        self.loss_sum = torch.zeros((), device=device)
        self.abs_sum, self.sq_sum, self.y_sum, self.y_sq_sum, self.base_abs_sum = (zeros() for _ in range(5))
        self.count = 0

    def update(self, loss, out, batch) -> None:
        y = batch.y.float()
        self.count += y.shape[0]
        self.loss_sum += loss.detach().float() * y.shape[0]
        if not self.full:  # training tracks the loss alone (no per-step metric kernels)
            return
        error = out.detach().float() - y
        self.abs_sum += error.abs().sum(0)
        self.sq_sum += error.square().sum(0)
        self.y_sum += y.sum(0)
        self.y_sq_sum += y.square().sum(0)
        self.base_abs_sum += y.abs().sum(0)  # the training mean is 0 in standardized units

    def compute(self, prefix: str) -> dict:
        import torch

        if self.count == 0:
            return {}
        out = {f"{prefix}/loss": float(self.loss_sum) / self.count}
        if not self.full:
            return out
        n = self.count
        mae = (self.abs_sum / n * self.std).tolist()
        rmse = ((self.sq_sum / n).sqrt() * self.std).tolist()
        total = self.y_sq_sum - self.y_sum.square() / n  # scale-free: standardized units do
        # undefined (NaN) for a split whose targets do not vary: one row, or a constant column
        r2 = torch.where(total > 1e-6 * n, 1 - self.sq_sum / total, torch.nan).tolist()
        base = (self.base_abs_sum / n * self.std).tolist()
        out.update({f"{prefix}/mae": _mean(mae), f"{prefix}/rmse": _mean(rmse), f"{prefix}/r2": _mean(r2),
                    f"{prefix}/baseline_mae": _mean(base)})
        if len(self.targets) > 1:
            for i, name in enumerate(self.targets):
                out.update({f"{prefix}/mae:{name}": mae[i], f"{prefix}/rmse:{name}": rmse[i],
                            f"{prefix}/r2:{name}": r2[i]})
        return out

    def state_dict(self) -> dict:
        return {"loss_sum": self.loss_sum, "abs_sum": self.abs_sum, "sq_sum": self.sq_sum, "y_sum": self.y_sum,
                "y_sq_sum": self.y_sq_sum, "base_abs_sum": self.base_abs_sum, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        for key in ("loss_sum", "abs_sum", "sq_sum", "y_sum", "y_sq_sum", "base_abs_sum"):
            getattr(self, key).copy_(state[key])
        self.count = state["count"]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@register_task
class RegressionTask(Task):
    name = "regression"
    summary = "numeric target columns of a table (dataset csv with targets)"
    default_loss = "mse"
    losses = ("mse", "l1", "huber", "smooth_l1")
    dataset_outputs = "targets"
    reads = ("tabular",)
    metrics_class = RegressionMetrics

    def __init__(self, loss_fn, meta):
        self.loss_fn, self.targets = loss_fn, list(meta.outputs["targets"])
        self.mean, self.std = list(meta.outputs["mean"]), list(meta.outputs["std"])

    @classmethod
    def problems(cls, config) -> list[str]:
        from dlcli.tasks.tables import table_problems

        if not _targets(config):
            return ["data.dataset.targets: a regression needs the numeric target column(s), "
                    "e.g. targets: [price]"]
        return table_problems(config, cls)

    @classmethod
    def create(cls, config, meta, loss_fn):
        return cls(loss_fn, meta)

    @staticmethod
    def fit_outputs(train, meta) -> None:
        """The targets' training-split mean and spread: the loss sees z-scores, reports the data's units."""
        from dlcli.errors import DataError

        targets = list(train.options["targets"])
        std = train.y.std(0) if len(train.y) > 1 else train.y.new_zeros(len(targets))
        for name, value, spread in zip(targets, train.y[0].tolist(), std.tolist()):
            if not spread > 0:
                raise DataError(f"{train.options['file']}: target column {name!r} is constant ({value:g}) in the "
                                f"training split: there is nothing to learn")
        meta.outputs = {"targets": targets, "mean": train.y.mean(0).tolist(), "std": std.tolist()}

    @staticmethod
    def encode_outputs(source, meta) -> None:
        import torch

        if source is not None:
            source.y = (source.y - torch.tensor(meta.outputs["mean"])) / torch.tensor(meta.outputs["std"])

    def loss(self, model, batch):
        out = model(batch.x).view(batch.y.shape)  # [B, targets]
        return self.loss_fn(out, batch.y, batch.weights), out

    def metrics(self, device, full: bool = True):
        return RegressionMetrics(self.std, self.targets, device, full)

    @staticmethod
    def num_outputs(meta) -> int:
        return len(meta.outputs["targets"])

    @staticmethod
    def describe_outputs(meta) -> str:
        targets = meta.outputs["targets"]
        return f"{len(targets)} target(s): {', '.join(targets)}"

    def eval_report(self, metrics, meta, context: dict) -> dict:
        return {"targets": self.targets}

    def denormalize(self, values):
        import torch

        return values * torch.tensor(self.std) + torch.tensor(self.mean)

    def infer(self, model, config, meta, inputs, options, device, precision):
        """One row per CSV row: each target's predicted value in the data's units."""
        from dlcli.compute import batched
        from dlcli.data.inputs import collect_inputs, tabular_inputs

        files = collect_inputs(inputs, text_files=True)
        if not files:
            raise ConfigError("no inputs given: name CSV files with the feature columns")
        x, names, unseen = tabular_inputs(files, meta)
        outputs = batched(model, lambda rows: self.predict(model(x[rows].to(device))), len(x), device, precision)
        values = self.denormalize(outputs).tolist()
        rows = []
        for name, row, missing in zip(names, values, unseen):
            rows.append({"input": name, **{t: round(v, 6) for t, v in zip(self.targets, row)},
                         **({"unseen": ";".join(missing)} if meta.categories else {})})
        return "values", rows

    @staticmethod
    def predict(outputs):
        return outputs.float()
