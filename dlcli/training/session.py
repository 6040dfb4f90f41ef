"""`dlcli train`: build everything, open the run directory (a new one, or the one to resume:
training/opening.py), run the epochs with checkpoints at epoch ends, every `train.checkpoint_every`
and on a stop signal, and record how it ended (training/summary.py)."""

import shutil
import time

import dlcli
from dlcli.errors import DlcliError, Interrupted
from dlcli.ranks import is_main
from dlcli.runs import rundir as runs
from dlcli.runs.rundir import RunDir
from dlcli.training import distributed
from dlcli.training.checkpoint import CheckpointStore
from dlcli.training.engine import EpochHooks
from dlcli.training.opening import open_run
from dlcli.training.signals import StopSignals


def checkpoint_payload(trainer, meta, metrics: dict, running=None, seconds: float = 0.0) -> dict:
    """Everything a resume needs; `running`: mid-epoch, the epoch's training metrics over all ranks;
    `seconds`: the run's training time so far, over all its sessions."""
    import torch

    from dlcli.training.checkpoint import rng_states

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
        **_with_task(trainer.state.state_dict(running.state_dict() if running is not None else None, seconds),
                     trainer.task.state_dict()),
        "metrics": metrics,
        "rng": {**rng_states(), "shuffle": trainer.generator.get_state()},
    }


def _with_task(sections: dict, task_state: dict) -> dict:
    """The task's own state (a GAN's step count, a carried hidden state) travels with the position."""
    sections["position"]["task"] = task_state
    return sections


class Session:
    """One training process: the trainer plus where and when it saves."""

    def __init__(self, trainer, meta, run: RunDir, progress, signals: StopSignals, command: str):
        import shlex

        self.trainer, self.meta, self.run, self.progress = trainer, meta, run, progress
        self.started = time.time()
        self.writer = is_main()  # under DDP only rank 0 writes checkpoints and files
        self.signals, self.command = signals, command
        self.resume_hint = f"{command} --resume {shlex.quote(str(run.path))}"
        self.store = CheckpointStore(run.checkpoints, trainer.config.train.keep_last)
        self.last_save = time.monotonic()
        self.artifacts: dict = {}  # files a task writes per epoch (a GAN's sample grids), for the summary
        self.hooks = EpochHooks(log=run.log, after_step=self.between_steps)

    def execute(self, payload: dict | None) -> dict:
        """Set up (restoring `payload`, a checkpoint to resume), train, finish; returns the summary.
        However the run ends, summary.json records how, and the first error is the one raised."""
        from dlcli.training import summary as summaries

        status, error, failure = "failed", None, None
        metrics = (payload or {}).get("metrics") or {}
        try:
            resume_at, on_resumed = self.start(payload)
            metrics = self.run_epochs(resume_at, on_resumed) or metrics
            self.finish(metrics)
            status = "finished"
        except BaseException as err:
            status, error, failure = summaries.outcome(err)
            raise
        finally:
            summary = summaries.summary(self.trainer, self.run, metrics, status, error, self.seconds()) | self.artifacts
            summaries.write_up(self.run, summary, failure, self.progress)
        return summary

    def start(self, payload: dict | None):
        """Everything before the first step; returns (resume_at batch, on_resumed callback)."""
        from dlcli.training.resume import restore

        t = self.trainer
        if t.config.logging.tensorboard:
            self.run.enable_tensorboard()
        if self.writer:
            check_free_space(self.run, t.model)
        resume_at, on_resumed = restore(t, payload) if payload else (0, None)
        verb = f"resuming at epoch {t.state.epoch + 1}, step {t.state.step}" if payload else "run directory"
        self.progress.message(f"{verb}: {self.run.path}  (device {t.device}, precision {t.precision}, "
                              f"{t.config.task}, {t.task.describe_outputs(self.meta)}, input {self.meta.input_shape})")
        if self.run.stale_temporaries:
            self.progress.message(f"removed {len(self.run.stale_temporaries)} temporary file(s) left by a save "
                                  f"that was cut short")
        self.stop_if_signalled_before_start(resumed=payload is not None)
        return resume_at, on_resumed

    def save(self, metrics: dict, is_best: bool = False) -> None:
        """Commit a checkpoint (rank 0 writes; every rank calls this at the same step); mid-epoch, the
        running training metrics summed over the ranks go with it, once their loss is known finite."""
        from dlcli.training.engine import check_finite

        t, s = self.trainer, self.trainer.state
        running = t.synced(s.running) if s.batch_in_epoch and s.running is not None else None
        self.last_save = time.monotonic()  # on every rank: `checkpoint_every.minutes` is agreed by all
        if running is not None and running.count:  # every rank sees the same sums, so all stop together
            check_finite(running.compute("train")["train/loss"], s.epoch, s.step)  # never save NaN state
        if not self.writer:
            return
        best = is_best and self.trainer.config.output.save_best
        payload = checkpoint_payload(self.trainer, self.meta, metrics, running, self.seconds())
        self.store.save(payload, s.step, best)

    def seconds(self) -> float:
        """Training time of the whole run: earlier sessions (up to their checkpoint) plus this one."""
        return self.trainer.state.seconds_before + time.time() - self.started

    def between_steps(self) -> None:
        """After an optimizer step inside an epoch: stop on a signal, or save when one is due."""
        every = self.trainer.config.train.checkpoint_every
        by_steps = every is not None and every.steps is not None and self.trainer.state.step % every.steps == 0
        by_time = every is not None and every.minutes is not None and \
            time.monotonic() - self.last_save >= every.minutes * 60
        # Every rank must save at the same step (the save syncs metrics): clocks and signals are agreed.
        received: int | None
        received, by_time = distributed.agreed_max(self.signals.received or 0, int(by_time))
        received = received or None
        if received or by_steps or by_time:
            self.save({})
        if received:  # decided once, before the save: a signal arriving later is handled next step
            self.interrupt(received)

    def stop_if_signalled(self) -> None:
        """At an epoch end (after its checkpoint): stop if any rank received a stop signal."""
        received = distributed.agreed_signal(self.signals.received)
        if received:
            self.interrupt(received)

    def interrupt(self, received: int) -> None:
        self.signals.received = received
        s = self.trainer.state
        where = f"epoch {s.epoch}, batch {s.batch_in_epoch}" if s.batch_in_epoch else f"end of epoch {s.epoch}"
        raise Interrupted(f"stopped by {self.signals.name} at {where} (step {s.step}); "
                          f"saved {self.run.checkpoints / 'last.pt'}", self.signals.received,
                          hint=f"resume with: {self.resume_hint}")

    def stop_if_signalled_before_start(self, resumed: bool) -> None:
        """A stop signal that came while the run was being set up ends it before its first step."""
        received = distributed.agreed_signal(self.signals.received)
        if not received:
            return
        self.signals.received = received
        if resumed:
            raise Interrupted(f"stopped by {self.signals.name} before the first step; "
                              f"{self.run.checkpoints / 'last.pt'} is unchanged", received,
                              hint=f"resume with: {self.resume_hint}")
        raise Interrupted(f"stopped by {self.signals.name} before the first step; no checkpoint was written yet",
                          received, hint=f"nothing to resume; start it again: {self.command}")

    def finish(self, metrics: dict) -> None:
        """Callbacks' last word; restored best weights are saved as checkpoints/final.pt."""
        notes = [note for c in self.trainer.callbacks if (note := c.on_train_end(self.trainer.model))]
        for note in notes:
            self.progress.message(note)
        if notes and self.writer:
            self.store.save_as(checkpoint_payload(self.trainer, self.meta, metrics, seconds=self.seconds()),
                               "final.pt")

    def run_epochs(self, resume_at: int = 0, on_resumed=None) -> dict:
        """The epoch loop; returns the last epoch's metrics."""
        from dlcli.training.engine import evaluate

        t, metrics = self.trainer, {}
        for epoch in range(t.state.epoch + 1, t.config.train.epochs + 1):
            if t.should_stop:  # resumed from a run that early stopping had already ended
                break
            t.state.epoch = epoch
            started = time.perf_counter()
            metrics = t.train_epoch(self.progress, resume_at, on_resumed, self.hooks)
            resume_at, on_resumed = 0, None
            if t.val_batches is not None:
                val = evaluate(t.model, t.task, t.val_batches, t.device, t.precision)
                metrics.update(t.synced(val).compute("val"))
                metrics.update(distributed.averaged(t.task.epoch_metrics(t, epoch)))
            metrics["lr"] = t.lr
            if self.writer:
                self.artifacts.update(t.task.epoch_artifacts(t.model, self.run.path, epoch, t.train_batches))
            is_best = t.end_epoch(metrics)
            seconds = time.perf_counter() - started
            self.run.log({"event": "epoch", "epoch": epoch, "step": t.state.step, **metrics,
                          "seconds": round(seconds, 3)})
            self.save(metrics, is_best)
            self.progress.epoch_end(epoch, metrics, seconds, "  *best" if is_best else "")
            self.stop_if_signalled()
            if t.should_stop:
                self.progress.message(f"early stopping at epoch {epoch}")
                break
        return metrics


def runs_root(output_dir: str | None, config) -> str:
    return runs.runs_root(output_dir, config.output.dir)


def train_command(config: str, overrides: list[str], devices: int | None = None) -> str:
    """The `dlcli train` command line, quoted for a shell (the resume hint builds on it)."""
    import shlex

    words = [config, *overrides] + (["--devices", str(devices)] if devices else [])
    return "dlcli train " + " ".join(shlex.quote(word) for word in words)


def train(config, output_dir: str | None, version: str | None, progress, resume: str | None = None,
          command: str = "dlcli train CONFIG") -> dict:
    """Run (or resume) a whole training; returns the summary (also written to summary.json).
    `command` is how the user started it (config and overrides), for the printed resume command.
    Under torchrun (WORLD_SIZE > 1) this process is one DDP rank."""
    # The stop handlers come first: from here on a signal always stops the run gracefully, however
    # early (one arriving while the run directory was being set up used to kill the process outright).
    with StopSignals() as signals:
        device = distributed.setup(config.train.device) if distributed.world()[1] > 1 else None
        try:
            return _train(config, output_dir, version, progress, resume, command, device, signals)
        except RuntimeError as err:
            peer = distributed.lost_peer(err)
            if peer is None:
                raise
            raise peer from None
        finally:
            distributed.cleanup()


def _train(config, output_dir, version, progress, resume, command, device, signals) -> dict:
    from dlcli.training.build import build_trainer

    trainer, meta = build_trainer(config, device)  # every config/data error surfaces before anything is written
    if config.logging.tensorboard:
        _require_tensorboard()
    received = distributed.agreed_signal(signals.received)
    if received:  # stopped while building: leave no run directory behind
        signals.received = received
        raise Interrupted(f"stopped by {signals.name} before training started; nothing was written", received)
    run, payload = open_run(config, trainer, runs_root(output_dir, config), version, resume)
    try:
        return Session(trainer, meta, run, progress, signals, command).execute(payload)
    finally:
        run.release()  # last: summary.json and curves.png are written under the lock too


def check_free_space(run: RunDir, model) -> None:
    """Refuse to start when the disk cannot hold a few checkpoints (weights + optimizer state)."""
    need = 4 * sum(p.numel() * p.element_size() for p in model.parameters()) + 10_000_000
    free = shutil.disk_usage(run.path).free
    if free < need:
        raise DlcliError(f"not enough free disk space in {run.path}: {free // 2**20} MiB free, "
                         f"checkpoints need about {need // 2**20} MiB")


def _require_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        from dlcli.errors import ConfigError

        raise ConfigError("logging.tensorboard: needs the tensorboard package: "
                          "pip install 'dlcli[tensorboard]'") from None
