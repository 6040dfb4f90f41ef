"""`dlcli train`: build everything, create the run directory, run the epochs, write results."""

import time

import dlcli
from dlcli.config.yamlio import dump_yaml
from dlcli.runs import RunDir, plot_curves


def checkpoint_payload(trainer, meta, metrics: dict) -> dict:
    import torch

    from dlcli.checkpoint import rng_states

    return {
        "dlcli_version": dlcli.__version__,
        "torch_version": str(torch.__version__),
        "config": trainer.config.model_dump(mode="json"),
        "meta": meta.to_dict(),
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.schedule.state_dict() if trainer.schedule else None,
        "scaler": trainer.scaler.state_dict(),
        "callbacks": [c.state_dict() for c in trainer.callbacks],
        "state": {"epoch": trainer.epoch, "step": trainer.step, "best": trainer.best,
                  "best_epoch": trainer.best_epoch},
        "metrics": metrics,
        "rng": {**rng_states(), "shuffle": trainer.generator.get_state()},
    }


def run_epochs(trainer, meta, run: RunDir, progress) -> dict:
    """The epoch loop; returns the last epoch's metrics."""
    from dlcli import checkpoint
    from dlcli.engine import evaluate

    metrics: dict = {}
    for epoch in range(trainer.epoch + 1, trainer.config.train.epochs + 1):
        trainer.epoch = epoch
        started = time.perf_counter()
        metrics = trainer.train_epoch(progress)
        if trainer.val_batches is not None:
            metrics.update(evaluate(trainer.model, trainer.task, trainer.val_batches, trainer.device,
                                    trainer.precision).compute("val"))
        metrics["lr"] = trainer.lr
        is_best = trainer.end_epoch(metrics)
        seconds = time.perf_counter() - started
        run.log({"event": "epoch", "epoch": epoch, "step": trainer.step, **metrics, "seconds": round(seconds, 3)})
        payload = checkpoint_payload(trainer, meta, metrics)
        checkpoint.save(payload, run.checkpoints / "last.pt")
        if is_best and trainer.config.output.save_best:
            checkpoint.save(payload, run.checkpoints / "best.pt")
        progress.epoch_end(epoch, metrics, seconds, "  *best" if is_best else "")
        if trainer.should_stop:
            progress.message(f"early stopping at epoch {epoch}")
            break
    return metrics


def train(config, output_dir: str | None, version: str | None, progress) -> dict:
    """Run a whole training; returns the summary (also written to summary.json)."""
    from dlcli.build import build_trainer
    from dlcli.errors import DlcliError

    trainer, meta = build_trainer(config)  # every config/data error surfaces before anything is written
    run = RunDir.create(output_dir or config.output.dir, config.name, version)
    run.write_text("config.yaml", dump_yaml(config.model_dump(mode="json")))
    trainer.step_logger = run.log
    progress.message(f"run directory: {run.path}  (device {trainer.device}, precision {trainer.precision}, "
                     f"{len(meta.class_names)} classes, input {meta.input_shape})")
    started = time.time()
    status, error, metrics = "failed", None, {}
    try:
        metrics = run_epochs(trainer, meta, run, progress)
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except DlcliError as err:
        error = str(err)
        raise
    finally:
        run.close()
        summary = _summary(trainer, run, metrics, status, error, time.time() - started)
        run.write_summary(summary)
        _plot(run)
    for callback in trainer.callbacks:
        note = callback.on_train_end(trainer.model)
        if note:
            progress.message(note)
    return summary


def _summary(trainer, run, metrics, status, error, seconds) -> dict:
    best_ckpt = run.checkpoints / "best.pt"
    return {
        "status": status,
        "error": error,
        "name": trainer.config.name,
        "run_dir": str(run.path),
        "epochs": trainer.epoch,
        "steps": trainer.step,
        "seconds": round(seconds, 2),
        "device": str(trainer.device),
        "precision": trainer.precision,
        "monitor": trainer.monitor,
        "best": {"value": trainer.best, "epoch": trainer.best_epoch},
        "final": metrics,
        "checkpoints": {"last": str(run.checkpoints / "last.pt"),
                        "best": str(best_ckpt) if best_ckpt.exists() else None},
    }


def _plot(run: RunDir) -> None:
    metrics = run.path / "metrics.jsonl"
    if metrics.exists():
        plot_curves(metrics, run.path / "curves.png")
