"""Command line: parse, call, map errors to exit codes. No logic and no torch import here.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config, 3 data missing or unreachable,
4 unreadable or unsafe checkpoint, 130 interrupted (Ctrl-C).
"""

import json
import sys
from typing import Optional

import typer

from dlcli.errors import ConfigError, DlcliError, Interrupted

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Train, evaluate and run PyTorch models from YAML experiment files.")
DEBUG = {"on": False}
OVERRIDES_HELP = "key.path=value overrides, values parsed as YAML (e.g. optimizer.lr=0.01 model.hidden=[256,128])"


def _fail(err: DlcliError) -> None:
    """Print a DlcliError as one line per problem (plus a hint) and exit with its code."""
    if DEBUG["on"]:
        raise err
    lines = getattr(err, "problems", None) or [str(err)]
    for line in lines:
        typer.echo(f"error: {line}", err=True)
    if err.hint:
        typer.echo(f"hint: {err.hint}", err=True)
    raise typer.Exit(err.exit_code)


def _run(action):
    try:
        return action()
    except DlcliError as err:
        _fail(err)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130)
    except BrokenPipeError:  # `dlcli list | head`: the reader left; nothing to report
        sys.stderr.close()
        raise typer.Exit(0)
    except MemoryError:
        _fail(DlcliError("out of memory", hint="lower data.batch_size or use a smaller model"))
    except typer.Exit:
        raise
    except Exception as err:  # a bug or an unforeseen failure: one line, traceback only with --debug
        if DEBUG["on"]:
            raise
        _fail(DlcliError(f"unexpected {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                         hint="rerun with --debug for the traceback"))


def _show_version(value: bool) -> None:
    if value:
        from dlcli import __version__

        typer.echo(f"dlcli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="print the dlcli version and exit")):
    """Train, evaluate and run PyTorch models from YAML experiment files."""


def _emit_json(data) -> None:
    typer.echo(json.dumps(data, indent=2))


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
        from dlcli.training import train as run_training

        extra = [f"train.devices={devices}"] if devices else []
        cfg = load(config, (overrides or []) + extra)  # every config error is reported once, before any launch
        if cfg.train.devices > 1 and "LOCAL_RANK" not in os.environ:
            code, received = distributed.launch(_worker_argv(devices), cfg.train.devices)
            if code != 0:
                raise distributed.launcher_error(code, received, cfg.train.devices)
            return
        main_rank = distributed.rank() == 0
        progress = Progress(cfg.train.epochs, quiet or not main_rank, None if main_rank else open(os.devnull, "w"))
        try:
            summary = run_training(cfg, output_dir, run_version, progress, resume, config)
        except Interrupted as err:
            if main_rank:
                raise
            raise typer.Exit(err.exit_code)  # rank 0 reports the stop; the other ranks leave quietly
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
                                        help="classes shown per input (default 3); generation: sample from the k likeliest"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="write predictions to .csv or .jsonl"),
    as_json: bool = typer.Option(False, "--json", help="print predictions as JSON on stdout"),
    text: Optional[list[str]] = typer.Option(None, "--text", help="a text to classify (repeatable)"),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="language models: the text to continue"),
    length: int = typer.Option(200, "--length", min=1, max=1_000_000, help="language models: tokens to generate"),
    temperature: float = typer.Option(1.0, "--temperature", min=0.0, max=100.0,
                                      help="language models: sampling temperature (0 = always the likeliest)"),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="language models: seed for repeatable text"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, max=100_000,
                                        help="forecasters: future steps to predict (default: the horizon)"),
    num: int = typer.Option(64, "--num", min=1, max=100_000, help="GANs: how many images to generate"),
    label: Optional[int] = typer.Option(None, "--class", min=0, help="conditional GANs: the class to generate"),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", help="GANs: write one PNG per image here"),
):
    """Predict for new inputs with a checkpoint's own preprocessing: classes, generated text or forecasts."""

    def action():
        from dlcli.inference import infer as run_infer
        from dlcli.report import print_forecast, print_generation, print_predictions, write_predictions

        options = {"texts": text or [], "prompt": prompt, "length": length, "temperature": temperature,
                   "seed": seed, "steps": steps, "num": num, "label": label, "output": output, "output_dir": output_dir}
        if output and not output.endswith((".csv", ".jsonl", ".png")):
            raise ConfigError(f"--output: expected a .csv or .jsonl file name, or .png for a GAN (got {output!r})")
        kind, result = run_infer(checkpoint, inputs or [], device, top_k, options)
        if kind == "images":
            _emit_json(result) if as_json else typer.echo(f"wrote {result['images']} images: "
                                                          f"{', '.join(result['files'][:3])}"
                                                          f"{' ...' if len(result['files']) > 3 else ''}", err=True)
            return
        rows = [result] if kind == "generation" else result
        if output:
            write_predictions(rows, output)
            typer.echo(f"wrote {len(rows)} rows to {output}", err=True)
        if as_json:
            _emit_json(result)
        elif not output:
            {"generation": print_generation, "forecast": print_forecast}.get(kind, print_predictions)(result)

    _run(action)


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


@app.command()
def export(
    checkpoint: str = typer.Argument(..., help="checkpoint file (or a run directory)"),
    fmt: str = typer.Option(..., "--format", help="onnx, torchscript or safetensors"),
    output: str = typer.Option(..., "--output", "-o", help="file to write"),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="largest allowed output difference"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
):
    """Export the model and check the exported file numerically against PyTorch."""

    def action():
        from dlcli.export import export as run_export

        result = run_export(checkpoint, fmt, output, tolerance)
        if as_json:
            _emit_json(result)
        else:
            typer.echo(f"wrote {result['output']} ({fmt}); max abs difference on a sample batch "
                       f"{result['max_abs_diff']:.3g} (tolerance {tolerance:g})")

    _run(action)


@app.command()
def sweep(
    config: str = typer.Argument(..., help="YAML experiment file"),
    axes: list[str] = typer.Argument(..., help="key=v1,v2,... per swept key (commas inside [] stay), "
                                               "or a plain key=value fixed for every run"),
    random_draws: Optional[int] = typer.Option(None, "--random", min=1, help="N random picks from the grid"),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="repeat each point with seed=0..K-1"),
    metric: Optional[str] = typer.Option(None, "--metric", help="sort by this metric (default: train.monitor)"),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", help="root for runs"),
    print_commands: bool = typer.Option(False, "--print-commands", help="print one `dlcli train` command "
                                        "per run (for job arrays / GNU parallel) instead of running"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="plain log lines instead of progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print the result rows as JSON on stdout"),
    sweep_seed: int = typer.Option(0, "--sweep-seed", help="seed for --random"),
):
    """Run a grid (or random draws) of overrides; ends with a sorted table and sweep-*.csv."""

    def action():
        import shlex

        from dlcli.progress import Progress
        from dlcli.report import print_sweep
        from dlcli.sweep import expand, run_sweep

        combos = expand(axes, random_draws, seeds, sweep_seed)
        if print_commands:
            extra = f" --output-dir {shlex.quote(output_dir)}" if output_dir else ""
            for overrides in combos:
                typer.echo(f"dlcli train {shlex.quote(config)} {' '.join(map(shlex.quote, overrides))}{extra}")
            return
        rows, csv_path, sorted_by = run_sweep(config, combos, metric, output_dir,
                                              lambda cfg: Progress(cfg.train.epochs, quiet))
        _emit_json(rows) if as_json else print_sweep(rows, csv_path, sorted_by)
        failed = [r for r in rows if r["status"] != "finished"]
        if failed:
            raise DlcliError(f"{len(failed)} of {len(rows)} sweep runs failed (see the table and {csv_path})")

    _run(action)


@app.command()
def runs(
    directory: Optional[str] = typer.Argument(None, help="runs root (default: $DLCLI_RUNS_DIR, else runs/)"),
    as_json: bool = typer.Option(False, "--json", help="print the rows as JSON on stdout"),
):
    """Table of runs: name, version, status, best metric, epochs, time, device."""

    def action():
        import os

        from dlcli.report import print_runs
        from dlcli.run_table import collect_runs
        from dlcli.runs import runs_root

        root = runs_root(directory)
        if not os.path.isdir(root):
            raise ConfigError(f"runs folder not found: {root}")
        rows = collect_runs(root)
        _emit_json(rows) if as_json else print_runs(rows, root)

    _run(action)


@app.command()
def plot(
    run_dirs: list[str] = typer.Argument(..., help="run directories to compare"),
    metric: str = typer.Option("val/acc", "--metric", help="metric to plot per epoch"),
    output: str = typer.Option("curves.png", "--output", "-o", help="image file to write (.png, .pdf, .svg)"),
):
    """Plot one metric of several runs on one figure."""

    def action():
        from dlcli.plots import plot_runs

        if not output.endswith((".png", ".pdf", ".svg")):
            raise ConfigError(f"--output: expected a .png, .pdf or .svg file name (got {output!r})")
        plot_runs(run_dirs, metric, output)
        typer.echo(f"wrote {output}", err=True)

    _run(action)


@app.command()
def init(
    model: str = typer.Option("mlp", "--model", help="mlp, cnn or sequential"),
    dataset: str = typer.Option("digits", "--dataset", help="digits, mnist, fashion_mnist, cifar10, cifar100, "
                                                          "image_folder or csv"),
):
    """Print a commented starting config, e.g. dlcli init --model cnn --dataset cifar10 > my.yaml."""

    def action():
        from dlcli.init_config import starting_config

        typer.echo(starting_config(model, dataset), nl=False)

    _run(action)


@app.command()
def schema():
    """Print the JSON Schema of experiment files (for editor completion and checking)."""

    def action():
        from dlcli.config.jsonschema import config_schema

        _emit_json(config_schema())

    _run(action)


@app.command("list")
def list_components(kind: Optional[str] = typer.Argument(None, help="models, datasets, transforms, losses, "
                                                                     "optimizers, schedulers, callbacks")):
    """List registered components with their parameters and defaults."""

    def action():
        from dlcli.report import print_registry

        print_registry(kind)

    _run(action)


def main() -> None:
    """Console entry point; `--debug` anywhere shows tracebacks."""
    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
        DEBUG["on"] = True
    app()
