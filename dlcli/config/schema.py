"""The experiment schema. Component sections (model, loss, ...) are checked by their registries."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from dlcli.types import Fraction, NamePattern, NonNegativeFloat, PositiveFloat, PositiveInt, Probability, Seed

Component = dict[str, Any]  # {name: ..., params...}; validated against a registry in load.py
Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Mixup(Strict):
    """data.mixup: mix pairs of training images (mixup) or paste a box of one into the other (cutmix)."""

    alpha: NonNegativeFloat = 0.8  # mixup's Beta(alpha, alpha); 0: no mixup
    cutmix_alpha: NonNegativeFloat = 0.0  # cutmix's Beta; 0: no cutmix
    prob: Probability = 1.0  # the share of batches mixed
    switch_prob: Probability = 0.5  # with both alphas > 0: the share of mixed batches that use cutmix

    @model_validator(mode="after")
    def _one_kind(self):
        if self.alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError("set alpha (mixup), cutmix_alpha (cutmix) or both above 0")
        return self


def _switch(value):
    """YAML reads a bare `off` (and `no`, `false`) as false: that is data.cache: off; `Auto`, `OFF`
    are the settings too, not folders of those names (a folder is `./Auto`)."""
    if isinstance(value, bool):
        return "off" if value is False else "auto"
    if not isinstance(value, str) or not value:
        raise ValueError("expected auto, off or the path of a folder")
    return value.lower() if value.lower() in ("auto", "off") else value


class DataConfig(Strict):
    dataset: Component
    val_split: Fraction = 0.1
    stratify: bool = True
    shuffle: bool = True
    batch_size: Annotated[int, Field(gt=0, le=1_048_576)] = 64
    eval_batch_size: Annotated[int, Field(gt=0, le=1_048_576)] | None = None
    num_workers: Annotated[int, Field(ge=0, le=256)] = 0
    loader: Literal["auto", "device", "dataloader"] = "auto"
    memory_budget_gb: Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False)] = 4.0
    # image folders: decode once into a uint8 cache (data/image_cache.py); a path: the cache folder
    cache: Annotated[Literal["auto", "off"] | Annotated[str, Field(min_length=1)], BeforeValidator(_switch)] = "auto"
    cache_size: Annotated[int, Field(ge=8, le=4096)] | None = None  # stored shorter side (centre square)
    skip_bad_images: bool = False  # the cache leaves unreadable images out (and counts them) instead of exit 3
    train_transforms: list[Any] = []
    eval_transforms: list[Any] = []
    class_weights: list[PositiveFloat] | Literal["balanced"] | None = None
    standardize: bool = True  # tabular features: z-score with training-split statistics
    mixup: Mixup | None = None  # classification: train on mixed batches (see tasks/mixup.py)
    # k-fold cross-validation (`dlcli train --folds K` sets both): fold `fold` of `folds` is the
    # validation split instead of val_split
    folds: Annotated[int, Field(ge=2, le=100)] | None = None
    fold: Annotated[int, Field(ge=0, le=99)] | None = None

    @model_validator(mode="after")
    def _fold_of_folds(self):
        if (self.folds is None) != (self.fold is None):
            raise ValueError("set both folds (how many) and fold (which one, from 0) or neither")
        if self.folds is not None and self.fold is not None and self.fold >= self.folds:
            raise ValueError(f"fold {self.fold} of {self.folds}: folds are numbered 0 to {self.folds - 1}")
        return self



class GradClip(Strict):
    max_norm: PositiveFloat | None = None
    max_value: PositiveFloat | None = None
    norm_type: Annotated[float, Field(gt=0)] = 2.0  # .inf allowed: max-norm

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.max_norm is None) == (self.max_value is None):
            raise ValueError("set exactly one of max_norm (clip by norm) or max_value (clip by value)")
        return self


class CheckpointEvery(Strict):
    """Save a resumable checkpoint every N optimizer steps or every M minutes (besides each epoch end)."""

    steps: Annotated[int, Field(gt=0)] | None = None
    minutes: Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.steps is None) == (self.minutes is None):
            raise ValueError("set exactly one of steps or minutes")
        return self


class Ema(Strict):
    """train.ema: evaluate and save an exponential moving average of the weights."""

    decay: Annotated[float, Field(gt=0, lt=1)] = 0.999
    warmup_steps: Annotated[int, Field(ge=0, le=10_000_000)] = 0  # the average follows the weights until then
    every_n_steps: Annotated[int, Field(gt=0, le=100_000)] = 1


class Swa(Strict):
    """train.swa: average the weights of the last epochs, with SWALR's learning rate."""

    start_epoch: Annotated[int, Field(gt=0, le=100_000)]  # the first epoch whose weights join the average
    lr: PositiveFloat  # the learning rate SWALR anneals to
    anneal_epochs: Annotated[int, Field(ge=0, le=100_000)] = 5
    anneal_strategy: Literal["cos", "linear"] = "cos"


class TrainConfig(Strict):
    epochs: Annotated[int, Field(gt=0, le=100_000)] = 10
    device: Device = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    grad_clip: GradClip | None = None
    accumulate: Annotated[int, Field(gt=0, le=4096)] = 1
    l1: NonNegativeFloat = 0.0
    log_interval: PositiveInt = 50
    monitor: str = "val/loss"
    mode: Literal["auto", "min", "max"] = "auto"
    checkpoint_every: CheckpointEvery | None = None
    keep_last: Annotated[int, Field(gt=0, le=1000)] = 1
    on_nan: Literal["stop", "skip_batch"] = "stop"
    deterministic: bool = False
    devices: Annotated[int, Field(gt=0, le=1024)] = 1  # > 1: that many DDP processes on this machine (torchrun)
    compile: bool = False  # run the training step's model through torch.compile (opt-in)
    # CPU threads torch uses for its ops (None: torch's default, one per core); eval/infer take it too
    threads: Annotated[int, Field(gt=0, le=1024)] | None = None
    activation_checkpointing: bool = False  # recompute activations in backward: less memory, one more forward
    swa: Swa | None = None  # stochastic weight averaging; checkpoints/swa.pt at the end
    ema: Ema | None = None  # weight EMA: validation, best.pt and checkpoints' weights are the average
    tbptt: bool = False  # language models: carry the (detached) hidden state across consecutive windows
    # Tasks that threshold probabilities (Task.uses_threshold: multilabel): the probability above which a
    # label is predicted; None: the task's default (0.5).
    threshold: Annotated[float, Field(gt=0, lt=1)] | None = None
    freeze: list[NamePattern] = []  # parameters whose names match (re.match) get no gradient; their BN stays in eval
    unfreeze_at_epoch: Annotated[int, Field(gt=1, le=100_000)] | None = None  # train.freeze ends from this epoch on

    @model_validator(mode="after")
    def _unfreeze_needs_freeze(self):
        if self.unfreeze_at_epoch is not None and not self.freeze:
            raise ValueError("unfreeze_at_epoch needs train.freeze patterns")
        if self.unfreeze_at_epoch is not None and self.unfreeze_at_epoch > self.epochs:
            raise ValueError(f"unfreeze_at_epoch {self.unfreeze_at_epoch} is after the last epoch "
                             f"(train.epochs: {self.epochs})")
        return self


class MlflowConfig(Strict):
    tracking_uri: str | None = None  # else $MLFLOW_TRACKING_URI, else sqlite:///<runs root>/mlflow.db
    experiment: str | None = None  # default: the config's name
    log_checkpoints: Literal["best", "all", "none"] = "best"


class LoggingConfig(Strict):
    tensorboard: bool = False  # also write TensorBoard event files to <run>/tensorboard/
    mlflow: bool | MlflowConfig = False  # track the run in MLflow (`pip install 'dlcli[mlflow]'`)


class OutputConfig(Strict):
    dir: str = "runs"
    save_best: bool = True


class GanEval(Strict):
    """A GAN's sample quality measured while it trains (FD, inception score, class coverage)."""

    features: Annotated[str, Field(min_length=1)]  # a dlcli image classifier checkpoint
    every: Annotated[int, Field(gt=0, le=100_000)] = 1  # epochs between measurements; the last is always measured
    samples: Annotated[int, Field(ge=10, le=100_000)] = 1000  # validation images, and as many generated


class Config(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
    seed: Seed = 0
    task: str | None = None  # a registered task (checked in load.py); None: claimed by the model or the dataset
    data: DataConfig
    model: Component
    init_from: str | None = None  # a dlcli checkpoint (or run directory) whose weights a new run starts from
    loss: Component | None = None  # None: the task's default (cross_entropy; mse for forecasting)
    optimizer: Component | None = None  # None: adam (GAN: adam lr 2e-4, betas [0.5, 0.999] for both networks)
    scheduler: Component | None = None
    train: TrainConfig = TrainConfig()
    callbacks: list[Component] = []
    output: OutputConfig = OutputConfig()
    logging: LoggingConfig = LoggingConfig()
    gan_eval: GanEval | None = None  # GANs only

    @property
    def task_name(self) -> str:
        """The task, which load() always resolves (given, or claimed by the model or the dataset)."""
        if self.task is None:
            from dlcli.errors import ConfigError

            raise ConfigError("task: not resolved yet (read configs with dlcli.config.load or validate)")
        return self.task


__all__ = ["Config", "GanEval", "DataConfig", "TrainConfig", "GradClip", "OutputConfig", "NonNegativeFloat"]
