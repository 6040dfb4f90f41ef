"""Train/val splits of a Source: stratified index split, subsets, and label re-indexing."""

from dlcli.data.mapped import MappedImages
from dlcli.data.source import Source
from dlcli.errors import DataError, listed


def split_indices(labels, val_split: float, seed: int, stratify: bool) -> tuple[list[int], list[int]]:
    """Train/val index lists; stratified by label where every class has at least 2 samples."""
    from collections import Counter

    from dlcli.data.shuffle_split import train_test_indices

    index = list(range(len(labels)))
    if val_split == 0:
        return index, []
    if len(index) < 2:
        raise DataError(f"dataset has {len(index)} sample(s): too few to split off a validation set")
    n_val = min(len(index) - 1, max(1, round(len(index) * val_split)))  # keep >= 1 training sample
    counts = Counter(labels.tolist()) if stratify else Counter()
    k = len(counts)
    can_stratify = stratify and min(counts.values()) >= 2 and n_val >= k and len(index) - n_val >= k
    train, val = train_test_indices(len(index), n_val, seed, labels.tolist() if can_stratify else None)
    return sorted(train), sorted(val)


def fold_indices(labels, folds: int, fold: int, seed: int, stratify: bool) -> tuple[list[int], list[int]]:
    """Train/val index lists for fold `fold` of `folds` (k-fold cross-validation): the samples are
    shuffled with `seed` and dealt to the folds in turn, class by class when stratified, so every
    fold holds each class in proportion and the folds cover the data exactly once."""
    import numpy as np

    n = len(labels)
    if n < folds:
        raise DataError(f"dataset has {n} sample(s): too few for {folds} folds (data.folds)")
    order = np.random.default_rng(seed).permutation(n)
    if stratify:  # the shuffled order, grouped by class (stable), then dealt round-robin
        values = np.asarray(labels.tolist())[order]
        order = order[np.argsort(values, kind="stable")]
    in_fold = np.arange(n) % folds == fold
    return sorted(order[~in_fold].tolist()), sorted(order[in_fold].tolist())


def subset(source: Source, indices: list[int]) -> Source:
    import torch

    idx = torch.as_tensor(indices, dtype=torch.long)
    sub = Source(y=source.y[idx], class_names=source.class_names, kind=source.kind,
                 feature_names=source.feature_names, options=source.options, stored=source.stored,
                 skipped=source.skipped)
    sub.weights = source.weights[idx] if source.weights is not None else None
    sub.lengths = source.lengths[idx] if source.lengths is not None else None
    if source.table is not None:
        sub.table = {column: [values[i] for i in indices] for column, values in source.table.items()}
    if source.texts is not None:
        sub.texts = [source.texts[i] for i in indices]
    elif isinstance(source.x, MappedImages):  # a view: the rows stay on disk until batches read them
        sub.x = source.x.subset(indices)
    elif source.in_memory:
        sub.x = source.x[idx]
    else:
        sub.dataset = torch.utils.data.Subset(source.dataset, indices)
    return sub


def remap_labels(source: Source, class_names: list[str]) -> Source:
    """Re-index labels so a test split uses the training split's class order."""
    import torch

    if source.class_names == class_names:
        return source
    lookup = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(source.class_names) - set(lookup))
    if unknown:
        raise DataError(f"labels {listed(unknown)} do not occur in the training data (classes: {listed(class_names)})")
    mapping = torch.tensor([lookup[name] for name in source.class_names])
    source.y = mapping[source.y]
    if isinstance(getattr(source.dataset, "targets", None), list):  # files: the loader reads these labels
        source.dataset.targets = mapping[torch.tensor(source.dataset.targets, dtype=torch.long)].tolist()
    source.class_names = class_names
    return source


def split_file(dataset: str, split: str, train: str, test: str | None, key: str = "test_path",
               val: str | None = None) -> str:
    """The file (or folder) of a split of a dataset read from the user's files: "train", "val" (a
    separate validation file, `val_path` / `val_root`) or "test"."""
    if split == "train":
        return train
    if split == "val":
        if val is None:
            raise DataError(f"dataset {dataset!r}: no validation file; set data.dataset.{key.replace('test', 'val')}")
        return val
    if test is None:
        raise DataError(f"dataset {dataset!r}: no test split; set data.dataset.{key} or use --split val")
    return test
