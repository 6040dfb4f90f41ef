"""A GAN's metrics: running D and G losses and D's outputs, and the names gan_eval adds."""

QUALITY = ("fd", "inception_score", "class_coverage")  # val/* metrics of gan_eval


class GANMetrics:
    """Running sums on the device: D and G losses, mean D(x) and D(G(z)); loss = D + G loss."""

    KEYS = ("d_loss", "g_loss", "d_real", "d_fake")
    MIN = frozenset({"loss", "d_loss", "g_loss", "fd"})
    SHOWN = ("d_loss", "g_loss", "fd")

    @staticmethod
    def names(split: str, config=None, num_classes: int | None = None) -> list[str]:
        measured = list(QUALITY) if split == "val" and getattr(config, "gan_eval", None) is not None else []
        return ["loss", "d_loss", "g_loss", "d_real", "d_fake", *measured]

    def __init__(self, device):
        import torch

        self.sums = {k: torch.zeros((), device=device) for k in self.KEYS}
        self.count, self.g_count = 0, 0

    def update(self, loss, outputs: dict, batch) -> None:
        n = batch.x.shape[0]
        self.count += n
        for key in ("d_loss", "d_real", "d_fake"):
            self.sums[key] += outputs[key].float() * n
        if outputs["g_loss"] is not None:  # generator steps happen every n_critic batches
            self.g_count += n
            self.sums["g_loss"] += outputs["g_loss"].float() * n

    def compute(self, prefix: str) -> dict:
        if self.count == 0:
            return {}
        out = {f"{prefix}/{k}": float(self.sums[k]) / self.count for k in ("d_loss", "d_real", "d_fake")}
        out[f"{prefix}/g_loss"] = float(self.sums["g_loss"]) / self.g_count if self.g_count else float("nan")
        out[f"{prefix}/loss"] = out[f"{prefix}/d_loss"] + (out[f"{prefix}/g_loss"] if self.g_count else 0.0)
        return out

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "count": self.count, "g_count": self.g_count}

    def load_state_dict(self, state: dict) -> None:
        for key in self.KEYS:
            self.sums[key].copy_(state["sums"][key])
        self.count, self.g_count = state["count"], state["g_count"]
