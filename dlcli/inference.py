"""`dlcli eval` and `dlcli infer`: everything comes from the checkpoint alone."""

from pathlib import Path

from dlcli.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def evaluate_checkpoint(path: str, split: str, overrides: list[str], device_spec: str) -> dict:
    from dlcli import checkpoint
    from dlcli.build import build_task, from_checkpoint
    from dlcli.data.pipeline import split_for_eval
    from dlcli.engine import evaluate

    payload = checkpoint.load(path)
    config, meta, model, device, precision = from_checkpoint(payload, overrides, device_spec)
    batches = split_for_eval(config, meta, split, device)
    task = build_task(config, len(meta.class_names))
    metrics = evaluate(model, task, batches, device, precision)
    values = {k.split("/", 1)[1]: v for k, v in metrics.compute(split).items()}
    return {"checkpoint": str(path), "split": split, "samples": metrics.count, "metrics": values,
            "class_names": meta.class_names, "confusion": metrics.confusion_matrix().tolist(),
            "epoch": payload["state"]["epoch"]}


def collect_inputs(inputs: list[str]) -> list[Path]:
    """Expand folders into their image files (sorted); keep files as given."""
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"no image files in folder {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"input not found: {path}")
    return files


def image_inputs(files: list[Path], config, meta):
    """Decode, resize to the model's input size if needed, and apply the eval transforms."""
    import torch
    import torch.nn.functional as F

    from dlcli.data.files import load_image
    from dlcli.data.transforms import compose

    transform = compose(config.data.eval_transforms)
    channels, height, width = meta.input_shape
    resizes = any(t["name"] in ("resize", "center_crop") for t in config.data.eval_transforms)
    images = []
    for file in files:
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"{file}: not an image file (this model takes images: {', '.join(sorted(IMAGE_SUFFIXES))})")
        image = load_image(str(file), channels)
        if not resizes and image.shape[1:] != (height, width):
            image = F.interpolate(image[None], size=(height, width), mode="bilinear", antialias=True)[0]
        image = transform(image)
        if list(image.shape) != meta.input_shape:
            raise DataError(f"{file}: preprocessed to shape {list(image.shape)}, model expects {meta.input_shape}")
        images.append(image)
    return torch.stack(images)


def tabular_inputs(files: list[Path], meta):
    import torch

    from dlcli.data.tabular import read_features

    rows, names = [], []
    for file in files:
        if file.suffix.lower() != ".csv":
            raise DataError(f"{file}: this model takes CSV rows with columns {meta.feature_names}")
        x = read_features(str(file), meta.feature_names)
        rows.append(x)
        names += [f"{file}:{i + 2}" for i in range(len(x))]
    x = torch.cat(rows)
    if meta.feature_mean is not None:
        x = (x - torch.tensor(meta.feature_mean)) / torch.tensor(meta.feature_std)
    return x, names


def infer(path: str, inputs: list[str], device_spec: str, top_k: int) -> list[dict]:
    """One row per input: predicted class, its probability and the top-k classes."""
    from dlcli import checkpoint
    from dlcli.build import build_task, from_checkpoint
    from dlcli.engine import predict

    payload = checkpoint.load(path)
    config, meta, model, device, precision = from_checkpoint(payload, [], device_spec)
    files = collect_inputs(inputs)
    if meta.kind == "tabular":
        x, names = tabular_inputs(files, meta)
    else:
        x, names = image_inputs(files, config, meta), [str(f) for f in files]
    task = build_task(config, len(meta.class_names))
    probs = predict(model, task, x, device, precision)
    k = min(top_k, probs.shape[1])
    top_p, top_i = probs.topk(k, dim=1)
    rows = []
    for name, p, i in zip(names, top_p.tolist(), top_i.tolist()):
        rows.append({"input": name, "class": meta.class_names[i[0]], "probability": round(p[0], 6),
                     "top_k": [{"class": meta.class_names[c], "probability": round(q, 6)} for c, q in zip(i, p)]})
    return rows
