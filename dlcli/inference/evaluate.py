"""`dlcli eval`: everything comes from the checkpoint alone; what the numbers are is the checkpoint's
task's business (its metrics and Task.eval_report)."""

from dlcli.errors import ConfigError


def evaluate_checkpoint(path: str, split: str, overrides: list[str], device_spec: str,
                        features: str | None = None, tta: str | None = None) -> dict:
    from dlcli.data.pipeline import split_for_eval
    from dlcli.inference.tta import with_tta
    from dlcli.training import checkpoint
    from dlcli.training.build import build_task, feature_classifier, from_checkpoint, seed_everything
    from dlcli.training.engine import evaluate
    from dlcli.training.verify import naming_checkpoint

    payload, source = checkpoint.load_for_inference(path)
    config, meta, model, device, precision = from_checkpoint(payload, overrides, device_spec, source)
    with naming_checkpoint(source):
        task = build_task(config, meta)
    model = with_tta(model, tta, task, meta)
    if features and "features" not in task.eval_options:
        raise ConfigError(f"--features: only for GAN checkpoints (this one is a {config.task} model)")
    classifier = None
    if features:  # a dlcli classifier whose features score a GAN's images
        classifier = feature_classifier(features, device, meta, "--features")
    batches = split_for_eval(config, meta, split, device, type(task))
    seed_everything(config.seed)  # tasks that draw noise (GANs) report the same numbers every time
    metrics = evaluate(model, task, batches, device, precision)
    values = {k.split("/", 1)[1]: v for k, v in metrics.compute(split).items()}
    result = {"checkpoint": str(path), "task": config.task, "split": split, "samples": metrics.count,
              "unit": task.eval_unit, "metrics": values, "epoch": payload["state"]["epoch"],
              **({"tta": tta} if tta else {})}
    if batches.unknown_categories:
        result["unknown_categories"] = batches.unknown_categories
    if batches.skipped_images:
        result["skipped_images"] = batches.skipped_images
    context = {"model": model, "config": config, "path": path, "split": split, "device": device,
               "features": classifier}
    report = task.eval_report(metrics, meta, context)
    result["metrics"].update(report.pop("metrics", {}))  # a task's own numbers (a GAN's FD) join the others
    return result | report
