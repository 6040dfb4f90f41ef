"""Search spaces in overrides: parsing, every bad input named by its key (exit 2), and the config checked
at every axis's bounds before a sweep runs anything."""

import pytest
import yaml
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.errors import ConfigError
from dlcli.training.search_space import Axis, edge_points, grid_points, parse_space, split_values
from tests.conftest import tiny_digits_config


def test_split_values_keeps_brackets_together():
    assert split_values("0.1,0.01") == ["0.1", "0.01"]
    assert split_values("[128],[256,128]") == ["[128]", "[256,128]"]
    assert split_values("{steps: 5},'a,b'") == ["{steps: 5}", "'a,b'"]


def test_every_kind_of_axis_parses():
    axes, fixed = parse_space(["optimizer.lr=loguniform(1e-4, 1e-1)", "model.dropout=uniform(0,0.5)",
                               "train.accumulate=int(1,4)", "model.hidden=choice([128],[256,128])",
                               "data.batch_size=32,64", "train.epochs=3"], seeds=2)
    assert fixed == ["train.epochs=3"]
    assert axes == [Axis("optimizer.lr", "loguniform", (1e-4, 0.1)), Axis("model.dropout", "uniform", (0.0, 0.5)),
                    Axis("train.accumulate", "int", (1, 4)), Axis("model.hidden", "choice", ("[128]", "[256,128]")),
                    Axis("data.batch_size", "grid", ("32", "64")), Axis("seed", "grid", ("0", "1"))]
    assert axes[0].text(1.2345678901234567e-4) == "optimizer.lr=0.00012345678901234567"  # full precision
    assert axes[2].text(3) == "train.accumulate=3"


def test_bad_spaces_are_all_reported_naming_their_keys():
    with pytest.raises(ConfigError) as caught:
        parse_space(["optimizer.lr=loguniform(0,1)", "model.dropout=uniform(0.5,0.1)", "train.accumulate=int(1,x)",
                     "model.hidden=normal(1,2)", "a.b=uniform(1)", "c.d=choice(1,1)", "e.f=1,,2", "oops",
                     "g.h=uniform(0,inf)", "i.j=int(1.5,3)", "seed=1,2"], seeds=2)
    problems = caught.value.problems
    expected = ["optimizer.lr: loguniform(0,1): bounds must be above 0",
                "model.dropout: uniform(0.5,0.1): the low bound must be below the high one",
                "train.accumulate: int(...): 'x' is not an integer",
                "model.hidden: unknown search space normal(...)",
                "a.b: uniform(1): expected two bounds",
                "c.d: choice(1,1): a choice is repeated",
                "e.f: empty value in the list '1,,2'",
                "sweep axis 'oops': expected key=v1,v2",
                "g.h: uniform(...): 'inf' is not a finite number",
                "i.j: int(...): '1.5' is not an integer",
                "sweep axis 'seed=1,2': seed is already swept by --seeds"]
    assert len(problems) == len(expected)
    for line, start in zip(problems, expected):
        assert line.startswith(start), (line, start)


def test_edge_points_cover_every_bound_and_stay_small():
    axes, _ = parse_space(["a=uniform(0,1)", "b=x,y,z"])
    assert sorted(map(tuple, edge_points(axes))) == sorted(
        (f"a={lo}", f"b={v}") for lo in (0.0, 1.0) for v in "xyz")
    many, _ = parse_space([f"k{i}=1,2,3" for i in range(6)])  # 729 combinations: one axis at a time
    points = edge_points(many)
    assert len(points) == 1 + 6 * 2 and all(len(p) == 6 for p in points)
    assert len(grid_points(many)) == 729


@pytest.fixture
def tiny(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config()))
    return cfg


@pytest.mark.parametrize("words, message", [
    (["train.accumulate=int(0,4)", "--trials", "2"], "train.accumulate"),              # the low bound is invalid
    (["model.dropout=uniform(0.1,1.5)", "--trials", "2"], "model.dropout"),            # the high bound is invalid
    (["optimizer.lr=choice(0.1,-1)"], "optimizer.lr"),                   # one choice is invalid
    (["optimizer.lr=loguniform(-1,1)"], "optimizer.lr: loguniform(-1,1): bounds must be above 0"),
    (["model.dropout=uniform(0,0.5)", "--sampler", "grid"], "--sampler grid: model.dropout: uniform(0.0, 0.5) has no grid"),
    (["optimizer.lr=uniform(0.1,0.2)"] + ["--sampler", "random"], "--sampler random needs --trials N"),
    (["optimizer.lr=0.1,0.01", "--random", "3"], "--random was replaced: use --sampler random --trials 3"),
    (["optimizer.lr=0.1,0.01", "--sampler", "bayes"], "--sampler: unknown sampler 'bayes'"),
    (["optimizer.lr=0.1,0.01", "--pruner", "asha"], "--pruner: unknown pruner 'asha'"),
    (["optimizer.lr=0.1,0.01", "--trials", "3"], "--trials 3: the grid has only 2 points"),
    (["optimizer.lr=0.1,0.01", "--metric", "val/nope"], "--metric: unknown metric 'val/nope'"),
    (["optimizer.lr=0.1,0.01", "--storage", "nowhere.db"], "--storage 'nowhere.db': expected journal:PATH"),
    (["optimizer.lr=0.1,0.01", "--storage", "journal:/no/such/dir/j.log"], "the folder of the journal file must exist"),
    (["optimizer.lr=0.1,0.01", "--study", "a/b"], "--study: 'a/b' must be a plain name"),
])
def test_a_bad_sweep_stops_before_anything_runs(tiny, tmp_path, words, message):
    result = CliRunner().invoke(app, ["sweep", str(tiny), *words, "--output-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_print_commands_lists_the_grid_and_refuses_other_samplers(tiny):
    printed = CliRunner().invoke(app, ["sweep", str(tiny), "optimizer.lr=0.1,0.01", "--print-commands"])
    assert printed.exit_code == 0
    assert printed.stdout.splitlines() == [f"dlcli train {tiny} optimizer.lr=0.1", f"dlcli train {tiny} optimizer.lr=0.01"]
    bad = CliRunner().invoke(app, ["sweep", str(tiny), "optimizer.lr=0.1,-1", "--print-commands"])
    assert bad.exit_code == 2 and "optimizer.lr" in bad.stderr and not bad.stdout
    tpe = CliRunner().invoke(app, ["sweep", str(tiny), "optimizer.lr=uniform(0.01,0.1)", "--trials", "2",
                                   "--print-commands"])
    assert tpe.exit_code == 2 and "--print-commands lists grid points" in tpe.stderr


def test_without_optuna_the_sweep_names_the_extra(tiny, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    result = CliRunner().invoke(app, ["sweep", str(tiny), "optimizer.lr=0.1,0.01", "--output-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "pip install 'dlcli[search]'" in result.stderr
    assert not (tmp_path / "r").exists()


def test_a_journal_storage_that_is_a_folder_is_a_usage_error(tmp_path):
    from dlcli.training.study import storage

    with pytest.raises(ConfigError, match="is not a file"):
        storage(f"journal:{tmp_path}")
