"""Multi-label classification: any number of labels per sample (CSV 0/1 columns, or an image folder
with a labels.csv). One logit per label through binary cross-entropy; a label is predicted when its
probability passes `train.threshold` (0.5). Metrics: micro- and macro-F1, exact-match (subset)
accuracy and the Hamming loss (the share of wrong label decisions)."""

from dlcli.tasks.base import Task
from dlcli.tasks.registry import register_task

THRESHOLD = 0.5


class MultilabelMetrics:
    """Running per-label counts on the device: true/false positives, false negatives; exact matches."""

    MIN = frozenset({"loss", "hamming"})
    SHOWN = ("loss", "f1_micro")

    @staticmethod
    def names(split: str, config=None, num_classes: int | None = None) -> list[str]:
        return ["loss"] if split == "train" else ["loss", "f1_micro", "f1_macro", "subset_acc", "hamming"]

    def __init__(self, labels: int, threshold: float, device, full: bool = True):
        import torch

        self.threshold, self.full = threshold, full
        self.loss_sum = torch.zeros((), device=device)
        self.tp, self.fp, self.fn = (torch.zeros(labels, dtype=torch.long, device=device) for _ in range(3))
        self.exact = torch.zeros((), dtype=torch.long, device=device)
        self.count = 0

    def update(self, loss, logits, batch) -> None:
        n = batch.y.shape[0]
        self.count += n
        self.loss_sum += loss.detach().float() * n
        if not self.full:  # training tracks the loss alone (no per-step metric kernels)
            return
        predicted = logits.detach().float().sigmoid() > self.threshold
        truth = batch.y > 0.5
        self.tp += (predicted & truth).sum(0)
        self.fp += (predicted & ~truth).sum(0)
        self.fn += (~predicted & truth).sum(0)
        self.exact += (predicted == truth).all(1).sum()

    def compute(self, prefix: str) -> dict:
        if self.count == 0:
            return {}
        out = {f"{prefix}/loss": float(self.loss_sum) / self.count}
        if not self.full:
            return out
        tp, fp, fn = self.tp.float(), self.fp.float(), self.fn.float()
        per_label = 2 * tp / (2 * tp + fp + fn).clamp_min(1)
        present = (tp + fp + fn) > 0  # a label absent from both truth and predictions does not count
        micro = 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()).clamp_min(1)
        out.update({f"{prefix}/f1_micro": float(micro),
                    f"{prefix}/f1_macro": float(per_label[present].mean()) if present.any() else 0.0,
                    f"{prefix}/subset_acc": float(self.exact) / self.count,
                    f"{prefix}/hamming": float(fp.sum() + fn.sum()) / (self.count * len(tp))})
        return out

    def state_dict(self) -> dict:
        return {"loss_sum": self.loss_sum, "tp": self.tp, "fp": self.fp, "fn": self.fn, "exact": self.exact,
                "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        for key in ("loss_sum", "tp", "fp", "fn", "exact"):
            getattr(self, key).copy_(state[key])
        self.count = state["count"]


@register_task
class MultilabelTask(Task):
    name = "multilabel"
    tta_average = "sigmoid"
    summary = "any number of labels per sample (csv with labels: [...], image_folder with labels: labels.csv)"
    default_loss = "bce_with_logits"
    losses = ("bce_with_logits", "bce")
    dataset_outputs = "labels"
    reads = ("label_sets",)
    metrics_class = MultilabelMetrics
    uses_threshold = True

    def __init__(self, loss_fn, labels: list[str], threshold: float = THRESHOLD):
        self.loss_fn, self.labels, self.threshold = loss_fn, labels, threshold

    @classmethod
    def problems(cls, config) -> list[str]:
        from dlcli.tasks.tables import table_problems

        if not config.data.dataset.get("labels"):
            return ["data.dataset.labels: a multilabel task needs the 0/1 label columns (csv: labels: [a, b]) "
                    "or the labels file (image_folder: labels: labels.csv)"]
        return table_problems(config, cls)

    @classmethod
    def create(cls, config, meta, loss_fn):
        threshold = config.train.threshold if config.train.threshold is not None else THRESHOLD
        return cls(loss_fn, list(meta.class_names), threshold)

    def loss(self, model, batch):
        logits = model(batch.x)
        return self.loss_fn(logits, batch.y, batch.weights), logits

    def metrics(self, device, full: bool = True):
        return MultilabelMetrics(len(self.labels), self.threshold, device, full)

    @staticmethod
    def predict(outputs):
        return outputs.float().sigmoid()

    @staticmethod
    def describe_outputs(meta) -> str:
        return f"{len(meta.class_names)} labels"

    def eval_report(self, metrics, meta, context: dict) -> dict:
        return {"labels": self.labels, "threshold": self.threshold}

    def infer(self, model, config, meta, inputs, options, device, precision):
        """One row per input: the labels above the threshold, and every label's probability."""
        from dlcli.tasks.classify import class_probabilities

        probs, names, unseen = class_probabilities(self, model, config, meta, inputs, options, device, precision)
        rows = []
        for name, p, missing in zip(names, probs.tolist(), unseen):
            chosen = [(label, q) for label, q in zip(self.labels, p) if q > self.threshold]
            rows.append({"input": name, "labels": [label for label, _ in sorted(chosen, key=lambda c: -c[1])],
                         "probabilities": {label: round(q, 6) for label, q in zip(self.labels, p)},
                         **({"unseen": ";".join(missing)} if meta.categories else {})})
        return "labels", rows
