"""File-backed image datasets: decode one image per item, with errors naming the file."""

import os
from pathlib import Path
from typing import Literal

from dlcli.data.registry import DATASETS
from dlcli.data.source import Source
from dlcli.data.splits import split_file
from dlcli.errors import DataError, first_line


def load_image(path: str, channels: int | None = None):
    """Read an image file as a float CHW tensor in [0, 1]; convert to `channels` (1 or 3) if given."""
    import torch
    from PIL import Image
    from torchvision.transforms.v2.functional import pil_to_tensor

    image: Image.Image  # opened as an ImageFile, then converted
    modes: dict[int | None, str] = {1: "L", 3: "RGB"}
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I;16"):  # 16-bit grayscale: PIL's 8-bit convert would clip it
                return _sixteen_bit(image, channels)
            image = image.convert(modes.get(channels, "RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {path}: {first_line(err, 'decode failed')}") from None
    return pil_to_tensor(image).to(torch.float32) / 255.0


def _sixteen_bit(image, channels: int | None):
    """A 16-bit grayscale image scaled by its full range (0..65535) to [0, 1], as 1 or 3 channels."""
    import numpy as np
    import torch

    gray = torch.from_numpy(np.asarray(image, dtype=np.float32) / 65535.0).clamp(0, 1)[None]
    return gray if channels == 1 else gray.expand(3, -1, -1).clone()


class ImageFiles:
    """A torch-style Dataset over image paths, yielding (float CHW image, label)."""

    def __init__(self, paths: list[str], targets: list[int], channels: int = 3, root: str = ""):
        self.paths, self.targets, self.channels = paths, targets, channels
        self.root = root  # the folder the paths lie under (the image cache keys and lists them by it)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return load_image(self.paths[index], self.channels), self.targets[index]


# torchvision's ImageFolder extensions, so a folder holds the same samples it did when read by ImageFolder
FOLDER_IMAGES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def class_folders(root: str) -> tuple[list[str], list[int], list[str]]:
    """(image paths, class ids, class names) of root/<class>/**/<image>, ordered as torchvision's
    ImageFolder orders them; each real folder is read once (links back into a folder already read are
    skipped and reported), and a FIFO or other non-regular image file is a DataError."""
    from dlcli.data.folders import FolderWalk

    try:
        candidates = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    except OSError as err:
        raise DataError(f"dataset 'image_folder': cannot read folder {root}: {err.strerror or err}") from None
    classes, skipped = _distinct_classes(root, candidates)
    if not classes:
        raise DataError(f"dataset 'image_folder': no class folders in {root}",
                        hint="expected one sub-folder per class holding image files")
    folders = [os.path.join(root, name) for name in classes]
    walk = FolderWalk([root, *folders])  # a link inside one class to another class's folder is not followed
    walk.skipped += skipped
    paths, targets, empty = [], [], []
    for index, (name, folder) in enumerate(zip(classes, folders)):
        found = walk.files(folder, FOLDER_IMAGES)
        paths += found
        targets += [index] * len(found)
        empty += [] if found else [name]
    if empty:
        raise DataError(f"dataset 'image_folder': no image files ({', '.join(FOLDER_IMAGES)}) in the class "
                        f"folder(s) {', '.join(empty)} of {root}")
    walk.report(f"dataset 'image_folder' {root}")
    return paths, targets, classes


def _distinct_classes(root: str, names: list[str]) -> tuple[list[str], list[str]]:
    """(class names, links skipped): a class folder that is a link up the tree (to the root or above)
    or a second name for a folder another class is (the real folder wins over links) is skipped."""
    top = os.path.realpath(root)
    kept: dict[str, str] = {}  # real folder -> the name that reads it
    skipped = []
    for name in sorted(names, key=lambda n: os.path.islink(os.path.join(root, n))):  # real folders first
        real = os.path.realpath(os.path.join(root, name))
        if real in kept or real == top or top.startswith(real + os.sep):
            skipped.append(os.path.join(root, name))
        else:
            kept[real] = name
    return sorted(kept.values()), sorted(skipped)


def labelled_images(folder, labels_file: str, channels: int):
    """Multilabel images: `folder/labels_file` is a CSV whose first column names an image (relative to
    the folder) and whose other columns are 0/1 labels."""
    import torch

    from dlcli.data.folders import regular_file
    from dlcli.data.tabular import _binary, read_header, table_rows

    table = str(Path(folder) / labels_file)
    header = read_header(table)
    if len(header) < 2:
        raise DataError(f"{table}: expected a file column, then one 0/1 column per label")
    names = header[1:]
    paths, targets = [], []
    for line, row in table_rows(table, header):
        name = row[0].strip()
        if os.path.isabs(name) or os.path.normpath(name).split(os.sep)[0] == "..":
            raise DataError(f"{table}:{line}: {name!r} lies outside the folder; name images relative to {folder}")
        try:
            image = regular_file(Path(folder) / name, "image")
        except DataError as err:
            raise DataError(f"{table}:{line}: {err}") from None
        paths.append(str(image))
        targets.append([_binary(value, table, line, c) for c, value in zip(names, row[1:])])
    if not paths:
        raise DataError(f"{table}: no data rows")
    y = torch.tensor(targets)
    return Source(y=y, dataset=ImageFiles(paths, list(y), channels, str(folder)), class_names=names, kind="image")


@DATASETS.register("image_folder", tags=("image", "label_sets", "image_files"))
def image_folder(split, *, root: str, test_root: str | None = None, val_root: str | None = None,
                 channels: Literal[1, 3] = 3, labels: str | None = None):
    """ImageNet-style class folders (root/<class>/<image>), read from disk per batch; with `labels`
    (a CSV file in the folder: file, then one 0/1 column per label) multilabel images instead."""
    import torch

    path = split_file("image_folder", split, root, test_root, "test_root", val_root)
    if not Path(path).is_dir():
        raise DataError(f"dataset 'image_folder': folder not found: {os.path.abspath(path)}",
                        hint="expected one sub-folder per class holding image files")
    if labels is not None:
        return labelled_images(Path(path), labels, channels)
    paths, targets, classes = class_folders(path)
    y = torch.tensor(targets, dtype=torch.long)
    return Source(y=y, dataset=ImageFiles(paths, targets, channels, path), class_names=classes, kind="image")
