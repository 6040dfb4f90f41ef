"""Command line: parse, call, map errors to exit codes. No logic and no torch import here.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config, 3 data missing or unreachable,
4 unreadable or unsafe checkpoint, 130 interrupted (Ctrl-C).
"""

import sys
from collections.abc import Callable
from typing import Any, Optional

import typer

from dlcli.cli_base import DEBUG, OVERRIDES_HELP, _emit_json, _run, app
from dlcli.errors import ConfigError, Interrupted


@app.command()
def train(
    config: str = typer.Argument(..., help="YAML experiment file"),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", help="root for runs (default: output.dir)"),
    run_version: Optional[str] = typer.Option(None, "--run-version", help="run folder name (default: v1, v2, ...)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="plain log lines instead of progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print the final summary as JSON on stdout"),
    resume: Optional[str] = typer.Option(None, "--resume", help="RUN_DIR, a checkpoint file, or auto "
                                         "(newest run of this config with a checkpoint; else start fresh)"),
    devices: Optional[int] = typer.Option(None, "--devices", min=1, max=1024,
                                          help="DDP processes on this machine (GPUs, or CPU processes); "
                                               "same as train.devices=N"),
):
    """Train a model from a YAML experiment; writes runs/<name>/<version>/."""

    def action():
        import os

        from dlcli import distributed
        from dlcli.config import load
        from dlcli.progress import Progress
        from dlcli.report import print_train_summary
        from dlcli.tasks import task_class
        from dlcli.training import train as run_training
        from dlcli.training import train_command

        if resume is not None and not resume.strip():
            raise ConfigError("--resume: empty value; give RUN_DIR, a checkpoint file, or auto")
        if resume and run_version:
            raise ConfigError("--run-version: a resumed run keeps its own folder; leave one of them out")
        extra = [f"train.devices={devices}"] if devices else []
        cfg = load(config, (overrides or []) + extra)  # every config error is reported once, before any launch
        if cfg.train.devices > 1 and "LOCAL_RANK" not in os.environ:
            code, received = distributed.launch(_worker_argv(devices), cfg.train.devices)
            if code != 0:
                raise distributed.launcher_error(code, received, cfg.train.devices)
            return
        main_rank = distributed.rank() == 0
        progress = Progress(cfg.train.epochs, quiet or not main_rank, None if main_rank else open(os.devnull, "w"),
                            task_class(cfg.task).progress_metrics())
        try:
            summary = run_training(cfg, output_dir, run_version, progress, resume,
                                   train_command(config, overrides or [], devices))
        except BaseException as err:  # noqa: BLE001  re-raised: _run maps it to its exit code
            if as_json and main_rank and getattr(err, "summary", None):
                _emit_json(err.summary)  # scripts get status and error on stdout in exactly these cases
            if main_rank or not isinstance(err, Interrupted):
                raise
            raise typer.Exit(err.exit_code) from None  # rank 0 reports the stop; the other ranks leave quietly
        if main_rank:
            _emit_json(summary) if as_json else print_train_summary(summary)

    _run(action)


def _worker_argv(devices) -> list[str]:
    """This command line for the workers: `train ...` with --devices N turned into train.devices=N."""
    import sys

    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--devices":
            skip = True
        elif not arg.startswith("--devices="):
            argv.append(arg)
    return argv + ([f"train.devices={devices}"] if devices else [])


@app.command("eval")
def evaluate(
    checkpoint: str = typer.Argument(..., help="checkpoint file (or a run directory)"),
    overrides: Optional[list[str]] = typer.Argument(None, help="config overrides, e.g. data.dataset.root=/data"),
    split: str = typer.Option("test", "--split", help="test or val"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N"),
    confusion: bool = typer.Option(False, "--confusion", help="also print the confusion matrix"),
    as_json: bool = typer.Option(False, "--json", help="print the results as JSON on stdout"),
    features: Optional[str] = typer.Option(None, "--features",
                                           help="GANs: a dlcli image classifier checkpoint for FD / IS / coverage"),
):
    """Evaluate a checkpoint on its dataset's test (or val) split."""

    def action():
        from dlcli.inference import evaluate_checkpoint
        from dlcli.report import print_eval

        if split not in ("test", "val"):
            raise ConfigError(f"--split: expected test or val (got {split!r})")
        result = evaluate_checkpoint(checkpoint, split, overrides or [], device, features)
        _emit_json(result) if as_json else print_eval(result, confusion)

    _run(action)


@app.command()
def infer(
    checkpoint: str = typer.Argument(..., help="checkpoint file (or a run directory)"),
    inputs: Optional[list[str]] = typer.Argument(None, help="images, folders, CSV/JSONL files, or a series CSV"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N"),
    top_k: Optional[int] = typer.Option(None, "--top-k", min=1,
                                        help="classes shown per input (default 3); generation: sample from "
                                             "the k likeliest"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="write predictions to .csv or .jsonl"),
    as_json: bool = typer.Option(False, "--json", help="print predictions as JSON on stdout"),
    text: Optional[list[str]] = typer.Option(None, "--text", help="a text to classify (repeatable)"),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="language models: the text to continue"),
    length: Optional[int] = typer.Option(None, "--length", min=1, max=1_000_000,
                                         help="language models: tokens to generate (default 200)"),
    temperature: Optional[float] = typer.Option(None, "--temperature", min=0.0, max=100.0,
                                                help="language models: sampling temperature (0 = always the "
                                                     "likeliest; default 1)"),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=2**32 - 1,
                                       help="language models and GANs: seed for repeatable output"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, max=100_000,
                                        help="forecasters: future steps to predict (default: the horizon)"),
    num: Optional[int] = typer.Option(None, "--num", min=1, max=100_000,
                                      help="GANs: how many images to generate (default 64)"),
    label: Optional[int] = typer.Option(None, "--class", min=0, help="conditional GANs: the class to generate"),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", help="GANs: write one PNG per image here"),
):
    """Predict for new inputs with a checkpoint's own preprocessing: classes, generated text or forecasts."""

    def action():
        from dlcli.inference import infer as run_infer
        from dlcli.paths import writable_folder, writable_output

        options = {"texts": text or [], "prompt": prompt, "length": length, "temperature": temperature,
                   "seed": seed, "steps": steps, "num": num, "label": label, "output": output, "output_dir": output_dir}
        if output and not output.endswith((".csv", ".jsonl", ".png")):
            raise ConfigError(f"--output: expected a .csv or .jsonl file name, or .png for a GAN (got {output!r})")
        if output:
            writable_output(output, "--output", reads=[checkpoint, *(inputs or [])])
        if output_dir:
            writable_folder(output_dir, "--output-dir")
        kind, result = run_infer(checkpoint, inputs or [], device, top_k, options)
        _show_inference(kind, result, output, as_json)

    _run(action)


def _show_inference(kind: str, result, output: str | None, as_json: bool) -> None:
    """Generated images are reported; predictions go to --output, JSON on stdout, or a table."""
    from dlcli.report import print_generation, print_labels, print_predictions, print_rows, write_predictions

    if kind == "images":
        files = result["files"]
        _emit_json(result) if as_json else typer.echo(
            f"wrote {result['images']} images: {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}", err=True)
        return
    if output:
        rows = [result] if kind == "generation" else result
        write_predictions(rows, output)
        typer.echo(f"wrote {len(rows)} rows to {output}", err=True)
    if as_json:
        _emit_json(result)
    elif not output:
        printers: dict[str, Callable[[Any], None]] = {"generation": print_generation, "forecast": print_rows,
                                                      "values": print_rows, "labels": print_labels}
        printers.get(kind, print_predictions)(result)


@app.command()
def validate(
    config: str = typer.Argument(..., help="YAML experiment file"),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
):
    """Check a config (and overrides) and print it resolved, defaults filled in."""

    def action():
        from dlcli.config import load
        from dlcli.config.yamlio import dump_yaml

        cfg = load(config, overrides or [])
        typer.echo(dump_yaml(cfg.model_dump(mode="json")), nl=False)

    _run(action)


# The workflow commands (export, sweep, runs, plot, init, schema, list) register on `app` there.
from dlcli import cli_tools  # noqa: E402,F401

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point; `--debug` anywhere shows tracebacks."""
    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
        DEBUG["on"] = True
    app()
