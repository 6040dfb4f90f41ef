"""resnet18 with `stem: cifar` end to end: train -> eval -> infer -> export (ONNX, checked by
onnxruntime against the model) on a tiny image folder (RGB) and on MNIST IDX files (1 channel).
One training runs as a real `python -m dlcli` process; the rest go through the same command
functions in process (typer's CliRunner), which saves a torch import each."""

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from dlcli.components.models.notes import collected
from dlcli.config import load
from dlcli.training.build import build_trainer
from tests.data.test_datasets import COLOURS, make_image_folder, make_mnist

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def invoke(*args, env=None):
    from dlcli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def resnet_config(name: str, dataset: dict, transforms: list, val_split: float) -> dict:
    return {"name": name, "seed": 0,
            "data": {"dataset": dataset, "val_split": val_split, "batch_size": 8,
                     "train_transforms": transforms, "eval_transforms": transforms},
            "model": {"name": "resnet18", "stem": "cifar"},
            "optimizer": {"name": "adam", "lr": 0.002},
            "train": {"epochs": 2, "device": "cpu", "monitor": "train/loss"}}


def export_onnx(checkpoint, out) -> dict:
    result = invoke("export", checkpoint, "--format", "onnx", "-o", out, "--json")
    assert result.exit_code == 0, result.stderr
    import onnx

    onnx.checker.check_model(onnx.load(str(out)))
    return json.loads(result.stdout)


def test_resnet18_cifar_stem_on_an_image_folder(tmp_path, run_cli):
    folder = make_image_folder(tmp_path / "colours", per_class=8)  # 12x12 RGB
    config = resnet_config("colours", {"name": "image_folder", "root": str(folder)}, [], 0.25)
    cfg = tmp_path / "colours.yaml"
    cfg.write_text(yaml.safe_dump(config))
    result = run_cli("train", cfg, "--output-dir", tmp_path / "runs", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "3 classes, input [3, 12, 12]" in result.stderr
    run = tmp_path / "runs" / "colours" / "v1"

    evaluated = invoke("eval", run, "--split", "val", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert 0.0 <= json.loads(evaluated.stdout)["metrics"]["acc"] <= 1.0

    inferred = invoke("infer", run, folder, "--json")
    assert inferred.exit_code == 0, inferred.stderr
    rows = json.loads(inferred.stdout)
    assert len(rows) == 24 and {row["class"] for row in rows} <= set(COLOURS)

    report = export_onnx(run, tmp_path / "colours.onnx")
    assert report["max_abs_diff"] <= 1e-4


def test_resnet18_cifar_stem_on_mnist_idx_files(tmp_path):
    from PIL import Image

    arrays = make_mnist(tmp_path / "data", n_train=40, n_test=16)
    config = resnet_config("mnist_r18", {"name": "mnist", "root": str(tmp_path / "data"), "download": False},
                           [{"normalize": "mnist"}], 0.0)
    config["train"]["epochs"] = 1
    cfg = tmp_path / "mnist.yaml"
    cfg.write_text(yaml.safe_dump(config))
    trained = invoke("train", cfg, "--output-dir", tmp_path / "runs", "-q")
    assert trained.exit_code == 0, trained.stderr
    assert "10 classes, input [1, 28, 28]" in trained.stderr
    run = tmp_path / "runs" / "mnist_r18" / "v1"

    evaluated = invoke("eval", run, "--json")  # the t10k files
    assert evaluated.exit_code == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["samples"] == 16

    image = tmp_path / "seven.png"
    Image.fromarray(arrays["t10k"][0][7], "L").save(image)
    inferred = invoke("infer", run, image, "--json")
    assert inferred.exit_code == 0, inferred.stderr
    assert json.loads(inferred.stdout)[0]["class"] in [f"{d} - " for d in range(10)] or \
        json.loads(inferred.stdout)[0]["class"][:4] in [f"{d} - " for d in range(10)]  # MNIST's "7 - seven"

    report = export_onnx(run / "checkpoints" / "last.pt", tmp_path / "mnist.onnx")
    assert report["max_abs_diff"] <= 1e-4


def test_torchvision_weight_names_load_from_the_hub_cache_and_set_the_eval_preprocessing(tmp_path, monkeypatch):
    """A file under the name torchvision gives resnet18's DEFAULT weights, in $TORCH_HOME/hub/checkpoints,
    loads offline; eval (and training, which has no transforms) then preprocess as those weights expect."""
    from torchvision.models import resnet18

    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    state = resnet18().state_dict()
    torch.save(state, cache / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("DLCLI_OFFLINE", "1")
    folder = make_image_folder(tmp_path / "colours", per_class=2, size=40)
    config = resnet_config("pre", {"name": "image_folder", "root": str(folder)}, [], 0.0)
    config["model"] = {"name": "resnet18", "weights": "DEFAULT"}
    cfg = tmp_path / "pre.yaml"
    cfg.write_text(yaml.safe_dump(config))
    with collected():
        trainer, meta = build_trainer(load(str(cfg)))
    assert torch.equal(trainer.model.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    assert meta.input_shape == [3, 224, 224]
    expected = [{"name": "resize", "size": 256, "antialias": True}, {"name": "center_crop", "size": 224},
                {"name": "normalize", "preset": "imagenet", "mean": None, "std": None}]
    assert trainer.config.data.eval_transforms == expected and trainer.config.data.train_transforms == expected
    assert any("follow the preprocessing of resnet18 weights DEFAULT" in n for n in trainer.notes)
