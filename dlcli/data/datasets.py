"""Dataset registry: `data.dataset: {name: digits}`. Builders get the split ("train" or "test")."""

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from dlcli.data.registry import DATASETS
from dlcli.data.source import Source
from dlcli.data.splits import split_file
from dlcli.errors import DataError, first_line
from dlcli.types import PositiveInt, TestFraction

# Where torchvision expects the files, for the "place them by hand" hint.
_LAYOUT = {
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "fashion_mnist": "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "cifar10": "cifar-10-batches-py/ (the extracted cifar-10-python.tar.gz)",
    "cifar100": "cifar-100-python/ (the extracted cifar-100-python.tar.gz)",
}


@DATASETS.register("digits", tags=("image",))
def digits(split, *, test_fraction: TestFraction = 0.2):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, offline)."""
    import torch

    from dlcli.data.shuffle_split import count_of_fraction, train_test_indices

    images, target = _bundled_digits()
    # A fixed split so "test" means the same images in every run and in `dlcli eval`.
    train_idx, test_idx = train_test_indices(len(target), count_of_fraction(len(target), test_fraction), 0, target)
    idx = train_idx if split == "train" else test_idx
    x = torch.tensor(images[idx] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(target[idx], dtype=torch.long)
    return Source(y=y, x=x, class_names=[str(c) for c in range(10)], kind="image")


def _bundled_digits():
    """(pixels [1797, 64], labels) from the CSV scikit-learn ships, read with numpy: what
    sklearn.datasets.load_digits reads, without importing sklearn (about 2 s per process)."""
    import importlib.util
    from pathlib import Path

    import numpy as np

    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec else []
    data = Path(folders[0]) / "datasets" / "data" / "digits.csv.gz" if folders else None
    if data is None or not data.is_file():
        from sklearn.datasets import load_digits  # a layout this does not know: the library's own way

        bunch = load_digits()
        return bunch.data, bunch.target
    table = np.loadtxt(data, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)


def _torchvision(name: str, cls_name: str, split: str, root: str, download: bool) -> Source:
    import torch
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    try:
        ds = cls(root=root, train=split == "train", download=download)
    except (RuntimeError, OSError, AssertionError, ValueError) as err:
        # torchvision: RuntimeError for missing files, AssertionError/ValueError for damaged ones
        why = "download failed (no network?)" if download else "files missing or damaged"
        where = os.path.join(os.path.abspath(root), _LAYOUT[name])
        switch = "then set data.dataset.download: false" if download else "or set data.dataset.download: true"
        raise DataError(
            f"dataset {name!r}: {why} under {os.path.abspath(root)}: {first_line(err, type(err).__name__)}",
            hint=f"place the files as {where} ({switch}); data.dataset.root=PATH changes the folder",
        ) from None
    x = torch.as_tensor(ds.data)
    x = x.unsqueeze(1) if x.dim() == 3 and name.endswith("mnist") else x.permute(0, 3, 1, 2)
    y = torch.as_tensor(ds.targets, dtype=torch.long)
    return Source(y=y, x=x.contiguous(), class_names=list(ds.classes), kind="image")


# name -> (torchvision class, summary): the datasets torchvision downloads, with their own test splits
TORCHVISION = {
    "mnist": ("MNIST", "MNIST handwritten digits, 28x28 grayscale (torchvision)."),
    "fashion_mnist": ("FashionMNIST", "Fashion-MNIST clothing images, 28x28 grayscale (torchvision)."),
    "cifar10": ("CIFAR10", "CIFAR-10, 32x32 colour images in 10 classes (torchvision)."),
    "cifar100": ("CIFAR100", "CIFAR-100, 32x32 colour images in 100 classes (torchvision)."),
}


def _register_torchvision(name: str, cls_name: str, summary: str) -> None:
    def build(split, *, root: str = "data/", download: bool = True):
        return _torchvision(name, cls_name, split, root, download)

    build.__doc__, build.__name__ = summary, name
    DATASETS.register(name, tags=("image",))(build)


for _name, (_cls, _summary) in TORCHVISION.items():
    _register_torchvision(_name, _cls, _summary)


@DATASETS.register("image_folder", tags=("image", "label_sets"))
def image_folder(split, *, root: str, test_root: str | None = None, val_root: str | None = None,
                 channels: Literal[1, 3] = 3, labels: str | None = None):
    """ImageNet-style class folders (root/<class>/<image>), read from disk per batch; with `labels`
    (a CSV file in the folder: file, then one 0/1 column per label) multilabel images instead."""
    import torch

    from dlcli.data.files import ImageFiles, class_folders

    path = split_file("image_folder", split, root, test_root, "test_root", val_root)
    if not Path(path).is_dir():
        raise DataError(f"dataset 'image_folder': folder not found: {os.path.abspath(path)}",
                        hint="expected one sub-folder per class holding image files")
    if labels is not None:
        from dlcli.data.files import labelled_images

        return labelled_images(Path(path), labels, channels)
    paths, targets, classes = class_folders(path)
    y = torch.tensor(targets, dtype=torch.long)
    return Source(y=y, dataset=ImageFiles(paths, targets, channels), class_names=classes, kind="image")


@DATASETS.register("csv", tags=("tabular", "label_sets"))
def csv(split, *, path: str, label: str = "label", targets: list[str] | str | None = None,
        labels: Annotated[list[str], Field(min_length=1)] | None = None, features: list[str] | None = None,
        categorical: list[str] | None = None, numeric: list[str] | None = None,
        max_categories: Annotated[int, Field(ge=1, le=100_000)] = 100, weight: str | None = None,
        test_path: str | None = None, val_path: str | None = None):
    """A CSV table: feature columns (numeric or categorical) and a label column, numeric `targets`
    (regression) or 0/1 `labels` columns (multilabel); optional per-sample weight column."""
    from dlcli.data.tabular import Columns, read_csv

    file = split_file("csv", split, path, test_path, val=val_path)
    targets = [targets] if isinstance(targets, str) else targets
    source = read_csv(file, Columns(label, targets, labels, features, weight, categorical, numeric))
    source.options["max_categories"] = max_categories
    return source


@DATASETS.register("synthetic", tags=("image",))
def synthetic(split, *, samples: Annotated[int, Field(gt=0, le=10_000_000)] = 4096,
              shape: list[PositiveInt] = [1, 28, 28], classes: Annotated[int, Field(ge=2)] = 10, seed: int = 0):
    """Random uint8 images with random labels: for benchmarks and smoke tests, not for learning."""
    import torch

    gen = torch.Generator().manual_seed(seed + (0 if split == "train" else 1))
    x = torch.randint(0, 256, (samples, *shape), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, classes, (samples,), generator=gen)
    return Source(y=y, x=x, class_names=[str(c) for c in range(classes)], kind="image")

@DATASETS.register("digits_rows", tags=("sequence",))
def digits_rows(split, *, test_fraction: TestFraction = 0.2):
    """The offline 8x8 digits, read row by row: 8 time steps of 8 pixels (sequence classification)."""
    source = digits(split, test_fraction=test_fraction)
    source.x, source.kind = source.x.squeeze(1), "sequence"
    return source


@DATASETS.register("mnist_rows", tags=("sequence",))
def mnist_rows(split, *, root: str = "data/", download: bool = True):
    """MNIST read row by row: 28 time steps of 28 pixels (torchvision files)."""
    source = _torchvision("mnist", "MNIST", split, root, download)
    source.x, source.kind = source.x.squeeze(1), "sequence"
    return source


from dlcli.data import sequences  # noqa: E402,F401  (registers the sequence datasets)
