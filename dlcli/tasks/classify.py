"""Classification: logits -> loss (with sample weights) and accuracy / top-5 / macro-F1.

Metric sums stay on the device as tensors; nothing syncs with the host until `compute()`,
which the engine calls only at log intervals and epoch ends.
"""

from dlcli.errors import ConfigError, DataError, listed
from dlcli.tasks.base import Task
from dlcli.tasks.registry import register_task

FOLD_EVERY = 16  # training steps whose outputs are kept before their metrics are reduced


class ClassificationMetrics:
    """Running sums on the device: loss x n, correct predictions, and (full) confusion matrix, top-5."""

    MIN = frozenset({"loss"})
    SHOWN = ("loss", "acc")

    @staticmethod
    def names(split: str, config=None, num_classes: int | None = None) -> list[str]:
        if split == "train":
            return ["loss", "acc"]
        return (["loss", "acc", "f1"] + (["top5"] if num_classes is None or num_classes > 5 else [])
                + (["nll"] if smoothed(config) else []))

    def __init__(self, num_classes: int, device, full: bool = True, nll: bool = False):
        import torch

        self.k, self.full, self.nll = num_classes, full, nll and full
        self.loss_sum = torch.zeros((), device=device)
        self.nll_sum = torch.zeros((), device=device)  # plain -log p(target), for losses with label smoothing
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
        self.top5 = torch.zeros((), dtype=torch.long, device=device)
        self.count = 0
        # Training (full=False) launches no metric kernels per step: each step's (loss, n) and
        # (logits, target) wait here and are reduced in a few batched kernels (small models on a GPU
        # are launch-bound). Losses fold into loss_sum only at fixed points, every FOLD_EVERY steps,
        # so the float sum is grouped the same however often the metrics are read or checkpointed;
        # hit counts are integers and fold whenever read. FOLD_EVERY also bounds the memory held.
        self.pending_loss: list = []
        self.pending_hits: list = []

    def update(self, loss, logits, batch) -> None:
        target = batch.y
        n = target.shape[0]
        self.count += n
        if not self.full:
            self.pending_loss.append((loss.detach(), n))
            self.pending_hits.append((logits.detach(), target))
            if len(self.pending_loss) == FOLD_EVERY:
                self.loss_sum += self._weighted_pending().sum()
                self.pending_loss = []
            if len(self.pending_hits) >= FOLD_EVERY:
                self._count_hits()
            return
        pred = logits.detach().argmax(1)
        self.loss_sum += loss.detach().float() * n
        if self.nll:
            import torch.nn.functional as F

            self.nll_sum += F.cross_entropy(logits.detach().float(), target, reduction="sum")
        # scatter_add_, not bincount: bincount syncs with the host on CUDA to size its output.
        cells = target * self.k + pred
        self.confusion.scatter_add_(0, cells, cells.new_ones(cells.shape))
        if self.k > 5:
            top = logits.detach().topk(5, dim=1).indices
            self.top5 += (top == target[:, None]).any(1).sum()

    def _weighted_pending(self):
        """The pending steps' loss x n, one entry per step (empty when none)."""
        import torch

        if not self.pending_loss:
            return self.loss_sum.new_zeros(0)
        losses, sizes = zip(*self.pending_loss)
        sizes = torch.tensor(sizes, dtype=torch.float32).to(self.loss_sum.device, non_blocking=True)
        return torch.stack(losses).float() * sizes

    def _count_hits(self) -> None:
        import torch

        if self.pending_hits:
            logits, targets = zip(*self.pending_hits)
            self.pending_hits = []
            self.correct += (torch.cat(logits).argmax(1) == torch.cat(targets)).sum()

    def compute(self, prefix: str) -> dict:
        """Sync once and return plain floats: loss, acc, and when full f1 (macro), top5 (> 5 classes)."""
        if self.count == 0:
            return {}
        if not self.full:
            self._count_hits()
            loss_total = self.loss_sum + self._weighted_pending().sum()  # loss_sum itself folds at fixed steps
            return {f"{prefix}/loss": float(loss_total) / self.count,
                    f"{prefix}/acc": float(self.correct) / self.count}
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
        if self.nll:
            out[f"{prefix}/nll"] = float(self.nll_sum) / self.count
        return out

    def state_dict(self) -> dict:
        """Sums and counts (a mid-epoch checkpoint holds them summed over the DDP ranks); unfolded
        losses travel as per-step terms."""
        self._count_hits()
        return {"loss_sum": self.loss_sum, "pending_loss": self._weighted_pending(), "correct": self.correct,
                "confusion": self.confusion, "top5": self.top5, "count": self.count,
                "nll_sum": self.nll_sum}

    def load_state_dict(self, state: dict) -> None:
        pending = state.get("pending_loss")
        # Restored terms are loss x n already: kept with n = 1, they fold to the very same values.
        self.pending_loss = [(term, 1) for term in pending.to(self.loss_sum.device)] if pending is not None else []
        self.pending_hits = []
        self.loss_sum.copy_(state["loss_sum"])
        self.correct.copy_(state["correct"])
        self.confusion.copy_(state["confusion"])
        self.top5.copy_(state["top5"])
        if "nll_sum" in state:  # checkpoints before 'nll' have none
            self.nll_sum.copy_(state["nll_sum"])
        self.count = state["count"]

    def confusion_matrix(self):
        return self.confusion.view(self.k, self.k).cpu()


@register_task
class ClassificationTask(Task):
    name = "classification"
    tta_average = "softmax"
    mixes = True
    summary = "one class per sample: images, CSV rows, texts, image rows"
    default_loss = "cross_entropy"
    losses = ("cross_entropy", "nll", "bce_with_logits", "bce", "mse", "l1", "huber", "soft_f1")
    reads = ("image", "tabular", "sequence", "labelled_texts")
    metrics_class = ClassificationMetrics
    class_weights = True

    def __init__(self, loss_fn, num_classes: int, nll: bool = False, mixup=None):
        self.loss_fn, self.num_classes, self.nll, self.mixup = loss_fn, num_classes, nll, mixup

    @classmethod
    def create(cls, config, meta, loss_fn):
        from dlcli.tasks.mixup import Mixup

        spec = config.data.mixup
        mixup = Mixup(spec.alpha, spec.cutmix_alpha, spec.prob, spec.switch_prob) if spec is not None else None
        return cls(loss_fn, len(meta.class_names), smoothed(config), mixup)

    def loss(self, model, batch):
        """(loss, logits) for one batch."""
        logits = model(batch.x) if batch.lengths is None else model(batch.x, batch.lengths)
        return self.loss_fn(logits, batch.y, batch.weights), logits

    def train_loss(self, model, batch):
        """With data.mixup, the loss of a mixed batch against its mixed targets."""
        from dlcli.tasks.mixup import mixed_loss

        mixed = self.mixup(batch.x) if self.mixup is not None else None
        if mixed is None:
            return self.loss(model, batch)
        logits = model(mixed.x)
        return mixed_loss(self.loss_fn, logits, batch.y, batch.weights, mixed), logits

    def metrics(self, device, full: bool = True):
        """Evaluation tracks everything; training only loss and accuracy (cheaper per step)."""
        return ClassificationMetrics(self.num_classes, device, full, self.nll)

    @staticmethod
    def predict(logits):
        return logits.float().softmax(1)

    @classmethod
    def problems(cls, config) -> list[str]:
        from dlcli.tasks.tables import table_problems

        return table_problems(config)

    @staticmethod
    def check_data(train, meta) -> None:
        k = len(meta.class_names)
        if k < 2:
            raise DataError(f"the training data holds a single class ({listed(meta.class_names)}); "
                            f"a classifier needs two or more")
        if int(train.y.max()) >= k or int(train.y.min()) < 0:
            raise DataError(f"labels must lie in [0, {k - 1}]")
        if train.kind in ("tabular", "text") and looks_continuous(meta.class_names, len(train.y)):
            column = train.options.get("label_column") or train.options.get("label") or "label"
            raise DataError(f"the label column {column!r} holds {k} distinct numbers ({listed(meta.class_names, 5)}): "
                            f"that looks like a value to predict, not classes",
                            hint=f"for a number, use task: regression with data.dataset.targets: [{column}]")

    @staticmethod
    def prepare_eval(source, meta):
        from dlcli.data.splits import remap_labels

        return remap_labels(source, meta.class_names)

    def eval_report(self, metrics, meta, context: dict) -> dict:
        return {"class_names": meta.class_names, "confusion": metrics.confusion_matrix().tolist()}

    @staticmethod
    def infer_options(meta) -> set[str]:
        return {"top_k", "texts"} if meta.kind == "text" else {"top_k"}

    def infer(self, model, config, meta, inputs, options, device, precision):
        """One row per input: predicted class, its probability and the top-k classes."""
        probs, names, unseen = class_probabilities(self, model, config, meta, inputs, options, device, precision)
        k = min(options.get("top_k") or 3, probs.shape[1])
        top_p, top_i = probs.topk(k, dim=1)
        rows = []
        for name, p, i, missing in zip(names, top_p.tolist(), top_i.tolist(), unseen):
            rows.append({"input": name, "class": meta.class_names[i[0]], "probability": round(p[0], 6),
                         "top_k": [{"class": meta.class_names[c], "probability": round(q, 6)} for c, q in zip(i, p)],
                         **({"unseen": ";".join(missing)} if meta.categories else {})})
        return "classes", rows


def smoothed(config) -> bool:
    """Whether the loss is cross-entropy with label smoothing: eval then adds the plain `nll` (the
    smoothed loss has a floor well above 0, so it cannot be compared with other tools' losses)."""
    loss = getattr(config, "loss", None) or {}
    return loss.get("name") == "cross_entropy" and float(loss.get("label_smoothing") or 0) > 0


MANY_CLASSES = 20  # numeric labels with more distinct values than this may be a continuous target
ROWS_PER_CLASS = 5


def looks_continuous(class_names: list[str], rows: int) -> bool:
    """Numeric labels with more than MANY_CLASSES distinct values, some of them fractional or with
    fewer than ROWS_PER_CLASS rows per value on average: a regression target read as classes."""
    if len(class_names) <= MANY_CLASSES:
        return False
    try:
        values = [float(name) for name in class_names]
    except ValueError:
        return False  # names, not numbers
    fractional = any(v != int(v) for v in values if v == v and abs(v) != float("inf"))
    return fractional or rows < ROWS_PER_CLASS * len(values)


def class_probabilities(task, model, config, meta, inputs, options, device, precision):
    """(per-class probabilities [N, K], input names, per input the categorical columns whose value
    training never saw) for image, CSV, image-row or text inputs."""
    from dlcli.compute import batched
    from dlcli.data.inputs import collect_inputs, image_inputs, row_inputs, tabular_inputs, text_inputs

    files = collect_inputs(inputs, text_files=meta.kind == "text")
    if meta.kind == "text":
        x, lengths, names = text_inputs(files, options.get("texts") or [], meta)

        def classify_texts(rows):  # each slice padded only to its longest text
            longest = int(lengths[rows].max())
            return task.predict(model(x[rows, :longest].to(device), lengths[rows].to(device)))

        return batched(model, classify_texts, len(x), device, precision), names, [[]] * len(names)
    if not files:
        raise ConfigError("no inputs given: name image files or folders, CSV files, or use --text")
    unseen = [[]] * len(files)
    if meta.kind == "tabular":
        x, names, unseen = tabular_inputs(files, meta)
    elif meta.kind == "sequence":
        x, names = row_inputs(files, meta), [str(f) for f in files]
    else:
        x, names = image_inputs(files, config, meta), [str(f) for f in files]
    probabilities = batched(model, lambda rows: task.predict(model(x[rows].to(device))), len(x), device, precision)
    return probabilities, names, unseen
