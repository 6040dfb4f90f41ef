"""The command line end to end: real `python -m dlcli` subprocesses through `run_cli`.

Each subprocess that trains, evaluates or infers pays for a torch import (~10 s), so they are few;
the many small bad-config cases run in-process through typer's CliRunner, which calls the same
command functions and exit-code mapping.
"""

import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO, tiny_digits_config

WIDE = {"COLUMNS": "250"}  # rich wraps tables to the terminal width; keep rows on one line
DIGITS = REPO / "examples" / "digits"
DIGITS_TEST_SAMPLES = 360  # 20% of scikit-learn's 1,797 digits, the fixed test split


def assert_clean_error(stderr: str, code: int, expected: int = 2) -> None:
    """Exit code, one `error:` line per problem, never a traceback."""
    assert code == expected, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.startswith("error: "), stderr


def table_rows(text: str) -> list[list[str]]:
    """Cells of each body row of a rich table (box-drawing column separators)."""
    return [[cell.strip() for cell in line.strip("│ \n").split("│")] for line in text.splitlines()
            if line.startswith("│")]


# ---------------------------------------------------------------- the shipped quickstart


def test_quickstart_trains_then_eval_and_infer_in_fresh_processes(run_cli, tmp_path):
    runs = tmp_path / "runs"
    result = run_cli("train", REPO / "configs" / "quickstart.yaml", "--output-dir", runs, "--quiet")
    assert result.returncode == 0, result.stderr
    run_dir = runs / "quickstart" / "v1"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["error"] is None
    assert summary["monitor"] == "val/acc"
    assert summary["best"]["value"] >= 0.90, summary
    assert summary["final"]["val/acc"] >= 0.90, summary
    best = run_dir / "checkpoints" / "best.pt"
    assert best.is_file() and summary["checkpoints"]["best"] == str(best)
    assert (run_dir / "config.yaml").is_file() and (run_dir / "curves.png").is_file()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert {r["event"] for r in records} == {"step", "epoch"}
    assert [e["epoch"] for e in epochs] == list(range(1, summary["epochs"] + 1))

    # eval, from the checkpoint alone
    result = run_cli("eval", best, "--json")
    assert result.returncode == 0, result.stderr
    evaluation = json.loads(result.stdout)
    assert evaluation["split"] == "test" and evaluation["samples"] == DIGITS_TEST_SAMPLES
    assert set(evaluation["metrics"]) == {"loss", "acc", "f1", "top5"}
    assert evaluation["metrics"]["acc"] >= 0.90
    assert evaluation["metrics"]["acc"] <= evaluation["metrics"]["top5"] <= 1.0
    assert evaluation["class_names"] == [str(d) for d in range(10)]
    confusion = evaluation["confusion"]
    assert sum(map(sum, confusion)) == DIGITS_TEST_SAMPLES
    assert sum(confusion[i][i] for i in range(10)) / DIGITS_TEST_SAMPLES == pytest.approx(evaluation["metrics"]["acc"])

    # infer: a table with one row (one class) per image
    result = run_cli("infer", best, DIGITS, "--top-k", "3", env=WIDE)
    assert result.returncode == 0, result.stderr
    rows = {row[0]: row for row in table_rows(result.stdout) if row[0].endswith(".png")}
    assert sorted(rows) == sorted(str(p) for p in DIGITS.glob("*.png")) and len(rows) == 10
    correct = 0
    for name, (_, cls, probability, top) in rows.items():
        assert cls in evaluation["class_names"]
        assert 0.0 <= float(probability) <= 1.0
        assert top.startswith(f"{cls} ") and top.count(",") == 2  # top-3, best first
        correct += cls == name[-5]  # examples/digits/digit_<d>.png
    assert correct >= 8, result.stdout

    # infer --output preds.csv (and --json on stdout): the same predictions in both
    out = tmp_path / "preds.csv"
    result = run_cli("infer", best, DIGITS, "--output", out, "--json", "--top-k", "2")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    with open(out, newline="") as handle:
        written = list(csv.DictReader(handle))
    assert len(printed) == len(written) == 10
    assert list(written[0]) == ["input", "class", "probability", "top_k"]
    for p, w in zip(printed, written):
        assert w["input"] == p["input"] and w["class"] == p["class"]
        assert float(w["probability"]) == pytest.approx(p["probability"])
        assert len(p["top_k"]) == 2 and p["top_k"][0]["class"] == p["class"]
        assert p["top_k"][0]["probability"] >= p["top_k"][1]["probability"]
        assert w["top_k"].split(";")[0].split(":")[0] == p["class"]
        assert rows[p["input"]][1] == p["class"]  # the same model and preprocessing as the table run


def test_print_eval_shows_each_metric(capsys):
    from dlcli.cli.report import print_eval

    result = {"split": "test", "samples": 4, "epoch": 3, "class_names": ["a", "b"], "confusion": [[2, 0], [1, 1]],
              "metrics": {"loss": 0.5, "acc": 0.75, "f1": 0.7333}}
    print_eval(result, confusion=True)
    text = capsys.readouterr().out
    cells = {row[0]: row[1:] for row in table_rows(text)}
    assert cells["acc"] == ["0.7500"] and cells["loss"] == ["0.5000"] and cells["f1"] == ["0.7333"]
    assert cells["a"] == ["2", "0"] and cells["b"] == ["1", "1"]
    assert "test split: 4 samples, checkpoint from epoch 3" in " ".join(text.split())  # the heading line


# ---------------------------------------------------------------- bad configs

BROKEN = textwrap.dedent("""\
    name: broken
    seed: 0
    data:
      dataset: {name: digits}
      batch_size: many
    model: {name: mlpp, hidden: [32]}
    optimizer: {name: sgd, lr: -0.1}
    train:
      epochs: 2
      device: cpu
      epochz: 3
    """)


def test_bad_config_reports_every_problem_at_once(run_cli, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(BROKEN)
    result = run_cli("train", cfg)  # output.dir defaults to ./runs, i.e. under tmp_path
    assert_clean_error(result.stderr, result.returncode)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    by_key = {line.split()[1].rstrip(":"): line for line in lines}
    assert set(by_key) == {"data.batch_size", "model.name", "optimizer.lr", "train.epochz"}, result.stderr
    assert "'many'" in by_key["data.batch_size"] and by_key["data.batch_size"].endswith("[" + str(cfg) + ":5]")
    assert "did you mean 'mlp'" in by_key["model.name"] and by_key["model.name"].endswith(":6]")
    assert "-0.1" in by_key["optimizer.lr"] and by_key["optimizer.lr"].endswith(":7]")
    assert "did you mean 'epochs'" in by_key["train.epochz"] and by_key["train.epochz"].endswith(":11]")
    assert result.stdout == ""
    assert not (tmp_path / "runs").exists()


def _config_text(**changes) -> str:
    config = tiny_digits_config()
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return yaml.safe_dump(config, sort_keys=False)


BAD_CASES = {
    "unknown optimizer": (_config_text(optimizer={"name": "adamm", "lr": 0.01}), [],
                          ["optimizer.name", "unknown optimizer 'adamm'", "did you mean 'adam'"]),
    "unknown model": (_config_text(model={"name": "resnet9000"}), [], ["model.name", "'resnet9000'", "available:"]),
    "unknown nested key": (_config_text(data__dataset={"name": "digits", "test_fractoin": 0.3}), [],
                           ["data.dataset.test_fractoin", "did you mean 'test_fraction'"]),
    "unknown top-level key": (_config_text(optimiser={"name": "sgd"}), [], ["optimiser", "did you mean 'optimizer'"]),
    "wrong type": (_config_text(train__epochs="ten"), [], ["train.epochs", "'ten'"]),
    "negative lr": (_config_text(optimizer={"name": "adam", "lr": -0.01}), [], ["optimizer.lr", "greater than 0"]),
    "negative lr override": (_config_text(), ["optimizer.lr=-1"], ["optimizer.lr", "greater than 0"]),
    "unknown key by override": (_config_text(), ["optimizer.lrr=0.1"], ["optimizer.lrr", "did you mean 'lr'"]),
    "override without =": (_config_text(), ["optimizer.lr"], ["override 'optimizer.lr'", "key.path=value"]),
    "override with empty key part": (_config_text(), ["optimizer..lr=1"], ["optimizer..lr", "key.path=value"]),
    "override with malformed YAML value": (_config_text(), ["model.hidden=[32"], ["model.hidden", "invalid YAML"]),
    "malformed YAML": ("name: x\ndata: {dataset: [\n", [], ["cfg.yaml:3", "invalid YAML"]),
    "duplicate key": ("name: x\nseed: 1\nseed: 2\n", [], ["cfg.yaml", "duplicate key 'seed'"]),
    "missing config file": (None, [], ["config file not found", "cfg.yaml"]),
}


@pytest.mark.parametrize("text, overrides, expected", list(BAD_CASES.values()), ids=list(BAD_CASES))
def test_bad_config_exit_2_names_the_key(tmp_path, monkeypatch, text, overrides, expected):
    from dlcli.cli import app

    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "cfg.yaml"
    if text is not None:
        cfg.write_text(text)
    result = CliRunner().invoke(app, ["train", str(cfg), *overrides, "--output-dir", str(tmp_path / "out")])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert_clean_error(result.stderr, result.exit_code)
    for part in expected:
        assert part in result.stderr, result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("crop, expected", [
    ({"size": 6}, "data.train_transforms give 1x6x6 images but data.eval_transforms give 1x8x8"),
    ({"size": 12, "padding": 1}, "data.train_transforms: random_crop: size 12x12 is larger than the 10x10 image"),
], ids=["smaller", "larger-than-padded"])
def test_train_transforms_that_change_the_image_size_fail_before_anything_is_written(tmp_path, monkeypatch,
                                                                                     crop, expected):
    from dlcli.cli import app

    monkeypatch.chdir(tmp_path)
    config = tiny_digits_config()
    config["data"]["train_transforms"] = [{"random_crop": crop}, {"normalize": "digits"}]
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["train", str(cfg), "--output-dir", str(tmp_path / "out")])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert_clean_error(result.stderr, result.exit_code, 3)
    assert expected in result.stderr.splitlines()[0], result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, expected", [
    (["eval", "some.pt", "--split", "train"], "--split"),
    (["infer", "some.pt", "image.png", "--output", "preds.txt"], "--output"),
], ids=["eval --split train", "infer --output .txt"])
def test_bad_option_value_is_usage_error_exit_2(tmp_path, monkeypatch, args, expected):
    """The module's contract: 2 = bad usage or config (checked before any checkpoint is read)."""
    from dlcli.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert_clean_error(result.stderr, result.exit_code, 2)
    assert expected in result.stderr
    assert not (tmp_path / "preds.txt").exists()


def test_validate_prints_resolved_yaml_with_override_and_defaults(run_cli, write_config, tmp_path):
    cfg = write_config(tiny_digits_config())
    result = run_cli("validate", cfg, "optimizer.lr=0.5", "model.hidden=[16,8]")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["optimizer"] == {"name": "adam", "lr": 0.5, "betas": [0.9, 0.999], "eps": 1e-8,
                                     "weight_decay": 0.0, "amsgrad": False, "decay_norm_and_bias": False,
                                     "param_groups": []}
    assert resolved["model"]["hidden"] == [16, 8] and resolved["model"]["activation"] == "relu"
    assert resolved["loss"] == {"name": "cross_entropy", "label_smoothing": 0.0}
    assert resolved["data"]["dataset"] == {"name": "digits", "test_fraction": 0.2}
    assert resolved["data"]["train_transforms"] == [{"name": "normalize", "preset": "digits", "mean": None, "std": None}]
    assert resolved["train"]["epochs"] == 2 and resolved["train"]["precision"] == "auto"
    assert resolved["output"] == {"dir": "runs", "save_best": True}
    assert not (tmp_path / "runs").exists()  # validate writes nothing


# ---------------------------------------------------------------- dlcli list


def test_list_everything(run_cli):
    result = run_cli("list", env=WIDE)
    assert result.returncode == 0, result.stderr
    rows = {row[0]: row for row in table_rows(result.stdout)}
    for kind in ("models", "datasets", "transforms", "losses", "optimizers", "schedulers", "callbacks"):
        assert kind in result.stdout
    for name in ("mlp", "cnn", "sequential", "digits", "mnist", "cifar10", "image_folder", "csv", "normalize",
                 "cross_entropy", "adam", "sgd", "cosine", "early_stopping"):
        assert name in rows, name
    assert "hidden=[128]" in rows["mlp"][3]
    assert "lr=0.001" in rows["adam"][3]
    assert "root=required" in rows["image_folder"][3] and "download=True" in rows["mnist"][3]
    assert "activations" in result.stdout and "inits" in result.stdout
    # what each is for: the tasks that read a dataset or take a loss, then its tags; and the tasks themselves
    assert rows["csv"][1].startswith("classification, multilabel, regression")
    assert rows["mse"][1] == "classification, forecasting, regression" and rows["lstm"][1] == "recurrent, reads_tokens"
    assert rows["regression"][2] == "tabular" and rows["regression"][3].startswith("mse, l1")
    assert "r2" in rows["regression"][4]


def test_list_optimizers_only(run_cli):
    result = run_cli("list", "optimizers", env=WIDE)
    assert result.returncode == 0, result.stderr
    rows = {row[0]: row for row in table_rows(result.stdout)}
    assert set(rows) >= {"sgd", "nag", "adam", "adamw", "adamax", "adagrad", "adadelta", "rmsprop"}
    assert "lr=0.01" in rows["sgd"][3] and "momentum=0.0" in rows["sgd"][3]
    assert "weight_decay=0.01" in rows["adamw"][3]
    assert "mlp" not in rows and "cross_entropy" not in rows  # just the one kind


@pytest.mark.parametrize("kind, expected", [("nonsense", "available: tasks, models"), ("optimizerss", "did you mean 'optimizers'")])
def test_list_unknown_kind_exit_2(kind, expected):
    from dlcli.cli import app

    result = CliRunner().invoke(app, ["list", kind])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert_clean_error(result.stderr, result.exit_code)
    assert repr(kind) in result.stderr and expected in result.stderr


# ---------------------------------------------------------------- import weight


def test_cli_import_and_config_validation_do_not_import_torch(write_config, tmp_path):
    """`dlcli --help`, `validate` and every bad-config error stay fast: torch is imported lazily."""
    cnn = write_config({
        "name": "heavy", "data": {"dataset": {"name": "mnist", "download": False},
                                  "train_transforms": [{"random_crop": {"size": 28, "padding": 2}}, "horizontal_flip",
                                                       {"normalize": "mnist"}],
                                  "eval_transforms": [{"normalize": "mnist"}]},
        "model": {"name": "cnn", "channels": [8]}, "optimizer": {"name": "sgd", "momentum": 0.9},
        "scheduler": {"name": "onecycle"}, "callbacks": [{"name": "early_stopping"}],
        "loss": {"name": "cross_entropy", "label_smoothing": 0.1},
    }, "cnn.yaml")
    code = textwrap.dedent(f"""
        import json, sys
        import dlcli.cli
        from dlcli.config import load
        from dlcli.errors import ConfigError
        load({str(REPO / "configs" / "quickstart.yaml")!r})
        load({str(cnn)!r}, ["optimizer.lr=0.5"])
        try:
            load({str(cnn)!r}, ["model.name=nope"])
        except ConfigError:
            pass
        else:
            raise SystemExit("expected a ConfigError")
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))))
        """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize("preset, expected", [(None, "__all__"), ("", ""), ("logfire", "logfire")])
def test_cli_skips_pydantic_plugin_discovery_unless_the_user_chose(preset, expected):
    """Start-up: pydantic's plugin scan reads every installed package's entry points; dlcli turns it
    off for its own process, but an explicit PYDANTIC_DISABLE_PLUGINS (even empty) wins."""
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    if preset is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = preset
    code = "import os, dlcli.cli; print(repr(os.environ['PYDANTIC_DISABLE_PLUGINS']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**env, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(expected)


def test_train_json_summary_has_the_documented_keys(tmp_path, monkeypatch):
    import yaml
    from typer.testing import CliRunner

    from dlcli.cli import app
    from tests.conftest import tiny_digits_config

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config(train={"epochs": 1, "device": "cpu"})))
    result = CliRunner().invoke(app, ["train", str(cfg), "--output-dir", str(tmp_path / "runs"), "--json", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary) == {"status", "error", "name", "run_dir", "epochs", "steps", "skipped_batches", "seconds",
                            "device", "precision", "monitor", "best", "final", "checkpoints"}
    assert summary["status"] == "finished" and set(summary["checkpoints"]) == {"last", "best", "final"}


@pytest.mark.parametrize("args, code, error", [
    (["validate", "cfg.yaml", "optimizer.lr=-1"], 2, "error: optimizer.lr"),
    (["eval", "junk.pt"], 4, "error: "),
], ids=["config error", "checkpoint error"])
def test_debug_adds_the_traceback_and_keeps_the_exit_code(run_cli, write_config, tmp_path, args, code, error):
    write_config(tiny_digits_config())
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    plain = run_cli(*args)
    debug = run_cli(*args, "--debug")
    assert plain.returncode == debug.returncode == code, debug.stderr
    assert "Traceback" not in plain.stderr and "Traceback (most recent call last)" in debug.stderr
    assert error in debug.stderr


@pytest.mark.parametrize("extra, expected", [
    (["--resume", ""], "--resume: empty value"),  # an unset $VAR in a job script must not start afresh
    (["--resume", "auto", "--run-version", "v7"], "--run-version: a resumed run keeps its own folder"),
    (["data.class_weights=[1, 2]"], "data.class_weights: 2 weights for 10 classes"),
], ids=["empty-resume", "resume-with-version", "class-weights-count"])
def test_contradictory_or_empty_train_options_are_usage_errors(tmp_path, monkeypatch, extra, expected):
    from dlcli.cli import app

    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config()))
    result = CliRunner().invoke(app, ["train", str(cfg), *extra, "--output-dir", str(tmp_path / "out")])
    assert_clean_error(result.stderr, result.exit_code, 2)
    assert expected in result.stderr.splitlines()[0], result.stderr
    assert not (tmp_path / "out").exists()
