"""What a checkpoint holds (every section a resume restores) and the SWA checkpoint written at the
end of a run with train.swa."""

import dlcli


def checkpoint_payload(trainer, meta, metrics: dict, running=None, seconds: float = 0.0, tracking=None) -> dict:
    """Everything a resume needs; `running`: mid-epoch, the epoch's training metrics over all ranks;
    `seconds`: the run's training time so far, over all its sessions; `tracking`: the MLflow run to go on."""
    import torch

    from dlcli.training.checkpoint import rng_states

    return {
        "dlcli_version": dlcli.__version__,
        "torch_version": str(torch.__version__),
        "config": trainer.config.model_dump(mode="json"),
        "meta": meta.to_dict(),
        "model": trainer.evaluated_model.state_dict(),  # with train.ema the average: what eval/infer use
        **({"train_model": trainer.model.state_dict()} if trainer.ema is not None else {}),
        **({"swa": trainer.swa.state_dict()} if trainer.swa is not None else {}),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.schedule.state_dict() if trainer.schedule else None,
        "scaler": trainer.scaler.state_dict(),
        "callbacks": [c.state_dict() for c in trainer.callbacks],
        **_with_task(trainer.state.state_dict(running.state_dict() if running is not None else None, seconds),
                     trainer.task.state_dict(), trainer.freeze),
        "metrics": metrics,
        "rng": {**rng_states(), "shuffle": trainer.generator.get_state()},
        **({"tracking": tracking} if tracking else {}),
    }


def finish_swa(trainer, meta, metrics: dict, store, progress) -> dict:
    """The SWA average at the end of training: batch-norm statistics recomputed over the training
    data, saved as checkpoints/swa.pt (its `model` section; the rest as last.pt), scored on the
    validation split (this process's share of it under DDP)."""
    from dlcli.training.engine import evaluate

    swa = trainer.swa
    if swa.averaged == 0:
        progress.message(f"SWA: training ended before epoch {swa.start_epoch} (train.swa.start_epoch); no swa.pt")
        return {**swa.describe(), "checkpoint": None, "metrics": {}}
    swa.recompute_batch_norm(trainer.train_batches)
    payload = checkpoint_payload(trainer, meta, metrics)
    payload["model"] = swa.average.module.state_dict()
    path = store.save_as(payload, "swa.pt")
    scored = {}
    if trainer.val_batches is not None:
        scored = evaluate(swa.average.module, trainer.task, trainer.val_batches, trainer.device,
                          trainer.precision).compute("val")
    shown = ", ".join(f"{k} {v:.4g}" for k, v in scored.items() if k.split("/")[1] in trainer.task.progress_metrics())
    epochs = f"{swa.averaged} epoch{'s' if swa.averaged != 1 else ''}"
    progress.message(f"SWA: the average of {epochs} saved as {path}{f'  ({shown})' if shown else ''}")
    return {**swa.describe(), "checkpoint": str(path), "metrics": scored}


def _with_task(sections: dict, task_state: dict, freeze) -> dict:
    """The task's own state (a GAN's step count, a carried hidden state) travels with the position,
    and so do the names of the frozen parameters (train.freeze)."""
    sections["position"]["task"] = task_state
    if freeze is not None:
        sections["position"]["frozen"] = sorted(freeze.frozen)
    return sections
