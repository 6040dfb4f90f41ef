"""Forecasting: the model regresses the next `horizon` values of the target columns from a window.
The loss works on normalised values; MAE and RMSE are reported in the data's own units, next to
the naive forecast (repeat the window's last value) that a useful model must beat."""

class ForecastTask:
    def __init__(self, loss_fn, meta):
        self.loss_fn = loss_fn
        self.target_index = meta.sequence["target_index"]
        self.mean = [meta.feature_mean[i] for i in self.target_index]
        self.std = [meta.feature_std[i] for i in self.target_index]

    def reset(self) -> None:
        pass

    def loss(self, model, batch):
        out = model(batch.x).view(batch.y.shape)  # [B, horizon, targets]
        return self.loss_fn(out, batch.y, batch.weights), out

    def metrics(self, device, full: bool = True):
        return ForecastMetrics(self.std, self.target_index, device)

    def denormalize(self, values):
        import torch

        return values * torch.tensor(self.std, device=values.device) + torch.tensor(self.mean, device=values.device)


class ForecastMetrics:
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
