"""A GAN's sample quality while it trains (issue 16): `gan_eval: {features: CKPT, every: N}` logs
val/fd, val/inception_score and val/class_coverage, measured on the first `samples` validation
images against a fixed noise batch, every N epochs and at the last; `train.monitor` then defaults
to val/fd (mode min) and best.pt is the epoch with the lowest FD. Without gan_eval the monitor is
`last`: best.pt is the last epoch. The measurement draws from no global random stream, so a run
trains the same weights with or without it. Runs are tiny (gan_digits's MLPs, 2-3 epochs)."""

import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dlcli.cli.progress import Progress
from dlcli.config import load
from dlcli.errors import ConfigError
from dlcli.tasks.gan.quality import fit_to, frechet_distance, penultimate_features, sample_images
from dlcli.training import checkpoint
from dlcli.training.build import from_checkpoint
from dlcli.training.session import train
from tests.conftest import REPO, tiny_digits_config

GAN_DIGITS = str(REPO / "configs" / "gan_digits.yaml")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fit(config, root: Path) -> dict:
    return train(config, str(root), None, Progress(config.train.epochs, quiet=True, stream=io.StringIO()))


def gan_digits(*overrides: str):
    return load(GAN_DIGITS, ["train.device=cpu", "train.epochs=3", *overrides])


def events(run_dir) -> list[dict]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "epoch"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan_eval")
    clf = fit(load(str(REPO / "configs" / "quickstart.yaml"), ["train.epochs=4", "callbacks=[]"]), root)
    features = clf["checkpoints"]["best"]
    measured = fit(gan_digits(f"gan_eval={{features: {features}, every: 2, samples: 100}}"), root)
    plain = fit(gan_digits(), root)
    return SimpleNamespace(features=features, measured=measured, plain=plain, root=root)


def test_quality_is_logged_every_n_epochs_and_at_the_last(runs):
    logged = events(runs.measured["run_dir"])
    assert [e["epoch"] for e in logged] == [1, 2, 3]
    for event in logged:
        values = [float(event[f"val/{k}"]) for k in ("fd", "inception_score", "class_coverage")]
        assert all(math.isfinite(v) for v in values) == (event["epoch"] in (2, 3)), event  # else "nan"
    last = logged[-1]
    assert last["val/fd"] > 0 and 1 <= last["val/inception_score"] <= 10 and 0 < last["val/class_coverage"] <= 1


def test_the_monitor_defaults_to_val_fd_and_best_pt_is_the_lowest_fd(runs):
    summary = runs.measured
    assert summary["monitor"] == "val/fd"
    fds = {e["epoch"]: e["val/fd"] for e in events(summary["run_dir"]) if e["val/fd"] != "nan"}
    best_epoch = min(fds, key=fds.get)
    assert summary["best"] == {"value": pytest.approx(fds[best_epoch]), "epoch": best_epoch}
    assert checkpoint.load(summary["checkpoints"]["best"])["state"]["epoch"] == best_epoch


def test_the_logged_fd_is_the_fixed_sample_measured_by_hand(runs):
    """The last epoch's val/fd: the first 100 validation digits against 100 images from noise seed 0."""
    from dlcli.data.pipeline import split_for_eval
    from dlcli.data.transforms import compose
    from dlcli.tasks import task_class

    config, meta, model, _, _ = from_checkpoint(checkpoint.load(runs.measured["checkpoints"]["last"]), [], "cpu")
    real = torch.cat([b.x for b in split_for_eval(config, meta, "val", torch.device("cpu"), task_class("gan"))])[:100]
    fake, _ = sample_images(model, 100, 0, None, meta.class_names, torch.device("cpu"))
    clf_config, _, clf, _, _ = from_checkpoint(checkpoint.load(runs.features), [], "cpu")
    transform = compose(clf_config.data.eval_transforms)
    expected = frechet_distance(penultimate_features(clf, real, transform, torch.device("cpu"))[0],
                                penultimate_features(clf, fake, transform, torch.device("cpu"))[0])
    assert events(runs.measured["run_dir"])[-1]["val/fd"] == pytest.approx(expected, rel=1e-6)


def test_measuring_draws_no_random_numbers_so_the_weights_are_the_same(runs):
    with_eval = checkpoint.load(runs.measured["checkpoints"]["last"])["model"]
    without = checkpoint.load(runs.plain["checkpoints"]["last"])["model"]
    assert with_eval.keys() == without.keys() and all(torch.equal(with_eval[k], without[k]) for k in with_eval)


def test_without_gan_eval_best_pt_is_the_last_epoch(runs):
    summary = runs.plain
    assert summary["monitor"] == "last" and summary["best"] == {"value": None, "epoch": 3}
    best, last = Path(summary["checkpoints"]["best"]), Path(summary["checkpoints"]["last"])
    assert best.stat().st_ino == last.stat().st_ino  # one file, linked
    assert "val/fd" not in events(summary["run_dir"])[-1]


def test_a_monitor_the_user_names_is_kept():
    assert gan_digits("train.monitor=val/g_loss").train.monitor == "val/g_loss"
    assert load(str(REPO / "configs" / "quickstart.yaml")).train.monitor == "val/acc"
    assert gan_digits("gan_eval={features: x.pt}", "train.monitor=val/inception_score").train.monitor == \
        "val/inception_score"


@pytest.mark.parametrize("overrides, key, words", [
    (["gan_eval={features: x.pt}", "data.val_split=0"], "gan_eval", "data.val_split > 0"),
    (["gan_eval={features: x.pt, every: 0}"], "gan_eval.every", "greater than 0"),
    (["gan_eval={every: 2}"], "gan_eval.features", "required"),
    (["gan_eval={features: x.pt, sample: 5}"], "gan_eval.sample", "did you mean 'samples'"),
    (["train.monitor=val/fd"], "train.monitor", "unknown metric 'val/fd'"),
    (["callbacks=[{name: early_stopping}]"], "callbacks.0.monitor", "required with train.monitor: last"),
], ids=["no-val", "every-0", "no-features", "typo", "fd-without-gan-eval", "callback-without-monitor"])
def test_bad_gan_eval_configs_are_config_errors_naming_the_key(overrides, key, words):
    with pytest.raises(ConfigError) as err:
        gan_digits(*overrides)
    problem = next(p for p in err.value.problems if p.startswith(key) or f"] {key}" in p or key in p.split(":")[0])
    assert words in problem, problem


def test_gan_eval_on_a_classifier_is_a_config_error(write_config):
    from dlcli.config import validate

    with pytest.raises(ConfigError) as err:
        validate(tiny_digits_config(gan_eval={"features": "x.pt"}))
    assert any(p.startswith("gan_eval: only for GANs") for p in err.value.problems), err.value.problems


def test_a_features_checkpoint_that_does_not_fit_stops_train_before_any_file(runs, run_cli, tmp_path):
    missing = run_cli("train", GAN_DIGITS, "train.device=cpu", "gan_eval={features: nowhere.pt}",
                      "--output-dir", tmp_path / "out")
    assert missing.returncode == 4, missing.stderr
    assert missing.stderr.startswith("error: gan_eval.features: ") and "nowhere.pt" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "out").exists()
    gan = runs.plain["checkpoints"]["last"]  # a GAN is not an image classifier
    wrong = run_cli("train", GAN_DIGITS, "train.device=cpu", f"gan_eval={{features: {gan}}}",
                    "--output-dir", tmp_path / "out")
    assert wrong.returncode == 3 and "gan_eval.features: " in wrong.stderr and "image classifier" in wrong.stderr
    assert not (tmp_path / "out").exists()


def test_fit_to_resizes_to_the_classifier_and_refuses_other_channel_counts():
    from dlcli.errors import DataError

    images = torch.rand(3, 1, 64, 64)
    assert fit_to(images, [1, 28, 28]).shape == (3, 1, 28, 28)
    with pytest.raises(DataError, match="3-channel"):
        fit_to(images, [3, 28, 28])


def test_a_gan_sweep_without_gan_eval_asks_for_a_metric(tmp_path):
    from typer.testing import CliRunner

    from dlcli.cli import app

    result = CliRunner().invoke(app, ["sweep", GAN_DIGITS, "optimizer.generator.lr=0.001,0.0005",
                                      "--output-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "--metric: train.monitor is last" in result.stderr, result.stderr
    assert "val/g_loss" in result.stderr and not (tmp_path / "runs").exists()
