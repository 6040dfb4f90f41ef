"""Progress output: a tqdm bar per epoch on a terminal; plain lines in batch jobs or --quiet."""

import sys
import time


def number(value: float) -> str:
    """4 significant digits (0.0001475, 0.9893, 0.7500, 445.2), whole numbers from 10,000 on (12346, not
    1.235e+04)."""
    if value != value or abs(value) == float("inf") or abs(value) < 1e4:
        return f"{value:#.4g}"
    return f"{value:.0f}"


def fmt(metrics: dict, shown=None) -> str:
    """The metrics whose names (after the split prefix) are in `shown` (all when None), and lr."""
    return "  ".join(f"{k} {v:.4g}" if k == "lr" else f"{k} {number(v)}" for k, v in metrics.items()
                     if isinstance(v, float) and (k == "lr" or shown is None or k.split("/")[-1] in shown))


class Progress:
    def __init__(self, epochs: int, quiet: bool = False, stream=None, shown=None, unit: str = "samples"):
        """`shown`: the metric names epoch lines show (the task's); the rest go to metrics.jsonl.
        `unit`: what the speed counts (the task's: samples, tokens for language models, windows)."""
        self.stream = stream or sys.stderr
        self.unit = unit
        self.epochs, self.shown = epochs, shown
        self.bar_mode = not quiet and self.stream.isatty()
        self.bar = None
        self.samples = 0
        self.last_speed = ""  # the last epoch's, for the final summary
        self.started = time.perf_counter()

    def epoch_start(self, epoch: int, total_batches: int, done: int = 0) -> None:
        self.epoch, self.total, self.done = epoch, total_batches, done
        self.samples, self.started = 0, time.perf_counter()
        self.last_refresh = self.started
        if self.bar_mode:
            from tqdm import tqdm

            self.bar = tqdm(total=total_batches, initial=done, desc=f"epoch {epoch}/{self.epochs}", file=self.stream,
                            leave=False, dynamic_ncols=True, unit="batch")

    def advance(self, samples: int, running=None) -> None:
        """One batch done. On a terminal the live loss refreshes at most once a second (one sync)."""
        self.samples += samples
        self.done += 1
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.perf_counter()
        if running is not None and now - self.last_refresh >= 1.0:
            self.last_refresh = now
            loss = running.compute("train").get("train/loss")
            if loss is not None:
                self.bar.set_postfix({"loss": number(loss), f"{self.unit}/s": f"{self.throughput():.0f}"})

    def throughput(self) -> float:
        return self.samples / max(time.perf_counter() - self.started, 1e-9)

    def log(self, step: int, running: dict, lr: float) -> None:
        """Called at the log interval only (the one place a running loss is synced)."""
        rate = self.throughput()
        if self.bar is not None:
            self.bar.set_postfix({"loss": number(running['train/loss']), f"{self.unit}/s": f"{rate:.0f}"})
        else:
            print(f"epoch {self.epoch}/{self.epochs}  batch {self.done}/{self.total}  step {step}  "
                  f"loss {number(running['train/loss'])}  lr {lr:.3g}  {rate:.0f} {self.unit}/s",
                  file=self.stream, flush=True)

    def epoch_end(self, epoch: int, metrics: dict, seconds: float, note: str = "") -> None:
        self.last_speed = f"{self.throughput():.0f} {self.unit}/s" if self.samples else self.last_speed
        rate = f", {self.last_speed}" if self.samples else ""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        print(f"epoch {epoch}/{self.epochs}  {fmt(metrics, self.shown)}  ({seconds:.1f}s{rate}){note}",
              file=self.stream, flush=True)

    def message(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
