"""What a sweep leaves in runs/<name>/sweep-<study>/: trials.csv (every trial of the study, from every
worker, sorted by the metric), best.yaml (the best trial's resolved config, ready to train) and Optuna's
plots (history.png, importances.png) when matplotlib can draw them. Each file is replaced atomically, so
workers that finish together never leave a half-written one."""

import csv
import io
import warnings
from pathlib import Path

from dlcli.errors import first_line
from dlcli.runs.paths import replaced_atomically

ORDER = {"finished": 0, "pruned": 1}


def rows(study, metric: str, direction: str) -> list[dict]:
    """One row per trial (never-run `skipped` ones left out): finished by the metric, best first, then
    pruned ones by the value they were pruned at, then the rest by trial number."""
    found = []
    for t in study.get_trials(deepcopy=False):
        status = t.user_attrs.get("dlcli_status") or t.state.name.lower()
        if status == "skipped":
            continue
        point = t.user_attrs.get("point") or [f"{k}={v}" for k, v in t.params.items()]
        found.append({"trial": t.number, "overrides": " ".join(point), "point": point,
                      "status": status, metric: t.user_attrs.get("value"), "epochs": t.user_attrs.get("epochs"),
                      "run_dir": t.user_attrs.get("run_dir"), "error": t.user_attrs.get("error")})
    sign = -1 if direction == "maximize" else 1
    return sorted(found, key=lambda r: (ORDER.get(r["status"], 2),
                                        sign * r[metric] if ORDER.get(r["status"], 2) < 2 and r[metric] is not None
                                        else r["trial"]))


def public(found: list[dict]) -> list[dict]:
    """The rows as the CSV and --json show them (the override list is for best.yaml)."""
    return [{k: v for k, v in r.items() if k != "point"} for r in found]


def best_row(found: list[dict], metric: str) -> dict | None:
    return next((r for r in found if r["status"] == "finished" and r[metric] is not None), None)


def write_csv(found: list[dict], path: Path) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(public(found)[0]) if found else ["trial"])
    writer.writeheader()
    writer.writerows(public(found))
    with replaced_atomically(path) as tmp:
        tmp.write_text(text.getvalue(), newline="")


def write_best(found: list[dict], config_path: str, fixed: list[str], metric: str, path: Path) -> Path | None:
    """The best finished trial's resolved config as a YAML file `dlcli train` runs as it is."""
    from dlcli.config import load
    from dlcli.config.yamlio import dump_yaml

    best = best_row(found, metric)
    if best is None:
        return None
    config = load(config_path, fixed + best["point"])
    header = (f"# best trial {best['trial']} of the sweep: {metric} = {best[metric]:.6g}\n"
              f"# overrides: {best['overrides']}\n# run: dlcli train {path}\n")
    with replaced_atomically(path) as tmp:
        tmp.write_text(header + dump_yaml(config.model_dump(mode="json")))
    return path


def write_plots(study, folder: Path) -> list[str]:
    """Optuna's optimization history and parameter importances as PNGs; returns notes for what could not
    be drawn (too few finished trials, one value only), never an error: the sweep's results stand."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    notes = []
    for name, draw in (("history.png", plots.plot_optimization_history),
                       ("importances.png", plots.plot_param_importances)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                draw(study)
            figure = plt.gcf()  # the figure Optuna just drew on
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            with replaced_atomically(folder / name) as tmp:
                figure.savefig(tmp, format="png", dpi=100)
            plt.close(figure)
        except Exception as err:  # noqa: BLE001  a plot is a bonus; its failure is a note
            notes.append(f"no {name}: {first_line(err, type(err).__name__)}")
            plt.close("all")
    return notes
