"""Human-facing output: rich tables for summaries, eval results, predictions and registries."""

import csv
import json
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dlcli.cli.progress import number

# Piped output (batch jobs, logs) gets a wide fixed width instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 160)


def print_train_summary(summary: dict, speed: str = "") -> None:
    """The end-of-run table; `speed`: the last epoch's training speed in the task's unit (tokens/s...)."""
    table = Table(title=f"{summary['name']}: {summary['status']}", show_header=False)
    table.add_row("run directory", summary["run_dir"])
    table.add_row("epochs / steps", f"{summary['epochs']} / {summary['steps']}")
    table.add_row("time", f"{summary['seconds']:.1f} s on {summary['device']} ({summary['precision']})")
    if speed:
        table.add_row("speed (last epoch)", speed)
    best = summary["best"]
    if best["value"] is not None:
        table.add_row(f"best {summary['monitor']}", f"{number(best['value'])} (epoch {best['epoch']})")
    for key, value in summary["final"].items():
        table.add_row(f"final {key}", f"{value:.4g}" if key == "lr" else number(value))
    table.add_row("best checkpoint", str(summary["checkpoints"]["best"]))
    if summary.get("skipped_images"):
        table.add_row("skipped images", f"{len(summary['skipped_images'])} unreadable (data.skip_bad_images)")
    out.print(table)


def print_sweep(rows: list[dict], csv_path, metric: str) -> None:
    table = Table(title=f"sweep: {len(rows)} trials, sorted by {metric} (also in {csv_path})")
    for col in ("trial", "overrides", "status", metric, "epochs", "run directory / error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        value = number(r[metric]) if isinstance(r[metric], (int, float)) else "-"
        table.add_row(str(r["trial"]), escape(r["overrides"]), r["status"], value, str(r.get("epochs") or "-"),
                      escape(r["error"] or r["run_dir"] or ""))
    out.print(table)


def print_runs(rows: list[dict], root: str) -> None:
    if not rows:
        out.print(f"no runs under {root}")
        return
    table = Table(title=f"runs under {root}")
    for col in ("name", "version", "status", "best", "epochs", "time", "device"):
        table.add_column(col, justify="right" if col in ("best", "epochs", "time") else "left")
    for r in rows:
        best = f"{r['monitor']} {number(r['best'])}" if isinstance(r["best"], (int, float)) else "-"
        time_s = f"{r['seconds']:.0f}s" if isinstance(r["seconds"], (int, float)) else "-"
        table.add_row(escape(r["name"]), escape(r["version"]), r["status"] or "-", best, str(r["epochs"]),
                      time_s, r["device"] or "-")
    out.print(table)


def print_tracked_runs(rows: list[dict], uri: str) -> None:
    import datetime

    if not rows:
        out.print(f"no MLflow runs in {uri}")
        return
    table = Table(title=f"MLflow runs in {uri}")
    for col in ("run id", "experiment", "name", "status", "epochs", "started", "run directory"):
        table.add_column(col, overflow="fold")
    for r in rows:
        started = datetime.datetime.fromtimestamp(r["started"] / 1000).strftime("%Y-%m-%d %H:%M") \
            if r["started"] else "-"
        status = r["status"] + (f" ({r['dlcli_status']})" if r["dlcli_status"] not in (None, "finished") else "")
        table.add_row(r["run_id"], escape(r["experiment"]), escape(r["name"] or "-"), status,
                      str(int(r["epochs"])) if r["epochs"] is not None else "-", started, escape(r["run_dir"] or ""))
    out.print(table)


def print_eval(result: dict, confusion: bool) -> None:
    unit = result.get("unit", "samples")
    out.print(f"{result['split']} split: {result['samples']} {unit}, checkpoint from epoch {result['epoch']}")
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result["metrics"].items():
        table.add_row(key, number(value))
    out.print(table)
    if result.get("unknown_categories"):
        counts = ", ".join(f"{column}: {n}" for column, n in result["unknown_categories"].items())
        out.print(f"values not seen in training (read as unknown), per column: {counts}")
    if result.get("skipped_images"):
        names = result["skipped_images"]
        out.print(f"left out: {len(names)} unreadable image(s) (data.skip_bad_images): {', '.join(names[:3])}"
                  + (", ..." if len(names) > 3 else ""))
    if "samples_grid" in result:
        out.print(f"sample grid: {result['samples_grid']}")
    if confusion and "confusion" in result:
        names = result["class_names"]
        matrix = Table(title="confusion matrix (rows: true, columns: predicted)")
        matrix.add_column("")
        for name in names:
            matrix.add_column(name, justify="right")
        for name, row in zip(names, result["confusion"]):
            matrix.add_row(name, *[str(v) for v in row])
        out.print(matrix)


def shown(text) -> str:
    """A table cell: rich markup escaped, and the bytes of a name that is not UTF-8 (os.fsdecode
    gave them as lone surrogates, which a strict stdout cannot encode) shown as \\xNN."""
    raw = str(text).encode("utf-8", "surrogateescape")
    return escape(raw.decode("utf-8", "backslashreplace"))


def print_predictions(rows: list[dict]) -> None:
    table = Table()
    for col in ("input", "class", "probability", "top-k"):
        table.add_column(col, justify="right" if col == "probability" else "left", overflow="fold")
    for row in rows:
        top = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in row["top_k"])
        table.add_row(shown(row["input"]), shown(row["class"]), f"{row['probability']:.4f}", shown(top))
    out.print(table)


def print_generation(result: dict) -> None:
    if result["unknown_prompt_tokens"]:
        print(f"note: prompt tokens not in the vocabulary (read as <unk>): {result['unknown_prompt_tokens']}",
              file=sys.stderr)
    if result.get("prompt_cut"):
        print(f"note: the prompt is longer than the model's context; its first {result['prompt_cut']} tokens "
              "were left out", file=sys.stderr)
    texts = [s["text"] for s in result.get("samples", [result])]
    sys.stdout.write("\n---\n".join(texts) + "\n")  # plain text, ready to pipe; samples between --- lines


def flat(row: dict) -> dict:
    """A prediction as one level of columns: a list is ';'-joined, a dict's entries are columns of
    their own (a multilabel row's probability per label)."""
    columns: dict = {}
    for key, value in row.items():
        if isinstance(value, dict):
            columns.update(value)
        else:
            columns[key] = ";".join(map(str, value)) if isinstance(value, list) else value
    return columns


def print_rows(rows: list[dict]) -> None:
    """Predictions other than classes (values, forecasts, label sets), one column per field."""
    rows = [flat(row) for row in rows]
    table = Table()
    for col in rows[0]:
        table.add_column(shown(col), justify="right")
    for row in rows:
        table.add_row(*[shown(v) for v in row.values()])
    out.print(table)


def write_predictions(rows: list[dict], path: str) -> None:
    """Write .jsonl or .csv through a temporary renamed into place: a failure partway leaves an
    existing file as it was. Text is UTF-8; a file name that is not (os.fsdecode gave it lone
    surrogates) keeps its bytes in CSV (surrogateescape) and is \\udcXX-escaped in JSON."""
    from dlcli.runs.paths import replaced_atomically

    with replaced_atomically(path) as tmp, open(tmp, "w", encoding="utf-8", errors="surrogateescape",
                                                newline="") as handle:
        if path.endswith(".jsonl"):
            handle.writelines(json.dumps(row) + "\n" for row in rows)
        else:
            _write_csv(rows, handle)


def _write_csv(rows: list[dict], handle) -> None:
    writer = csv.writer(handle)
    extra = ["unseen"] if "unseen" in rows[0] else []
    if "top_k" not in rows[0]:  # anything but classes (values, label sets, generated text): one column per field
        rows = [flat(row) for row in rows]
        dict_writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        dict_writer.writeheader()
        dict_writer.writerows(rows)
    else:
        writer.writerow(["input", "class", "probability", "top_k", *extra])
        for row in rows:
            top = ";".join(f"{t['class']}:{t['probability']}" for t in row["top_k"])
            writer.writerow([row["input"], row["class"], row["probability"], top, *[row[e] for e in extra]])


EXTRA_KINDS = {
    "activations": "relu, leaky_relu, gelu, sigmoid, tanh, softmax, identity (model `activation:`)",
    "inits": "default, normal (init_mean, init_std), uniform (+-init_std), xavier, kaiming; zero_bias",
}


def print_tasks() -> None:
    from dlcli.tasks import TASKS

    table = Table(title="tasks")
    for col in ("name", "what", "reads", "losses (default first)", "metrics (val/*)"):
        table.add_column(col)
    for name, task in TASKS.items():
        losses = [task.default_loss, *(loss for loss in task.losses if loss != task.default_loss)]
        table.add_row(name, escape(task.summary), ", ".join(task.reads), ", ".join(losses),
                      ", ".join(task.metrics_class.names("val")))
    out.print(table)


def _used_by(kind: str, name: str, tags: tuple[str, ...]) -> str:
    """The tasks a dataset, loss or model serves (the tasks say which), then what its tags say it is."""
    from dlcli.tasks import TASKS

    served = {"datasets": lambda task: task.reads_dataset(name), "losses": lambda task: name in task.losses,
              "models": lambda task: name in task.models}.get(kind, lambda task: False)
    return ", ".join([task for task, cls in TASKS.items() if served(cls)] + list(tags)) or "-"


def print_registry(kind: str | None) -> None:
    from dlcli.config.load import registries
    from dlcli.errors import ConfigError
    from dlcli.registry import did_you_mean

    regs = registries()
    kinds = ["tasks", *regs, *EXTRA_KINDS]
    if kind == "tasks" or kind is None:
        print_tasks()
    if kind is not None and kind not in kinds:
        raise ConfigError(f"unknown kind {kind!r}{did_you_mean(kind, kinds)}; available: {', '.join(kinds)}")
    for name in [kind] if kind and kind != "tasks" else ([] if kind else list(regs)):
        if name in EXTRA_KINDS:
            out.print(f"[bold]{name}[/bold]: {EXTRA_KINDS[name]}")
            continue
        registry = regs[name]
        table = Table(title=name, show_lines=False)
        for col in ("name", "for", "description", "parameters (default)"):
            table.add_column(col)
        for entry in registry.names():
            params = ", ".join(f"{p}={d}" for p, _, d in registry.describe(entry))
            table.add_row(escape(entry), escape(_used_by(name, entry, registry.tags(entry))),
                          escape(registry.summary(entry)), escape(params))
        out.print(table)
    if kind is None:
        for name, text in EXTRA_KINDS.items():
            out.print(f"[bold]{name}[/bold]: {text}")
