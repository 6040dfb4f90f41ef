"""Transfer learning: pretrained files, init_from, train.freeze (+ unfreeze_at_epoch) and
optimizer.param_groups, trained in process on tiny data; exact mid-epoch resume with all of it."""

import io
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from dlcli.cli.progress import Progress
from dlcli.config import load
from dlcli.training import checkpoint
from dlcli.training.build import build_trainer
from dlcli.training.session import train
from tests.conftest import tiny_digits_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FROZEN = r"(?!fc\.)"  # everything but the head


def invoke(*args, env=None):
    from dlcli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def quiet(epochs: int) -> Progress:
    return Progress(epochs, quiet=True, stream=io.StringIO())


def write(tmp_path: Path, config: dict, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def resnet_config(weights: Path | None, **train) -> dict:
    """resnet18 (cifar stem) on 48 random 3x8x8 images: 3 steps an epoch."""
    model = {"name": "resnet18", "stem": "cifar", **({"weights": str(weights)} if weights else {})}
    return {
        "name": "ft", "seed": 0,
        "data": {"dataset": {"name": "synthetic", "samples": 48, "shape": [3, 8, 8], "classes": 3},
                 "val_split": 0.25, "batch_size": 12},
        "model": model,
        "optimizer": {"name": "sgd", "lr": 0.001, "param_groups": [{"params": r"fc\.", "lr": 0.05}]},
        "train": {"epochs": 3, "device": "cpu", "log_interval": 1, "monitor": "val/loss", **train},
    }


@pytest.fixture(scope="module")
def pretrained_file(tmp_path_factory) -> tuple[Path, dict]:
    from torchvision.models import resnet18

    torch.manual_seed(1)
    state = resnet18().state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18-pretrained.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory, pretrained_file):
    """Pretrained resnet18, backbone frozen for the whole run; the head trains at its own LR."""
    tmp = tmp_path_factory.mktemp("frozen")
    path, state = pretrained_file
    config = load(str(write(tmp, resnet_config(path, freeze=[FROZEN], epochs=2))))
    trainer, _ = build_trainer(config)
    lrs = [group["lr"] for group in trainer.optimizer.param_groups]
    notes = list(trainer.notes)
    stem = trainer.model.conv1.weight.detach().clone()  # the new cifar stem, as the run will initialise it
    summary = train(config, str(tmp / "runs"), None, quiet(2))
    return checkpoint.load(Path(summary["run_dir"]) / "checkpoints" / "last.pt"), {**state, "conv1.weight": stem}, \
        lrs, notes


def test_frozen_parameters_and_their_batch_norm_statistics_do_not_move(frozen_run):
    payload, pretrained, _, notes = frozen_run
    trained = payload["model"]
    moved = [name for name, value in trained.items() if not name.startswith("fc.")
             and not torch.equal(value, pretrained[name])]
    assert moved == []  # running_mean/var and num_batches_tracked included: frozen BNs stay in eval mode
    assert not torch.equal(trained["fc.weight"], payload["model"]["fc.weight"] * 0)
    assert any("classifier head fc.weight, fc.bias skipped (1000 classes in the weights, 3 here)" in n for n in notes)
    assert any(n.startswith(f"train.freeze {FROZEN!r}: 60 parameter tensors") for n in notes), notes
    assert payload["position"]["frozen"] and all(not n.startswith("fc.") for n in payload["position"]["frozen"])


def test_the_head_trains_in_its_own_param_group(frozen_run, pretrained_file):
    payload, _, lrs, _ = frozen_run
    assert lrs == [0.001, 0.05]  # the rest first (its lr is the logged `lr`), then fc.*
    groups = payload["optimizer"]["param_groups"]
    assert [len(g["params"]) for g in groups] == [60, 2] and groups[1]["lr"] == 0.05
    assert payload["metrics"]["lr"] == 0.001


def test_unfreezing_at_epoch_n_trains_the_backbone_from_then_on(tmp_path, pretrained_file):
    path, state = pretrained_file
    config = load(str(write(tmp_path, resnet_config(path, freeze=[FROZEN], unfreeze_at_epoch=2, epochs=2))))
    trainer, _ = build_trainer(config)
    seen = {}
    original = trainer.train_epoch

    def watch(progress, *args, **kwargs):
        result = original(progress, *args, **kwargs)
        seen[trainer.state.epoch] = (trainer.model.layer1[0].conv1.weight.requires_grad,
                                     trainer.model.layer1[0].bn1.training)
        return result

    trainer.train_epoch = watch
    from dlcli.runs.rundir import RunDir
    from dlcli.training.session import Session
    from dlcli.training.signals import StopSignals

    run = RunDir.create(str(tmp_path / "runs"), "ft", None)
    with StopSignals() as signals:
        Session(trainer, _, run, quiet(2), signals, "dlcli train").execute(None)
    run.release()
    assert seen == {1: (False, False), 2: (True, True)}
    assert not torch.equal(trainer.model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_mid_epoch_resume_with_freeze_unfreeze_and_groups_is_bitwise(tmp_path):
    """Stopped inside the frozen epoch and inside the first unfrozen one, the resumed runs end as
    the uninterrupted run did."""
    config = tiny_digits_config(
        model={"name": "mlp", "hidden": [32], "batch_norm": True},
        optimizer={"name": "adam", "lr": 0.01, "param_groups": [{"params": r"4\.", "lr": 0.03,
                                                                 "weight_decay": 0.01}]},
        train={"epochs": 3, "device": "cpu", "log_interval": 5, "checkpoint_every": {"steps": 4},
               "keep_last": 100, "freeze": [r"1\.", r"2\."], "unfreeze_at_epoch": 2})
    cfg = write(tmp_path, config)
    reference = Path(train(load(str(cfg)), str(tmp_path / "ref"), None, quiet(3))["run_dir"])
    final = checkpoint.load(reference / "checkpoints" / "last.pt")
    first = checkpoint.load(reference / "checkpoints" / "step-000000004.pt")
    assert torch.equal(first["model"]["1.weight"], checkpoint.load(reference / "checkpoints" / "step-000000008.pt")
                       ["model"]["1.weight"])  # frozen during epoch 1
    assert first["position"]["frozen"] == ["1.bias", "1.weight", "2.bias", "2.weight"]
    assert final["position"]["frozen"] == []
    for step in (8, 24):  # inside epoch 1 (frozen) and epoch 2 (unfrozen); 18 steps an epoch
        copy = tmp_path / f"at{step}" / "tiny" / "v1"
        shutil.copytree(reference, copy)
        result = invoke("train", cfg, "--resume", copy / "checkpoints" / f"step-{step:09d}.pt", "-q")
        assert result.exit_code == 0, result.stderr
        resumed = checkpoint.load(copy / "checkpoints" / "last.pt")
        assert all(torch.equal(resumed["model"][k], final["model"][k]) for k in final["model"]), step
        assert resumed["optimizer"]["param_groups"] == final["optimizer"]["param_groups"]
    exported = invoke("export", reference, "--format", "onnx", "-o", tmp_path / "m.onnx")
    assert exported.exit_code == 0, exported.stderr


def test_freeze_then_unfreeze_under_ddp_matches_one_process(tmp_path):
    """2 DDP processes (gloo) train what 1 process trains with the same global batch, through a
    change of the trainable parameters (the DDP wrapper is rebuilt when they change)."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    config = tiny_digits_config(
        model={"name": "mlp", "hidden": [32]}, optimizer={"name": "sgd", "lr": 0.1, "param_groups": [
            {"params": r"3\.", "lr": 0.2}]},
        train={"epochs": 2, "device": "cpu", "freeze": [r"1\."], "unfreeze_at_epoch": 2})
    cfg = write(tmp_path, config)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    runs = {}
    for version, extra in (("one", []), ("two", ["--devices", "2"])):
        done = subprocess.run([sys.executable, "-m", "dlcli", "train", str(cfg), "--output-dir", str(tmp_path),
                               "--run-version", version, "-q", "--json", *extra], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"] == "finished"
        runs[version] = checkpoint.load(tmp_path / "tiny" / version / "checkpoints" / "last.pt")["model"]
    for key in runs["one"]:
        torch.testing.assert_close(runs["one"][key], runs["two"][key], atol=1e-5, rtol=1e-4)


def test_a_pattern_that_matches_nothing_is_exit_2_before_anything_is_written(tmp_path):
    cfg = write(tmp_path, tiny_digits_config())
    result = invoke("train", cfg, "train.freeze=[backbone]", "--output-dir", tmp_path / "runs", "-q")
    assert result.exit_code == 2, result.stderr
    assert "train.freeze.0: 'backbone' matches no parameter of the model" in result.stderr
    result = invoke("train", cfg, "optimizer.param_groups=[{params: 'fc.*', lr: 0.1}]", "--output-dir",
                    tmp_path / "runs", "-q")
    assert result.exit_code == 2 and "optimizer.param_groups.0: 'fc.*' matches no parameter" in result.stderr
    result = invoke("train", cfg, "train.freeze=['(']", "train.unfreeze_at_epoch=3", "-q")
    assert result.exit_code == 2 and "train.freeze.0: not a valid regular expression" in result.stderr
    result = invoke("train", cfg, "train.freeze=['.']", "--output-dir", tmp_path / "runs", "-q")
    assert result.exit_code == 2 and "train.freeze: the patterns freeze every parameter" in result.stderr
    result = invoke("train", cfg, "train.freeze=['1\\.']", "train.unfreeze_at_epoch=5", "-q")
    assert result.exit_code == 2 and "unfreeze_at_epoch 5 is after the last epoch" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_validate_counts_what_each_pattern_matches(tmp_path):
    cfg = write(tmp_path, tiny_digits_config(optimizer={"name": "sgd", "lr": 0.1,
                                                        "param_groups": [{"params": "3\\.", "lr": 0.01}]}))
    result = invoke("validate", cfg, "train.freeze=['1\\.']")
    assert result.exit_code == 0, result.stderr
    assert "note: train.freeze.0 '1\\\\.': 2 of 4 parameter tensors (2,080 values)" in result.stderr, result.stderr
    assert "note: optimizer.param_groups.0 '3\\\\.': 2 of 4 parameter tensors (330 values)" in result.stderr
    assert invoke("validate", cfg, "train.freeze=[nothing]").exit_code == 2


def test_missing_cached_weights_name_the_file_and_folder(tmp_path):
    cfg = write(tmp_path, resnet_config(None) | {"model": {"name": "resnet18", "weights": "DEFAULT"}})
    result = invoke("train", cfg, "--output-dir", tmp_path / "runs", "-q",
                    env={"TORCH_HOME": str(tmp_path / "th"), "DLCLI_OFFLINE": "1"})
    assert result.exit_code == 3, result.stderr
    assert f"put resnet18-f37072fd.pth into {tmp_path / 'th' / 'hub' / 'checkpoints'}/" in result.stderr
    result = invoke("train", cfg, "model.weights=IMAGENET1K_V2", "-q")
    assert result.exit_code == 2 and "has no weights 'IMAGENET1K_V2' (did you mean 'IMAGENET1K_V1'?)" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_weights_of_another_architecture_are_exit_4_listing_keys(tmp_path, pretrained_file):
    path, _ = pretrained_file
    cfg = write(tmp_path, resnet_config(path) | {"model": {"name": "resnet34", "weights": str(path)}})
    result = invoke("train", cfg, "--output-dir", tmp_path / "runs", "-q")
    assert result.exit_code == 4, result.stderr
    assert "do not fit the model: layer1.2.conv1.weight not in the weights" in result.stderr
    assert "(and " in result.stderr and not (tmp_path / "runs").exists()


def test_init_from_starts_from_another_runs_weights_with_a_new_head(tmp_path, frozen_run):
    payload, _, _, _ = frozen_run
    source = tmp_path / "source.pt"
    checkpoint.save(payload, source)
    config = resnet_config(None, epochs=1, freeze=[FROZEN])
    config["data"]["dataset"]["classes"] = 4
    config["init_from"] = str(source)
    trainer, _ = build_trainer(load(str(write(tmp_path, config))))
    assert torch.equal(trainer.model.layer2[0].conv1.weight, payload["model"]["layer2.0.conv1.weight"])
    assert trainer.model.fc.out_features == 4
    assert any("init_from" in n and "3 classes in the weights, 4 here" in n for n in trainer.notes)


def test_eval_infer_and_export_rebuild_without_reading_the_weights_file(frozen_run, tmp_path):
    """The checkpoint's weights replace the pretrained ones, so the file is not needed (nor read) later."""
    import copy

    from dlcli.training.build import from_checkpoint

    payload = copy.deepcopy(frozen_run[0])
    payload["config"]["model"]["weights"] = str(tmp_path / "gone.pth")
    _, _, model, _, _ = from_checkpoint(payload, [], "cpu")
    assert torch.equal(model.fc.weight, payload["model"]["fc.weight"])


def test_freeze_and_unfreeze_under_train_compile_train_what_eager_does(tmp_path, monkeypatch):
    """torch.compile guards on requires_grad: the step is traced again when unfreeze_at_epoch turns
    gradients on. Compiled with the aot_eager backend (inductor's C++ build takes minutes on a busy CPU)."""
    from dlcli.config import validate

    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: real(m, backend="aot_eager", **kw))
    weights = []
    for compiled in (True, False):
        config = validate(tiny_digits_config(train={"epochs": 2, "device": "cpu", "compile": compiled,
                                                    "freeze": ["1\\."], "unfreeze_at_epoch": 2}))
        run = train(config, str(tmp_path / str(compiled)), None, quiet(2))
        weights.append(checkpoint.load(run["checkpoints"]["last"])["model"])
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], atol=1e-5, rtol=1e-4)
