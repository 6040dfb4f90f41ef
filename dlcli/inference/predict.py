"""`dlcli infer`: everything comes from the checkpoint alone; what the outputs are is the
checkpoint's task's business (Task.infer)."""

from dlcli.errors import ConfigError

# infer options: option -> its CLI flag; which apply is the task's say (Task.infer_options)
OPTION_FLAGS = {"prompt": "--prompt", "seed": "--seed", "length": "--length", "temperature": "--temperature",
                "top_k": "--top-k", "top_p": "--top-p", "steps": "--steps", "texts": "--text", "label": "--class",
                "num": "--num", "output_dir": "--output-dir"}


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
    from dlcli.inference.tta import with_tta
    from dlcli.training import checkpoint
    from dlcli.training.build import build_task, from_checkpoint
    from dlcli.training.verify import naming_checkpoint

    options = {**(options or {}), "top_k": top_k}
    payload, source = checkpoint.load_for_inference(path)
    config, meta, model, device, precision = from_checkpoint(payload, [], device_spec, source)
    with naming_checkpoint(source):
        task = build_task(config, meta)
    check_options(task, config, meta, options)
    model = with_tta(model, options.get("tta"), task, meta)
    return task.infer(model, config, meta, inputs, options, device, precision)
