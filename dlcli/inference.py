"""`dlcli eval` and `dlcli infer`: everything comes from the checkpoint alone; what the numbers
and outputs are is the checkpoint's task's business (tasks/)."""

from dlcli.errors import ConfigError

# infer options: option -> its CLI flag; which apply is the task's say (Task.infer_options)
OPTION_FLAGS = {"prompt": "--prompt", "seed": "--seed", "length": "--length", "temperature": "--temperature",
                "top_k": "--top-k", "steps": "--steps", "texts": "--text", "label": "--class", "num": "--num",
                "output_dir": "--output-dir"}


def evaluate_checkpoint(path: str, split: str, overrides: list[str], device_spec: str,
                        features: str | None = None) -> dict:
    from dlcli import checkpoint
    from dlcli.build import build_task, from_checkpoint, seed_everything
    from dlcli.data.pipeline import split_for_eval
    from dlcli.engine import evaluate

    payload = checkpoint.load(path)
    config, meta, model, device, precision = from_checkpoint(payload, overrides, device_spec)
    task = build_task(config, meta)
    if features and "features" not in task.eval_options:
        raise ConfigError(f"--features: only for GAN checkpoints (this one is a {config.task} model)")
    classifier = None
    if features:  # a dlcli classifier whose features score a GAN's images
        clf_config, clf_meta, clf_model, _, _ = from_checkpoint(checkpoint.load(features), [], str(device))
        classifier = (features, clf_config, clf_meta, clf_model)
    batches = split_for_eval(config, meta, split, device, type(task))
    seed_everything(config.seed)  # tasks that draw noise (GANs) report the same numbers every time
    metrics = evaluate(model, task, batches, device, precision)
    values = {k.split("/", 1)[1]: v for k, v in metrics.compute(split).items()}
    result = {"checkpoint": str(path), "task": config.task, "split": split, "samples": metrics.count,
              "unit": task.eval_unit, "metrics": values, "epoch": payload["state"]["epoch"]}
    if batches.unknown_categories:
        result["unknown_categories"] = batches.unknown_categories
    context = {"model": model, "config": config, "path": path, "split": split, "device": device,
               "features": classifier}
    return result | task.eval_report(metrics, meta, context)


def check_options(task, config, meta, options: dict) -> None:
    """An option given to a checkpoint it does not apply to is a usage error, not silently ignored."""
    accepted = task.infer_options(meta)
    model = f"a {config.task} model{' over text' if meta.kind == 'text' else ''}"
    for key, flag in OPTION_FLAGS.items():
        if options.get(key) not in (None, [], "") and key not in accepted:
            raise ConfigError(f"{flag}: does not apply to this checkpoint ({model})")
    output = options.get("output")
    writes_images = "output_dir" in accepted  # a generator's checkpoint writes images
    if output and writes_images != output.endswith(".png"):
        wanted = "a .png file (the image grid)" if writes_images else "a .csv or .jsonl file"
        raise ConfigError(f"--output: this checkpoint ({model}) writes {wanted} (got {output!r})")


def infer(path: str, inputs: list[str], device_spec: str, top_k: int | None, options: dict | None = None):
    """(kind, result): what the checkpoint's task makes of the inputs ("classes", "generation",
    "forecast", "images", "values", "labels"); the CLI shows each kind its own way."""
    from dlcli import checkpoint
    from dlcli.build import build_task, from_checkpoint

    options = {**(options or {}), "top_k": top_k}
    payload = checkpoint.load(path)
    config, meta, model, device, precision = from_checkpoint(payload, [], device_spec)
    task = build_task(config, meta)
    check_options(task, config, meta, options)
    return task.infer(model, config, meta, inputs, options, device, precision)
