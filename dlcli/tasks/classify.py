"""Classification: logits -> loss (with sample weights) and accuracy / top-5 / macro-F1.

Metric sums stay on the device as tensors; nothing syncs with the host until `compute()`,
which the engine calls only at log intervals and epoch ends.
"""


def l1_penalty(model, strength: float):
    """strength x the sum of |w| over weight matrices and kernels (not biases or norms)."""
    return strength * sum(p.abs().sum() for p in model.parameters() if p.ndim > 1)


class ClassificationTask:
    def __init__(self, loss_fn, num_classes: int, l1: float = 0.0):
        self.loss_fn, self.num_classes, self.l1 = loss_fn, num_classes, l1

    def reset(self) -> None:
        pass

    def loss(self, model, batch):
        """(loss, logits) for one batch; the L1 penalty is added to the loss here."""
        logits = model(batch.x) if batch.lengths is None else model(batch.x, batch.lengths)
        loss = self.loss_fn(logits, batch.y, batch.weights)
        if self.l1:
            loss = loss + l1_penalty(model, self.l1)
        return loss, logits

    def metrics(self, device, full: bool = True):
        """Evaluation tracks everything; training only loss and accuracy (cheaper per step)."""
        return ClassificationMetrics(self.num_classes, device, full)

    @staticmethod
    def predict(logits):
        return logits.float().softmax(1)


FOLD_EVERY = 16  # training steps whose outputs are kept before their metrics are reduced


class ClassificationMetrics:
    """Running sums on the device: loss x n, correct predictions, and (full) confusion matrix, top-5."""

    def __init__(self, num_classes: int, device, full: bool = True):
        import torch

        self.k, self.full = num_classes, full
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
        self.top5 = torch.zeros((), dtype=torch.long, device=device)
        self.count = 0
        # Training steps' (loss, logits, target), not yet reduced: a training step launches no metric
        # kernels at all. Every FOLD_EVERY steps, and whenever the sums are read (log interval, epoch
        # end, checkpoint), a few batched kernels fold them in. Small models on a GPU are
        # launch-bound, so per-step kernels would cost throughput; the bound caps the memory held.
        self.pending: list = []

    def update(self, loss, logits, batch) -> None:
        target = batch.y
        n = target.shape[0]
        self.count += n
        if not self.full:
            self.pending.append((loss.detach(), n, logits.detach(), target))
            if len(self.pending) >= FOLD_EVERY:
                self.fold()
            return
        pred = logits.detach().argmax(1)
        self.loss_sum += loss.detach().float() * n
        # scatter_add_, not bincount: bincount syncs with the host on CUDA to size its output.
        cells = target * self.k + pred
        self.confusion.scatter_add_(0, cells, cells.new_ones(cells.shape))
        if self.k > 5:
            top = logits.detach().topk(5, dim=1).indices
            self.top5 += (top == target[:, None]).any(1).sum()

    def fold(self) -> None:
        """Add the pending training steps into the running sums."""
        import torch

        if not self.pending:
            return
        losses, sizes, logits, targets = zip(*self.pending)
        self.pending = []
        sizes = torch.tensor(sizes, dtype=torch.float32).to(self.loss_sum.device, non_blocking=True)
        self.loss_sum += (torch.stack(losses).float() * sizes).sum()
        self.correct += (torch.cat(logits).argmax(1) == torch.cat(targets)).sum()

    def compute(self, prefix: str) -> dict:
        """Sync once and return plain floats: loss, acc, and when full f1 (macro), top5 (> 5 classes)."""
        self.fold()
        if self.count == 0:
            return {}
        if not self.full:
            return {f"{prefix}/loss": float(self.loss_sum) / self.count, f"{prefix}/acc": float(self.correct) / self.count}
        cm = self.confusion_matrix()
        tp = cm.diag().float()
        precision = tp / cm.sum(0).clamp_min(1)
        recall = tp / cm.sum(1).clamp_min(1)
        f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
        present = (cm.sum(1) + cm.sum(0)) > 0  # classes absent from both targets and predictions don't count
        out = {
            f"{prefix}/loss": float(self.loss_sum) / self.count,
            f"{prefix}/acc": float(tp.sum()) / self.count,
            f"{prefix}/f1": float(f1[present].mean()) if present.any() else 0.0,
        }
        if self.k > 5:
            out[f"{prefix}/top5"] = float(self.top5) / self.count
        return out

    def state_dict(self) -> dict:
        self.fold()
        return {"loss_sum": self.loss_sum, "correct": self.correct, "confusion": self.confusion,
                "top5": self.top5, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.pending = []
        self.loss_sum.copy_(state["loss_sum"])
        self.correct.copy_(state["correct"])
        self.confusion.copy_(state["confusion"])
        self.top5.copy_(state["top5"])
        self.count = state["count"]

    def confusion_matrix(self):
        return self.confusion.view(self.k, self.k).cpu()
