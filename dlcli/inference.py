"""`dlcli eval` and `dlcli infer`: everything comes from the checkpoint alone."""

import os
from pathlib import Path

from dlcli.errors import ConfigError, DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def evaluate_checkpoint(path: str, split: str, overrides: list[str], device_spec: str,
                        features: str | None = None) -> dict:
    from dlcli import checkpoint
    from dlcli.build import build_task, from_checkpoint, seed_everything
    from dlcli.data.pipeline import split_for_eval
    from dlcli.engine import evaluate

    payload = checkpoint.load(path)
    config, meta, model, device, precision = from_checkpoint(payload, overrides, device_spec)
    batches = split_for_eval(config, meta, split, device)
    task = build_task(config, meta)
    seed_everything(config.seed)  # tasks that draw noise (GANs) report the same numbers every time
    metrics = evaluate(model, task, batches, device, precision)
    values = {k.split("/", 1)[1]: v for k, v in metrics.compute(split).items()}
    unit = {"language_model": "tokens", "forecasting": "windows"}.get(config.task, "samples")
    result = {"checkpoint": str(path), "task": config.task, "split": split, "samples": metrics.count, "unit": unit,
              "metrics": values, "epoch": payload["state"]["epoch"]}
    if config.task == "classification":
        result.update(class_names=meta.class_names, confusion=metrics.confusion_matrix().tolist())
    if features and config.task != "gan":
        from dlcli.errors import ConfigError

        raise ConfigError("--features: only for GAN checkpoints")
    if config.task == "gan":
        result.update(_gan_eval(model, config, meta, path, split, device, features))
    return result


def _gan_eval(model, config, meta, path: str, split: str, device, features: str | None) -> dict:
    """A sample grid next to the run's other samples; with --features, FD / IS / coverage."""
    from dlcli.gan_eval import quality, sample_images
    from dlcli.gan_images import save_grid

    folder = Path(path).resolve()
    folder = folder if folder.is_dir() else folder.parent  # a run directory, or a checkpoint inside one
    folder = folder / "checkpoints" if (folder / "checkpoints").is_dir() else folder
    folder = folder.parent / "samples" if folder.name == "checkpoints" else folder
    grid = folder / f"eval_{split}.png"
    images, _ = sample_images(model, 64, 0, None, meta.class_names, device)
    save_grid(images, grid)
    out = {"samples_grid": str(grid)}
    if features:
        out["quality"] = quality(model, config, meta, features, split, device)
    return out


def collect_inputs(inputs: list[str], text_files: bool = False) -> list[Path]:
    """Expand folders into their image (or text-table) files, sorted; keep files as given."""
    suffixes = {".csv", ".jsonl", ".ndjson"} if text_files else IMAGE_SUFFIXES
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            if not os.access(path, os.R_OK | os.X_OK):
                raise DataError(f"cannot read folder {path}: permission denied")
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes)
            if not found:
                raise DataError(f"no {'text table' if text_files else 'image'} files in folder {path}")
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


# options that only some checkpoints take: option -> (its CLI flag, the tasks it applies to)
_OPTION_TASKS = {"prompt": ("--prompt", {"language_model"}), "seed": ("--seed", {"language_model", "gan"}),
                 "length": ("--length", {"language_model"}), "temperature": ("--temperature", {"language_model"}),
                 "top_k": ("--top-k", {"classification", "language_model"}),
                 "steps": ("--steps", {"forecasting"}), "texts": ("--text", {"text"}), "label": ("--class", {"gan"}),
                 "num": ("--num", {"gan"}), "output_dir": ("--output-dir", {"gan"})}
# what an option left out means, where it applies
_OPTION_DEFAULTS = {"length": 200, "temperature": 1.0, "num": 64}  # --top-k: 3 classes; generation: all


def check_options(task: str, kind: str, options: dict) -> None:
    """An option given to a checkpoint it does not apply to is a usage error, not silently ignored."""
    model = f"a {task} model{' over text' if kind == 'text' else ''}"
    for key, (flag, tasks) in _OPTION_TASKS.items():
        if options.get(key) not in (None, [], "") and task not in tasks and kind not in tasks:
            raise ConfigError(f"{flag}: does not apply to this checkpoint ({model})")
    output = options.get("output")
    if output and (task == "gan") != output.endswith(".png"):
        wanted = "a .png file (the image grid)" if task == "gan" else "a .csv or .jsonl file"
        raise ConfigError(f"--output: this checkpoint ({model}) writes {wanted} (got {output!r})")


def with_defaults(options: dict) -> dict:
    return {**options, **{key: value for key, value in _OPTION_DEFAULTS.items() if options.get(key) is None}}


def infer(path: str, inputs: list[str], device_spec: str, top_k: int | None, options: dict | None = None):
    """(kind, result): "classes" with one row per input, "generation" (language models) with the
    generated text, or "forecast" with one row per future step."""
    from dlcli import checkpoint
    from dlcli.build import build_task, from_checkpoint

    options = options or {}
    payload = checkpoint.load(path)
    config, meta, model, device, precision = from_checkpoint(payload, [], device_spec)
    check_options(config.task, meta.kind, {**options, "top_k": top_k})
    options = with_defaults(options)
    task = build_task(config, meta)
    if config.task == "language_model":
        from dlcli.sequence_inference import generate

        if inputs:
            raise ConfigError("a language model takes no input files; give --prompt TEXT")
        return "generation", generate(model, meta, device, precision, options.get("prompt") or "",
                                      options["length"], options["temperature"], top_k,
                                      options.get("seed"))
    if config.task == "gan":
        from dlcli.gan_eval import sample_images, write_samples

        if inputs:
            raise ConfigError("a GAN takes no input files; use --num, --seed, --class and --output grid.png")
        images, labels = sample_images(model, options["num"], options.get("seed"), options.get("label"),
                                       meta.class_names, device)
        files = write_samples(images, options.get("output"), options.get("output_dir"))
        return "images", {"images": len(images), "files": files, "seed": options.get("seed"),
                          "classes": None if labels is None else [meta.class_names[i] for i in labels.tolist()]}
    if config.task == "forecasting":
        from dlcli.sequence_inference import forecast

        if len(inputs) != 1:
            raise ConfigError(f"a forecaster takes one CSV series (its last {meta.sequence['window']} rows are "
                            f"the input window); got {len(inputs)} inputs")
        return "forecast", forecast(model, task, meta, device, precision, inputs[0], options.get("steps"))
    return "classes", classify(model, task, config, meta, device, precision, inputs, top_k or 3, options)


def classify(model, task, config, meta, device, precision, inputs, top_k, options) -> list[dict]:
    """One row per input: predicted class, its probability and the top-k classes."""
    from dlcli.engine import predict

    files = collect_inputs(inputs, text_files=meta.kind == "text")
    if meta.kind == "text":
        from dlcli.sequence_inference import classify_texts, text_inputs

        x, lengths, names = text_inputs(files, options.get("texts") or [], meta)
        probs = classify_texts(model, task, x, lengths, device, precision)
    else:
        if not files:
            raise ConfigError("no inputs given: name image files or folders, CSV files, or use --text")
        if meta.kind == "tabular":
            x, names = tabular_inputs(files, meta)
        elif meta.kind == "sequence":
            x, names = row_inputs(files, meta), [str(f) for f in files]
        else:
            x, names = image_inputs(files, config, meta), [str(f) for f in files]
        probs = predict(model, task, x, device, precision)
    k = min(top_k, probs.shape[1])
    top_p, top_i = probs.topk(k, dim=1)
    rows = []
    for name, p, i in zip(names, top_p.tolist(), top_i.tolist()):
        rows.append({"input": name, "class": meta.class_names[i[0]], "probability": round(p[0], 6),
                     "top_k": [{"class": meta.class_names[c], "probability": round(q, 6)} for c, q in zip(i, p)]})
    return rows
