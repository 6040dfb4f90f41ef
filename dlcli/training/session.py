"""`dlcli train`: build everything, open the run directory (a new one, or the one to resume:
training/opening.py), run the epochs with checkpoints at epoch ends, every `train.checkpoint_every`
and on a stop signal, and record how it ended (training/summary.py)."""

import shutil
import time

from dlcli.errors import DlcliError, Interrupted
from dlcli.ranks import is_main
from dlcli.runs import rundir as runs
from dlcli.runs.rundir import RunDir
from dlcli.training import distributed
from dlcli.training.checkpoint import CheckpointStore
from dlcli.training.engine import EpochHooks
from dlcli.training.opening import open_run
from dlcli.training.payload import checkpoint_payload, finish_swa
from dlcli.training.signals import StopSignals


class Session:
    """One training process: the trainer plus where and when it saves."""

    def __init__(self, trainer, meta, run: RunDir, progress, signals: StopSignals, command: str, on_epoch=None,
                 mlflow_parent: str | None = None):
        import shlex

        from dlcli.training import tracking
        from dlcli.training.tracker import Tracker

        self.trainer, self.meta, self.run, self.progress = trainer, meta, run, progress
        # on_epoch(epoch, metrics) -> True to stop here as `pruned` (a sweep's pruner); after the save
        self.on_epoch, self.pruned = on_epoch, False
        self.started = time.time()
        self.writer = is_main()  # under DDP only rank 0 writes checkpoints and files
        self.signals, self.command = signals, command
        self.resume_hint = f"{command} --resume {shlex.quote(str(run.path))}"
        self.store = CheckpointStore(run.checkpoints, trainer.config.train.keep_last)
        self.last_save = time.monotonic()
        self.artifacts: dict = {}  # files a task writes per epoch (a GAN's sample grids), for the summary
        self.hooks = EpochHooks(log=self.record, after_step=self.between_steps)
        self.tracker = Tracker(trainer.config, run.path, progress) \
            if self.writer and tracking.settings(trainer.config) else None  # under DDP rank 0 alone tracks
        self.mlflow_parent = mlflow_parent

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
            status = "pruned" if self.pruned else "finished"
        except BaseException as err:
            status, error, failure = summaries.outcome(err)
            raise
        finally:
            summary = summaries.summary(self.trainer, self.run, metrics, status, error, self.seconds()) | self.artifacts
            summary |= {"skipped_images": self.meta.skipped_images} if self.meta.skipped_images else {}
            summary |= self.tracker.summary() if self.tracker else {}
            try:
                summaries.write_up(self.run, summary, failure, self.progress)
            finally:
                if self.tracker is not None:
                    self.tracker.finish(status, summary, self.run.write_summary)
        return summary

    def record(self, record: dict) -> None:
        """One metrics.jsonl record, also to MLflow."""
        self.run.log(record)
        if self.tracker is not None:
            self.tracker.log(record)



    def start(self, payload: dict | None):
        """Everything before the first step; returns (resume_at batch, on_resumed callback)."""
        from dlcli.training.resume import restore

        t = self.trainer
        if t.config.logging.tensorboard:
            self.run.enable_tensorboard()
        if self.writer:
            check_free_space(self.run, t.model)
        resume_at, on_resumed = restore(t, payload) if payload else (0, None)
        if self.tracker is not None:
            resume_id = ((payload or {}).get("tracking") or {}).get("mlflow_run_id")
            self.tracker.start(t.config, resume_id, t.device, self.command, self.mlflow_parent)
        verb = f"resuming at epoch {t.state.epoch + 1}, step {t.state.step}" if payload else "run directory"
        self.progress.message(f"{verb}: {self.run.path}  (device {t.device}, precision {t.precision}, "
                              f"{t.config.task}, {t.task.describe_outputs(self.meta)}, input {self.meta.input_shape})")
        for note in t.notes:
            self.progress.message(note)
        if self.meta.skipped_images:
            shown = ", ".join(self.meta.skipped_images[:3]) + (", ..." if len(self.meta.skipped_images) > 3 else "")
            self.progress.message(f"skipped {len(self.meta.skipped_images)} unreadable image(s) "
                                  f"(data.skip_bad_images): {shown}")
        if self.run.stale_temporaries:
            self.progress.message(f"removed {len(self.run.stale_temporaries)} temporary file(s) left by a save "
                                  f"that was cut short")
        if t.ema is not None:
            self.progress.message(f"weight EMA (decay {t.ema.decay}): validation, best.pt and the checkpoints' "
                                  f"weights are the average")
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
        payload = checkpoint_payload(self.trainer, self.meta, metrics, running, self.seconds(), self.tracking())
        self.store.save(payload, s.step, best)

    def tracking(self) -> dict | None:
        return self.tracker.checkpoint_section() if self.tracker is not None else None

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
        notes = [note for c in self.trainer.callbacks if (note := c.on_train_end(self.trainer.evaluated_model))]
        for note in notes:
            self.progress.message(note)
        if notes and self.writer:
            self.store.save_as(checkpoint_payload(self.trainer, self.meta, metrics, seconds=self.seconds(),
                                                  tracking=self.tracking()), "final.pt")
        if self.trainer.swa is not None and self.writer:
            self.artifacts["swa"] = finish_swa(self.trainer, self.meta, metrics, self.store, self.progress)

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
            if t.swa is not None:
                t.swa.end_epoch(t.model, epoch)
            if t.val_batches is not None:
                val = evaluate(t.evaluated_model, t.task, t.val_batches, t.device, t.precision)
                metrics.update(t.synced(val).compute("val"))
                metrics.update(distributed.averaged(t.task.epoch_metrics(t, epoch)))
            metrics["lr"] = t.lr
            if self.writer:
                self.artifacts.update(t.task.epoch_artifacts(t.evaluated_model, self.run.path, epoch,
                                                             t.train_batches))
            is_best = t.end_epoch(metrics)
            seconds = time.perf_counter() - started
            self.record({"event": "epoch", "epoch": epoch, "step": t.state.step, **metrics,
                          "seconds": round(seconds, 3)})
            self.save(metrics, is_best)
            self.progress.epoch_end(epoch, metrics, seconds, "  *best" if is_best else "")
            self.stop_if_signalled()
            if self.on_epoch is not None and self.on_epoch(epoch, metrics):
                self.pruned = True
                self.progress.message(f"pruned by the sweep at epoch {epoch}")
                break
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
          command: str = "dlcli train CONFIG", on_epoch=None, mlflow_parent: str | None = None,
          folder: str | None = None) -> dict:
    """Run (or resume) a whole training; returns the summary (also written to summary.json).
    `command` is how the user started it (config and overrides), for the printed resume command;
    `on_epoch(epoch, metrics)`, called at each epoch end, returns True to end the run as `pruned`;
    `mlflow_parent`: the MLflow run (a sweep's) this run's is a child of; the run directory is
    ROOT/<folder, default the config's name>/<version>.
    Under torchrun (WORLD_SIZE > 1) this process is one DDP rank."""
    # The stop handlers come first: from here on a signal always stops the run gracefully, however
    # early (one arriving while the run directory was being set up used to kill the process outright).
    with StopSignals() as signals:
        device = distributed.setup(config.train.device) if distributed.world()[1] > 1 else None
        try:
            return _train(config, output_dir, version, progress, resume, command, device, signals,
                          (on_epoch, mlflow_parent), folder)
        except RuntimeError as err:
            peer = distributed.lost_peer(err)
            if peer is None:
                raise
            raise peer from None
        finally:
            distributed.cleanup()


def _train(config, output_dir, version, progress, resume, command, device, signals, links=(None, None),
           folder=None) -> dict:
    from dlcli.training import tracking
    from dlcli.training.build import build_trainer

    trainer = None
    with signals.ending_builds():
        trainer, meta = build_trainer(config, device)  # every config/data error surfaces before anything is written
    if config.logging.tensorboard:
        tracking.require_tensorboard()
    if tracking.settings(config):
        tracking.require_mlflow()
    received = distributed.agreed_signal(signals.received)
    if received or trainer is None:  # stopped while building: leave no run directory behind
        signals.received = received or signals.received
        raise Interrupted(f"stopped by {signals.name} before training started; nothing was written",
                          signals.received or 2)
    run, payload = open_run(config, trainer, runs_root(output_dir, config), version, resume, folder)
    try:
        return Session(trainer, meta, run, progress, signals, command, *links).execute(payload)
    finally:
        run.release()  # last: summary.json and curves.png are written under the lock too


def check_free_space(run: RunDir, model) -> None:
    """Refuse to start when the disk cannot hold a few checkpoints (weights + optimizer state)."""
    need = 4 * sum(p.numel() * p.element_size() for p in model.parameters()) + 10_000_000
    free = shutil.disk_usage(run.path).free
    if free < need:
        raise DlcliError(f"not enough free disk space in {run.path}: {free // 2**20} MiB free, "
                         f"checkpoints need about {need // 2**20} MiB")

