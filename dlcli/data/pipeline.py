"""From the `data` config section to batches: build, split, standardize, transform.

`DataMeta` is what a checkpoint keeps so eval/infer can preprocess new inputs identically.
"""

from dataclasses import asdict, dataclass, field

from dlcli.data.datasets import DATASETS
from dlcli.data.image_cache import cached_source
from dlcli.data.loading import make_batches
from dlcli.data.source import Source
from dlcli.data.splits import fold_indices, split_indices, subset
from dlcli.data.transforms import compose
from dlcli.data.windows import describe_sequences, prepare, split_positional, stream_order
from dlcli.errors import ConfigError, DataError, first_line


@dataclass
class DataMeta:
    class_names: list[str]
    input_shape: list[int]
    kind: str
    feature_names: list[str] = field(default_factory=list)
    feature_mean: list[float] | None = None
    feature_std: list[float] | None = None
    vocab: list[str] | None = None  # token datasets: id -> token (0 <pad>, 1 <unk>)
    sequence: dict = field(default_factory=dict)  # sequence datasets: tokenising / windowing settings
    categories: dict = field(default_factory=dict)  # tabular: categorical column -> training values (one-hot)
    # What the task learned from the training split's outputs (regression: the target columns, their
    # mean and spread): the task writes it (Task.fit_outputs) and alone reads it.
    outputs: dict = field(default_factory=dict)
    # images read through the image cache: how they were stored (image_store.store_spec), so the test
    # split and `dlcli infer` see images prepared as training's were; None when read from the files
    stored: dict | None = None
    skipped_images: list[str] = field(default_factory=list)  # unreadable, left out (data.skip_bad_images)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> "DataMeta":
        """A checkpoint's meta; regression statistics saved by dlcli 0.1 before `outputs` are moved into it."""
        saved = dict(saved)
        legacy = {key: saved.pop(key) for key in ("targets", "target_mean", "target_std") if key in saved}
        if legacy.get("target_mean") is not None:
            saved["outputs"] = {"targets": legacy["targets"], "mean": legacy["target_mean"],
                                "std": legacy["target_std"]}
        return cls(**saved)


def separate_val(dataset: dict) -> bool:
    """Whether validation comes from a file or folder of its own (`val_path`, `val_root`)."""
    return dataset.get("val_path") is not None or dataset.get("val_root") is not None


def train_val_sources(data_cfg, seed: int, stored: dict | None = None) -> tuple[Source, Source | None]:
    """The training and validation splits; file-backed images through the image cache, stored as
    `stored` says (None: as the training pool's first image and the transforms decide)."""
    pool = cached_source(DATASETS.build(data_cfg.dataset, "train"), data_cfg, stored)
    if len(pool) == 0:
        raise DataError(f"dataset {data_cfg.dataset['name']!r} is empty")
    if separate_val(data_cfg.dataset):  # all of the training file trains; val_split is not used
        train = split_positional(pool, 0.0)[0] if pool.stream is not None else pool
        columns = {"categorical": list(pool.table or {}), "numeric": list(pool.feature_names)}
        val = split_source(data_cfg, "val", columns if pool.kind == "tabular" else None, pool.stored)
        return train, val
    if pool.stream is not None:
        return split_positional(pool, data_cfg.val_split)
    by_class = pool.y.dim() == 1 and not pool.y.is_floating_point()  # no strata for values or label sets
    if data_cfg.folds is not None:  # k-fold cross-validation: fold `fold` is the validation split
        train_idx, val_idx = fold_indices(pool.y, data_cfg.folds, data_cfg.fold, seed, data_cfg.stratify and by_class)
    else:
        train_idx, val_idx = split_indices(pool.y, data_cfg.val_split, seed, data_cfg.stratify and by_class)
    return subset(pool, train_idx), (subset(pool, val_idx) if val_idx else None)


def standardize(source: Source, meta: DataMeta) -> None:
    """Tabular features in place, with the training split's statistics: z-scored and one-hot encoded
    (tabular.encode)."""
    from dlcli.data.tabular import encode

    if source is not None and source.kind == "tabular":
        encode(source, meta)


def describe(train: Source, data_cfg) -> DataMeta:
    """Class names, model input shape and (tabular) standardization statistics."""
    meta = DataMeta(train.class_names, [], train.kind, train.feature_names, stored=train.stored,
                    skipped_images=list(train.skipped))
    if train.kind in ("tokens", "text", "series", "sequence"):
        describe_sequences(train, meta)
        return meta
    if train.kind == "tabular":
        describe_table(train, meta, data_cfg.standardize)
        return meta
    meta.input_shape = _image_shape(train, data_cfg.eval_transforms, "eval_transforms")
    trained_on = _image_shape(train, data_cfg.train_transforms, "train_transforms")
    if trained_on != meta.input_shape:
        raise DataError(f"data.train_transforms give {'x'.join(map(str, trained_on))} images but "
                        f"data.eval_transforms give {'x'.join(map(str, meta.input_shape))}; the model needs one size")
    return meta


def describe_table(train: Source, meta: DataMeta, standardize_features: bool) -> None:
    """Feature statistics and categorical vocabularies of the training split."""
    from dlcli.data.tabular import vocabulary

    if standardize_features and train.x.shape[1]:
        meta.feature_mean = train.x.mean(0).tolist()
        meta.feature_std = train.x.std(0).clamp_min(1e-8).nan_to_num(1.0).tolist()
    meta.categories = {column: vocabulary(values, train.options.get("max_categories", 100))
                       for column, values in (train.table or {}).items()}
    meta.input_shape = [train.x.shape[1] + sum(len(v) + 1 for v in meta.categories.values())]


def _image_shape(train: Source, transforms: list, section: str) -> list[int]:
    """The shape one training image has after `transforms`, found before anything is written;
    random transforms draw from a forked RNG, so training's random streams are untouched."""
    import torch

    transform = compose(transforms)
    with torch.random.fork_rng(devices=[]):
        try:
            if train.in_memory:
                sample = train.x[:1].float() / (1 if train.x.dtype.is_floating_point else 255)
                return list(transform(sample).shape[1:])
            return list(transform(train.dataset[0][0]).shape)
        except (RuntimeError, ValueError, TypeError) as err:
            raise DataError(f"data.{section}: {first_line(err)}") from None


def sample_weights(source: Source, data_cfg, num_classes: int):
    """Per-sample loss weights: the dataset's weight column times class weights (or None)."""
    import torch

    weights = source.weights
    cw = data_cfg.class_weights
    if cw is None:
        return weights
    if cw == "balanced":  # n / (k * count_c), as in scikit-learn
        counts = torch.bincount(source.y, minlength=num_classes).float()
        table = len(source.y) / (num_classes * counts.clamp_min(1))
    else:
        if len(cw) != num_classes:
            raise ConfigError(f"data.class_weights: {len(cw)} weights for {num_classes} classes")
        table = torch.tensor(cw, dtype=torch.float32)
    per_sample = table[source.y]
    return per_sample if weights is None else per_sample * weights


def train_batches(config, device, generator, task):
    """(train batches, val batches or None, DataMeta) for `dlcli train`; `task` (its class) checks
    the training data, learns what it needs of its outputs and says whether class weights apply."""
    data_cfg = config.data
    train, val = train_val_sources(data_cfg, config.seed)
    meta = describe(train, data_cfg)
    train, val = prepare(train, meta), prepare(val, meta, "validation")
    if val is not None and separate_val(data_cfg.dataset):
        val = task.prepare_eval(val, meta)  # its own file: matched to training's (e.g. class order)
        meta.skipped_images += [f"val_root: {name}" for name in val.skipped]
    standardize(train, meta)
    standardize(val, meta)
    task.check_data(train, meta)
    task.fit_outputs(train, meta)
    for source in (train, val):
        task.encode_outputs(source, meta)
    transform = compose(data_cfg.train_transforms) if train.kind == "image" else None
    weights = sample_weights(train, data_cfg, len(meta.class_names)) if task.class_weights else train.weights
    shuffle = data_cfg.shuffle
    if config.train.tbptt:  # consecutive batches continue each other's windows: a fixed stream order
        train, shuffle = subset(train, stream_order(len(train), data_cfg.batch_size).tolist()), False
    train_b = make_batches(train, data_cfg.batch_size, device, transform, shuffle, generator, weights,
                           data_cfg.num_workers, data_cfg.loader, data_cfg.memory_budget_gb)
    val_b = eval_batches(val, config, device) if val is not None else None
    return train_b, val_b, meta


def eval_batches(source: Source, config, device):
    data_cfg = config.data
    transform = compose(data_cfg.eval_transforms) if source.kind == "image" else None
    size = data_cfg.eval_batch_size or max(data_cfg.batch_size, 512)
    if config.train.tbptt:  # the hidden state carries across batches: parallel streams through the text
        return stream_batches(source, min(data_cfg.eval_batch_size or data_cfg.batch_size, len(source)), device)
    return make_batches(source, size, device, transform, False, None, None, data_cfg.num_workers,
                        data_cfg.loader, data_cfg.memory_budget_gb)


class StreamBatches:
    """Evaluation under truncated BPTT: `streams` parallel streams through the windows, then the
    windows left over (which continue the last stream) as one row, so every token is scored."""

    def __init__(self, streams, tail):
        self.streams, self.tail = streams, tail

    def __len__(self) -> int:
        return len(self.streams) + (self.tail is not None)

    def __iter__(self):
        yield from self.streams
        if self.tail is not None:
            yield self.tail


def stream_batches(source: Source, size: int, device) -> StreamBatches:
    from dlcli.data.loading import Batch
    from dlcli.ranks import world

    order = stream_order(len(source), size)
    streams = make_batches(subset(source, order.tolist()), size, device, None, False)
    left = source.x[len(order):]
    if len(left) == 0 or world()[1] > 1:  # under DDP each rank scores its share of the streams only
        return StreamBatches(streams, None)
    y = source.y[len(order):]
    return StreamBatches(streams, Batch(left.reshape(1, -1).to(device), y.reshape(1, -1).to(device)))


def split_source(data_cfg, split: str, columns: dict | None, stored: dict | None) -> Source:
    """The test split, or a separate validation file, as one source; a table's `columns` (categorical,
    numeric) are read as the training file's were, images cached as training's were `stored`."""
    source = DATASETS.build({**data_cfg.dataset, **(columns or {})}, split)
    source = cached_source(source, data_cfg, stored) if stored is not None else source
    return split_positional(source, 0.0)[0] if source.stream is not None else source


def split_for_eval(config, meta: DataMeta, split: str, device, task):
    """Batches of the test or val split, preprocessed as the checkpoint's training was (`task`, its
    class, matches the split to training, e.g. the class order)."""
    columns = {"categorical": list(meta.categories), "numeric": list(meta.feature_names)}
    # a run that read its images from the files (cache off, or from before the image cache) is
    # evaluated on the files too
    data_cfg = config.data if meta.stored else config.data.model_copy(update={"cache": "off"})
    if split == "val" and not separate_val(config.data.dataset):
        if config.data.val_split == 0:
            raise DataError("this run had no validation split (data.val_split: 0); use --split test")
        _, source = train_val_sources(data_cfg, config.seed, meta.stored)
    else:
        source = split_source(config.data, split, columns if meta.kind == "tabular" else None, meta.stored)
    source = task.prepare_eval(prepare(source, meta, f"{split} split's"), meta)
    if source.kind == "image" and len(source):
        shape = _image_shape(source, config.data.eval_transforms, "eval_transforms")
        if shape != meta.input_shape:  # the model would fail on its first batch with a shape error
            raise DataError(f"the {split} split's images come out of data.eval_transforms as "
                            f"{'x'.join(map(str, shape))}; the model takes {'x'.join(map(str, meta.input_shape))}",
                            hint="add a resize (or center_crop) to data.eval_transforms")
    standardize(source, meta)
    task.encode_outputs(source, meta)
    batches = eval_batches(source, config, device)
    # categorical values training never saw (read as the unknown slot), per column: eval reports them
    batches.unknown_categories = {column: n for column, n in (source.unknown or {}).items() if n}
    batches.skipped_images = source.skipped  # unreadable images the cache left out (data.skip_bad_images)
    return batches
