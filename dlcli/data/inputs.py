"""Inputs for `dlcli infer`: files and folders expanded, decoded and preprocessed as the checkpoint's
training data was (images, CSV feature rows, images read row by row, texts)."""

import os
from pathlib import Path

from dlcli.errors import ConfigError, DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def collect_inputs(inputs: list[str], text_files: bool = False) -> list[Path]:
    """Expand folders into their image (or text-table) files, sorted; keep files as given. Links to
    folders are followed unless they lead back to a folder already read (reported on stderr); a FIFO,
    device or other non-regular file is a DataError naming it."""
    from dlcli.data.folders import FolderWalk, regular_file

    suffixes = {".csv", ".jsonl", ".ndjson"} if text_files else IMAGE_SUFFIXES
    files = []
    walk = FolderWalk()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            if not os.access(path, os.R_OK | os.X_OK):
                raise DataError(f"cannot read folder {path}: permission denied")
            found = sorted(map(Path, walk.files(path, suffixes)))
            if not found:
                raise DataError(f"no {'text table' if text_files else 'image'} files in folder {path}")
            files += found
        else:
            files.append(regular_file(path, "input"))
    walk.report("infer inputs")
    return files


def image_inputs(files: list[Path], config, meta):
    """Decode, resize to the model's input size if needed, and apply the eval transforms. A model
    trained from the image cache sees each image as the cache stored its training images."""
    import torch
    import torch.nn.functional as F

    from dlcli.data.files import load_image
    from dlcli.data.image_store import stored_image
    from dlcli.data.transforms import compose

    transform = compose(config.data.eval_transforms)
    channels, height, width = meta.input_shape
    resizes = any(t["name"] in ("resize", "center_crop") for t in config.data.eval_transforms)
    images = []
    for file in files:
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"{file}: not an image file (this model takes images: {', '.join(sorted(IMAGE_SUFFIXES))})")
        image = stored_image(str(file), meta.stored) if (meta.stored or {}).get("resize") else \
            load_image(str(file), channels)
        if not resizes and image.shape[1:] != (height, width):
            image = F.interpolate(image[None], size=(height, width), mode="bilinear", antialias=True)[0]
        image = transform(image)
        if list(image.shape) != meta.input_shape:
            raise DataError(f"{file}: preprocessed to shape {list(image.shape)}, model expects {meta.input_shape}")
        images.append(image)
    return torch.stack(images)


def tabular_inputs(files: list[Path], meta):
    """(encoded rows, their names `file:line`, per row the categorical columns whose value training
    never saw) from CSV files holding the model's feature columns."""
    import torch

    from dlcli.data.tabular import read_features

    rows, names, unseen = [], [], []
    for file in files:
        if file.suffix.lower() != ".csv":
            raise DataError(f"{file}: this model takes CSV rows with columns "
                            f"{[*meta.feature_names, *(meta.categories or {})]}")
        x, missing = read_features(str(file), meta)
        rows.append(x)
        names += [f"{file}:{i + 2}" for i in range(len(x))]
        unseen += missing
    return torch.cat(rows), names, unseen


def row_inputs(files: list[Path], meta):
    """Images read row by row (models trained on digits_rows / mnist_rows)."""
    import torch
    import torch.nn.functional as F

    from dlcli.data.files import load_image

    steps, width = meta.input_shape
    rows = []
    for file in files:
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"{file}: not an image file (this model reads images row by row)")
        image = load_image(str(file), 1)
        if image.shape[1:] != (steps, width):
            image = F.interpolate(image[None], size=(steps, width), mode="bilinear", antialias=True)[0]
        rows.append(image[0])
    return torch.stack(rows)


def text_inputs(files, texts: list[str], meta):
    """(ids [N, L], lengths, names) from --text strings and CSV/JSONL files with the text column."""
    from dlcli.data.codec import text_ids
    from dlcli.data.sequences import read_labelled_texts
    from dlcli.data.windows import pad_ids

    names, raw = [], []
    for i, text in enumerate(texts):
        names.append(f"--text {i + 1}")
        raw.append(text)
    for file in files:
        if file.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
            raise DataError(f"{file}: this model classifies texts: give .csv/.jsonl files with a "
                            f"{meta.sequence['text_column']!r} column, or --text")
        found, _ = read_labelled_texts(str(file), meta.sequence["text_column"], None)
        names += [f"{file}:{i + 1}" for i in range(len(found))]
        raw += found
    if not raw:
        raise ConfigError("no inputs: give text files or --text \"...\"")
    x, lengths = pad_ids([text_ids(t, meta.sequence, meta.vocab)[0] for t in raw], meta.sequence["max_len"])
    return x, lengths, names
