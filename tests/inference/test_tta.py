"""Test-time augmentation: the averaged model's probabilities are the mean of the views' ones, eval and
infer take --tta on an image classifier, and anything else is a usage error (exit 2)."""

import json
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.errors import ConfigError
from dlcli.inference.tta import views, with_tta
from tests.conftest import REPO, tiny_digits_config


def image_meta(shape=(3, 16, 16)):
    return SimpleNamespace(kind="image", input_shape=list(shape))


def test_flip_views_are_the_image_and_its_mirror_and_crops_keep_the_size():
    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16)
    plain, mirrored = (view(x) for view in views("flip", 16, 16))
    assert torch.equal(plain, x) and torch.equal(mirrored, x.flip(-1))
    crops = [view(x) for view in views("crops", 16, 16)]
    assert len(crops) == 5 and torch.equal(crops[0], x) and all(c.shape == x.shape for c in crops)
    assert torch.equal(crops[4][..., :-2, :-2], x[..., 2:, 2:])  # a 2-pixel pad, then the bottom-right corner


@pytest.mark.parametrize("average, to_probs", [("softmax", lambda z: z.softmax(-1)), ("sigmoid", torch.sigmoid)])
@pytest.mark.parametrize("mode", ["flip", "crops"])
def test_the_averaged_model_gives_the_mean_of_the_views_probabilities(average, to_probs, mode):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 5)).eval()
    task = SimpleNamespace(tta_average=average, name="t")
    averaged = with_tta(model, mode, task, image_meta())
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        expected = torch.stack([to_probs(model(view(x))) for view in views(mode, 16, 16)]).mean(0)
        assert torch.allclose(to_probs(averaged(x)), expected, atol=1e-6)


def test_tta_is_refused_for_models_that_do_not_read_images_and_for_unknown_modes():
    task = SimpleNamespace(tta_average="softmax", name="classification")
    with pytest.raises(ConfigError, match="--tta: only for models of image classes or labels"):
        with_tta(torch.nn.Identity(), "flip", task, SimpleNamespace(kind="tabular", input_shape=[4]))
    with pytest.raises(ConfigError, match="--tta: expected flip or crops"):
        with_tta(torch.nn.Identity(), "rotate", task, image_meta())


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from dlcli.cli.progress import Progress
    from dlcli.config import validate
    from dlcli.training.session import train

    folder = tmp_path_factory.mktemp("tta")
    run = train(validate(tiny_digits_config(train={"epochs": 3, "device": "cpu"})), str(folder / "runs"), None,
                Progress(3, quiet=True, stream=open("/dev/null", "w")))
    return run["run_dir"]


def test_eval_and_infer_take_tta_on_an_image_classifier(digits_run):
    runner = CliRunner()
    plain = json.loads(runner.invoke(app, ["eval", digits_run, "--split", "val", "--json"]).stdout)
    flipped = runner.invoke(app, ["eval", digits_run, "--split", "val", "--json", "--tta", "flip"])
    assert flipped.exit_code == 0, flipped.output
    result = json.loads(flipped.stdout)
    assert result["tta"] == "flip" and result["samples"] == plain["samples"]
    assert result["metrics"]["loss"] != plain["metrics"]["loss"]  # mirrored digits are other inputs
    rows = runner.invoke(app, ["infer", digits_run, str(REPO / "examples" / "digits"), "--json", "--tta", "crops"])
    assert rows.exit_code == 0, rows.output
    predictions = json.loads(rows.stdout)
    assert predictions and all(0 < row["probability"] <= 1 for row in predictions)


def test_a_bad_tta_value_is_exit_2_before_the_checkpoint_is_read(tmp_path):
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "missing.pt"), "--tta", "rotate"])
    assert result.exit_code == 2 and "--tta: expected flip or crops (got 'rotate')" in result.output
