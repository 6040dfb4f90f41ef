"""The Task interface: what one kind of work means, in one class per module.

Class attributes and class methods are the config-time half (`dlcli validate`): they import no
torch. Instances are the run-time half, built by `create` from the config and the data
description; their methods import torch inside their bodies. This is the one base class: a task
overrides what differs and inherits nothing else.
"""

from typing import Any, ClassVar, overload


class Task:
    name: ClassVar[str]
    summary: ClassVar[str] = ""
    default_loss: ClassVar[str]
    losses: ClassVar[tuple[str, ...]] = ()  # the losses that fit it (default_loss among them)
    # The kinds of data it trains on: a dataset fits when it is registered with one of these tags.
    reads: ClassVar[tuple[str, ...]] = ()
    models: ClassVar[tuple[str, ...]] = ()  # models of its own (a GAN's); () takes any model no task owns
    # The dataset option that names its outputs (regression's `targets`): a config giving it is this task's.
    dataset_outputs: ClassVar[str | None] = None
    # The metrics accumulator: its TRAIN / VAL names and MIN set are the metrics this task produces.
    metrics_class: ClassVar[Any]
    # What a recurrent model's head emits for this task: one output per sequence, or one per step.
    recurrent_head: ClassVar[str] = "pooled"
    # The task runs its own training step (a GAN's two networks) instead of the engine's.
    own_step: ClassVar[bool] = False
    # Networks with an optimizer (and scheduler) each; () means one for the whole model.
    networks: ClassVar[tuple[str, ...]] = ()
    eval_unit: ClassVar[str] = "samples"
    eval_options: ClassVar[frozenset[str]] = frozenset()  # `dlcli eval` options beyond the shared ones
    # Per-sample weights from data.class_weights (the dataset's weight column always applies).
    class_weights: ClassVar[bool] = False
    uses_threshold: ClassVar[bool] = False  # train.threshold decides its predictions
    # How `--tta` averages an image model's outputs: "softmax" (classes), "sigmoid" (labels); None: no TTA.
    tta_average: ClassVar[str | None] = None
    mixes: ClassVar[bool] = False  # data.mixup applies (it trains on mixed batches through train_loss)

    # ---- config time (no torch) ----
    @classmethod
    def claims(cls, data: dict) -> bool:
        """Whether a raw config that names no task is this task's (beyond the dataset's default): its
        model is one of the task's own, or its dataset is one it reads and gives its `dataset_outputs`."""
        given, model = data.get("data"), data.get("model")
        section = given if isinstance(given, dict) else {}
        dataset = section.get("dataset")
        if isinstance(model, dict) and model.get("name") in cls.models:
            return True
        return (cls.dataset_outputs is not None and isinstance(dataset, dict)
                and cls.reads_dataset(dataset.get("name")) and dataset.get(cls.dataset_outputs) not in (None, []))

    @classmethod
    def reads_dataset(cls, name) -> bool:
        """Whether the dataset registered as `name` holds a kind of data this task trains on."""
        from dlcli.data.datasets import DATASETS

        return any(DATASETS.has_tag(name, kind) for kind in cls.reads)

    @classmethod
    def datasets(cls) -> list[str]:
        from dlcli.data.datasets import DATASETS

        return [name for name in DATASETS.names() if cls.reads_dataset(name)]

    @classmethod
    def default_optimizer(cls) -> dict:
        return {"name": "adam"}

    @classmethod
    def metric_names(cls, config, has_val: bool, num_classes: int | None = None) -> list[str]:
        """Every metric a run produces (val/* only with a validation split), then `lr`."""
        names = [f"train/{m}" for m in cls.metrics_class.names("train", config, num_classes)]
        if has_val:
            names += [f"val/{m}" for m in cls.metrics_class.names("val", config, num_classes)]
        return names + ["lr"]

    @classmethod
    def default_monitor(cls, config) -> str:
        """train.monitor when the config names none (`last`: best.pt is the last epoch)."""
        return "val/loss"

    @classmethod
    def metric_mode(cls, metric: str, mode: str = "auto") -> str:
        """'min' for losses and errors, 'max' for scores, unless given."""
        if mode != "auto":
            return mode
        base = metric.split("/")[-1].split(":")[0]  # val/mae:price -> mae
        return "min" if base in cls.metrics_class.MIN else "max"

    @overload
    @classmethod
    def resolve_mode(cls, spec: dict) -> dict: ...

    @overload
    @classmethod
    def resolve_mode(cls, spec: None) -> None: ...

    @classmethod
    def resolve_mode(cls, spec: dict | None) -> dict | None:
        """A component spec with `mode: auto` for its `monitor` replaced by this task's mode."""
        if not isinstance(spec, dict) or spec.get("mode") != "auto" or not isinstance(spec.get("monitor"), str):
            return spec
        return {**spec, "mode": cls.metric_mode(spec["monitor"])}

    @classmethod
    def progress_metrics(cls) -> tuple[str, ...]:
        """Metric names shown on progress lines; the rest go to metrics.jsonl and the summary."""
        return cls.metrics_class.SHOWN

    @classmethod
    def dataset_mismatch(cls, dataset: str) -> str | None:
        """This task's own words for a dataset it cannot use (None: the generic message)."""
        return None

    @classmethod
    def problems(cls, config) -> list[str]:
        """Checks of this task's own (beyond the shared task/dataset/model/loss fit)."""
        return []

    # ---- run time ----
    @classmethod
    def create(cls, config, meta, loss_fn) -> "Task":
        raise NotImplementedError

    def reset(self) -> None:
        """Start of an epoch or an evaluation (a task carrying state across batches drops it)."""

    def loss(self, model, batch):
        """(loss, outputs) for one batch."""
        raise NotImplementedError

    def train_loss(self, model, batch):
        """(loss, outputs) for one training batch: `loss` unless the task trains on altered batches
        (classification's mixup); evaluation always uses `loss`."""
        return self.loss(model, batch)

    @staticmethod
    def counted(batch) -> int:
        """How many of `eval_unit` a batch holds: progress lines say that per second."""
        return batch.y.shape[0]

    @staticmethod
    def predict(outputs):
        """What `infer` reports from the model's outputs (classes: probabilities)."""
        return outputs.float()

    def train_step(self, trainer, batch, metrics) -> bool:
        """The task's own step, for tasks with `own_step`."""
        raise NotImplementedError

    def metrics(self, device, full: bool = True):
        """A fresh accumulator (full=False: the cheaper training set of metrics)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """What a mid-epoch checkpoint keeps of the task (counters, carried state)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def epoch_metrics(self, trainer, epoch: int) -> dict:
        """Metrics of its own after an epoch's validation (a GAN's sample quality); {} for most."""
        return {}

    def epoch_artifacts(self, model, run_path, epoch: int, train_batches=None) -> dict:
        """Files written at each epoch end (a GAN's sample grid), for the summary."""
        return {}

    @staticmethod
    def num_outputs(meta) -> int:
        """The width of the model's output."""
        return len(meta.class_names)

    @staticmethod
    def describe_outputs(meta) -> str:
        return f"{len(meta.class_names)} classes"

    @staticmethod
    def check_data(train, meta) -> None:
        """Refuse training data this task cannot learn from (DataError)."""

    @staticmethod
    def fit_outputs(train, meta) -> None:
        """Learn from the training split's outputs what the loss and the reports need, into
        `meta.outputs` (kept in the checkpoint); a DataError when there is nothing to learn."""

    @staticmethod
    def encode_outputs(source, meta) -> None:
        """A split's outputs (`source.y`, None: no split) turned in place into what the loss takes."""

    @staticmethod
    def prepare_eval(source, meta):
        """A test split made to match training (e.g. its class order)."""
        return source

    def eval_report(self, metrics, meta, context: dict) -> dict:
        """Fields `dlcli eval` adds to its result beyond the metrics; `context` holds the model,
        config, checkpoint path, split, device and the eval options."""
        return {}

    def build_optimization(self, config, model, batches: int, device, precision: str):
        """(optimizer, LR schedule or None, GradScaler) for one optimizer over the whole model."""
        import torch

        from dlcli.components.optim.optimizers import OPTIMIZERS
        from dlcli.components.optim.schedulers import SCHEDULERS

        optimizer = OPTIMIZERS.build(config.optimizer, model)
        steps_per_epoch = -(-batches // config.train.accumulate)
        schedule = (SCHEDULERS.build(self.resolve_mode(config.scheduler), optimizer, steps_per_epoch,
                                     config.train.epochs) if config.scheduler else None)
        return optimizer, schedule, torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    @staticmethod
    def infer_options(meta) -> set[str]:
        """The `dlcli infer` options this task's checkpoints take (others are usage errors)."""
        return set()

    def infer(self, model, config, meta, inputs: list[str], options: dict, device, precision):
        """(kind, result) for `dlcli infer`; kind picks how the CLI shows the result."""
        raise NotImplementedError

    @staticmethod
    def export_input(meta, model, generator):
        """A batch of 4 inputs of the kind the exported model reads; a tuple when it reads several (a
        transformer over texts: padded ids and their lengths)."""
        import torch

        from dlcli.errors import ConfigError

        if meta.kind == "text" and getattr(model, "exports_lengths", False):
            steps = meta.input_shape[0]
            ids = torch.randint(2, len(meta.vocab), (4, steps), generator=generator)
            return ids, torch.randint(1, steps + 1, (4,), generator=generator)
        if meta.kind == "text":
            raise ConfigError("export: recurrent text classifiers read packed variable-length input; "
                              "not supported yet (a transformer text classifier exports)")
        if meta.kind == "tokens":
            return torch.randint(2, len(meta.vocab), (4, *meta.input_shape), generator=generator)
        return torch.randn(4, *meta.input_shape, generator=generator)
