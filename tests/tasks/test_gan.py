"""GANs (issue #5) end to end on CPU: the adversarial step moves generated statistics to a target
distribution; the Fréchet distance (features of a dlcli classifier) ranks real digits far above
noise and an untrained generator; an exact mid-epoch resume for both networks; `dlcli infer` and
`dlcli eval` on GAN checkpoints; conditional generation checked by a classifier; sample grids and
logged metrics per epoch; n_critic; and clean errors for configs that do not fit a GAN.

Training runs in-process (`dlcli.training.session.train`, or the engine's Trainer directly for the
distribution test); each trained model is shared by the tests of its section (module-scoped
fixtures). `dlcli infer` / `eval` go through typer's CliRunner. Torch is pinned to one intra-op
thread: the nets are tiny, and two spinning threads on a busy 2-core machine only slow them down.

Measured on a 2-core CPU (seeded, so repeatable): the quickstart MLP (8 epochs) reaches val/acc 0.97;
FD(test digits, validation digits) 1.4 against 231 for uniform noise and 353 for an untrained
generator; a conditional MLP GAN after 5 epochs (about 3 s) draws the requested digit 85-100% of
the time by class; a GAN on a 1-D Gaussian (mean 0.4, std 0.25 in [-1, 1]) ends at mean 0.40 and
std 0.25 from -0.16 and 0.06.
"""

import io
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from dlcli.cli.progress import Progress
from dlcli.config import load, validate
from dlcli.errors import ConfigError, DataError
from dlcli.inference.evaluate import evaluate_checkpoint
from dlcli.inference.predict import infer
from dlcli.tasks import task_class
from dlcli.tasks.gan.quality import coverage, frechet_distance, inception_score, penultimate_features, sample_images
from dlcli.training import checkpoint
from dlcli.training.session import train
from tests.conftest import REPO

GAN_DIGITS = str(REPO / "configs" / "gan_digits.yaml")
QUICKSTART = str(REPO / "configs" / "quickstart.yaml")
STEPS_PER_EPOCH = 21  # gan_digits: 1,437 training digits less a 10% validation split = 1,293, in batches of 64
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- helpers


def fit(config, root: Path, version: str | None = None, resume: str | None = None) -> dict:
    cfg = validate(config) if isinstance(config, dict) else config
    return train(cfg, str(root), version, Progress(cfg.train.epochs, quiet=True, stream=io.StringIO()), resume=resume)


def gan_digits(*overrides: str):
    return load(GAN_DIGITS, ["train.device=cpu", *overrides])


def cli(*args):
    """`dlcli ARGS` in-process; the result has exit_code, stdout and stderr."""
    from dlcli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def assert_one_error(result, expected: int, *needles: str) -> str:
    """Exit code, no traceback, exactly one `error:` line (plus an optional hint) naming the problem."""
    assert result.exit_code == expected, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    others = [line for line in result.stderr.splitlines() if line and not line.startswith(("error: ", "hint: "))]
    assert len(errors) == 1 and not others, result.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def pixels(path) -> torch.Tensor:
    """A PNG as a uint8 tensor [H, W, C]."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return torch.from_numpy(np.array(image.convert("RGB")))


def grid_pixels(images, folder: Path, name: str) -> torch.Tensor:
    """What dlcli's grid writer makes of these images, as pixels."""
    from dlcli.tasks.gan.images import save_grid

    save_grid(images, folder / name)
    return pixels(folder / name)


def gan_model(ckpt):
    from dlcli.training.build import from_checkpoint

    config, meta, model, _, _ = from_checkpoint(checkpoint.load(ckpt), [], "cpu")
    return config, meta, model


def digits_split(split: str) -> torch.Tensor:
    """Digits of a split as the GAN sees them: [N, 1, 8, 8] in [0, 1], no normalisation."""
    from dlcli.data.pipeline import DataMeta, split_for_eval

    meta = DataMeta(class_names=[str(c) for c in range(10)], input_shape=[1, 8, 8], kind="image")
    config = gan_digits() if split == "test" else load(QUICKSTART, ["data.train_transforms=[]",
                                                                    "data.eval_transforms=[]"])
    return torch.cat([b.x for b in split_for_eval(config, meta, split, CPU, task_class("gan"))])


# ---------------------------------------------------------------- the adversarial step moves the generator


def engine_trainer(x: torch.Tensor, batch_size: int, shuffle: bool = True, **sections):
    """A Trainer with the GAN task over images x in [0, 1], assembled as build_trainer assembles it
    (per-network optimizers, schedules and scalers), without a dataset: dlcli GANs are image-only,
    so other targets (a 1-D distribution) are fed as tiny images."""
    from dlcli.components.models import MODELS
    from dlcli.data.loading import TensorBatches
    from dlcli.data.source import Source
    from dlcli.training.build import build_task
    from dlcli.training.engine import Trainer

    config = validate({
        "name": "engine", "seed": 0,
        "data": {"dataset": {"name": "digits"}, "batch_size": batch_size, "val_split": 0},  # (not read)
        "model": {"name": "gan", "latent_dim": 4, "generator": {"hidden": [32, 32]},
                  "discriminator": {"hidden": [64, 64]}},
        "train": {"epochs": 1, "device": "cpu", "log_interval": 10_000, "monitor": "train/g_loss"}, **sections})
    source = Source(y=torch.zeros(len(x), dtype=torch.long), x=x, class_names=["0"], kind="image")
    order = torch.Generator().manual_seed(0)
    batches = TensorBatches(source, batch_size, CPU, None, shuffle, order)
    model = MODELS.build(config.model, tuple(x.shape[1:]), 1)
    task = build_task(config, None)
    optimizer, schedule, scaler = task.build_optimization(config, model, len(batches), CPU, "fp32")
    return Trainer(model, task, optimizer, schedule, scaler, batches, None, CPU, "fp32", config, [], order)


def test_gan_moves_generated_mean_and_std_to_a_1d_gaussian_target():
    """A 1x1x1 "image" is one number: samples of N(0.4, 0.25) mapped to [0, 1] (the task maps
    x -> 2x - 1 back), 20 epochs of 16 batches through Trainer.train_epoch and GANTask.train_step."""
    from dlcli.tasks.gan.images import generate
    from dlcli.tasks.gan.task import GANTask

    target_mean, target_std, epochs = 0.4, 0.25, 20
    torch.manual_seed(0)
    values = target_mean + target_std * torch.randn(2048)
    trainer = engine_trainer(((values + 1) / 2).view(-1, 1, 1, 1), 128, loss={"name": "gan_bce"},
                             scheduler={"name": "cosine"},
                             optimizer={"name": "adam", "lr": 0.002, "betas": [0.5, 0.999]},
                             train={"epochs": epochs, "device": "cpu", "log_interval": 10_000,
                                    "monitor": "train/g_loss"})
    assert isinstance(trainer.task, GANTask) and set(trainer.optimizer.state_dict()) == {"generator", "discriminator"}
    model = trainer.model
    noise = torch.randn(4000, 4, generator=torch.Generator().manual_seed(1))

    def generated() -> tuple[float, float]:
        x = generate(model, noise).flatten() * 2 - 1
        return float(x.mean()), float(x.std())

    before = generated()
    progress = Progress(epochs, quiet=True, stream=io.StringIO())
    for epoch in range(1, epochs + 1):
        trainer.state.epoch = epoch
        metrics = trainer.train_epoch(progress)
    after = generated()
    assert trainer.state.step == epochs * 16  # 2,048 samples in batches of 128, one D step per batch
    assert set(metrics) == {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/loss"}
    assert 0.3 < metrics["train/d_real"] < 0.7 and 0.3 < metrics["train/d_fake"] < 0.7  # D cannot tell them apart

    # measured: before mean -0.16, std 0.06; after 0.40 and 0.25 (other seeds: within 0.05 and 0.07)
    assert abs(values.mean() - target_mean) < 0.02 and abs(values.std() - target_std) < 0.02  # the data
    mean_error = [abs(m - target_mean) for m in (before[0], after[0])]
    std_error = [abs(s - target_std) for s in (before[1], after[1])]
    assert mean_error[0] > 0.3 and std_error[0] > 0.1, before  # the untrained generator is far off
    assert mean_error[1] < 0.1 and std_error[1] < 0.08, after
    assert mean_error[1] < mean_error[0] / 3 and std_error[1] < std_error[0] / 2, (before, after)


def test_a_nan_batch_is_skipped_for_both_networks_with_on_nan_skip_batch():
    from dlcli.errors import TrainingError

    x = torch.rand(32, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    x[8:16] = float("nan")  # the second of four batches
    train = {"epochs": 1, "device": "cpu", "log_interval": 10_000, "monitor": "train/g_loss"}
    trainer = engine_trainer(x, 8, shuffle=False, train={**train, "on_nan": "skip_batch"})
    trainer.state.epoch = 1
    metrics = trainer.train_epoch(Progress(1, quiet=True, stream=io.StringIO()))
    assert trainer.state.skipped_batches == 1 and trainer.state.step == 3
    assert trainer.state.running.count == 24 and trainer.state.running.g_count == 24  # the skipped batch is not counted
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    steps = {net: {int(s["step"]) for s in trainer.optimizer.state_dict()[net]["state"].values()}
             for net in ("generator", "discriminator")}
    assert steps == {"generator": {3}, "discriminator": {3}}

    stopping = engine_trainer(x, 8, shuffle=False, train=train)  # on_nan: stop (the default)
    stopping.epoch = 1
    with pytest.raises(TrainingError, match="loss became nan"):
        stopping.train_epoch(Progress(1, quiet=True, stream=io.StringIO()))


# ---------------------------------------------------------------- quality metrics


def test_frechet_distance_inception_score_and_coverage_by_hand():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    shift, scale = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), 2.0
    b = shift + scale * torch.randn(20000, 3, generator=g, dtype=torch.float64)
    # N(0, I) against N(mu, s^2 I): |mu|^2 + d (1 - s)^2 = 5.25 + 3
    assert frechet_distance(a, b) == pytest.approx(8.25, rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)

    one_hot = torch.eye(4, dtype=torch.float64).repeat(5, 1)  # confident, all 4 classes equally often
    assert inception_score(one_hot) == pytest.approx(4.0, rel=1e-6)
    assert inception_score(torch.full((20, 4), 0.25, dtype=torch.float64)) == pytest.approx(1.0)  # unsure
    assert inception_score(torch.eye(4, dtype=torch.float64)[[2] * 20]) == pytest.approx(1.0)  # one class
    assert coverage(one_hot, 4) == 1.0 and coverage(one_hot[:2], 4) == 0.5 and coverage(one_hot, 10) == 0.4


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """The quickstart MLP (8 epochs instead of 15): the feature extractor for FD / IS / coverage."""
    from dlcli.data.transforms import compose
    from dlcli.training.build import from_checkpoint

    summary = fit(load(QUICKSTART, ["train.epochs=8"]), tmp_path_factory.mktemp("quickstart"))
    assert summary["final"]["val/acc"] > 0.9, summary["final"]  # measured 0.97
    ckpt = summary["checkpoints"]["last"]
    config, _, model, _, _ = from_checkpoint(checkpoint.load(ckpt), [], "cpu")
    return SimpleNamespace(ckpt=ckpt, model=model, transform=compose(config.data.eval_transforms))


def features(classifier, images):
    return penultimate_features(classifier.model, images, classifier.transform, CPU)


def test_fd_ranks_held_out_real_digits_far_better_than_noise_or_an_untrained_generator(classifier):
    from dlcli.data.pipeline import DataMeta
    from dlcli.training.build import build_model

    test, val = digits_split("test"), digits_split("val")
    assert test.shape == (360, 1, 8, 8) and val.shape == (216, 1, 8, 8) and 0 <= test.min() < test.max() <= 1
    noise = torch.rand(360, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    meta = DataMeta(class_names=[str(c) for c in range(10)], input_shape=[1, 8, 8], kind="image")
    untrained = build_model(gan_digits(), meta, CPU)
    fakes, labels = sample_images(untrained, 360, 0, None, meta.class_names, CPU)
    assert labels is None and fakes.shape == (360, 1, 8, 8) and 0 <= fakes.min() and fakes.max() <= 1

    real_f, real_p = features(classifier, test)
    assert real_f.shape == (360, 64) and real_p.shape == (360, 10)  # the MLP's last hidden layer: 64 wide
    fd = {name: frechet_distance(real_f, features(classifier, images)[0])
          for name, images in [("val", val), ("noise", noise), ("untrained", fakes)]}
    # measured: val 1.4, noise 231, untrained generator 353
    assert fd["val"] < 5, fd
    assert fd["noise"] > 50 * fd["val"] and fd["untrained"] > 50 * fd["val"], fd
    assert frechet_distance(real_f, real_f) == pytest.approx(0, abs=1e-6)


def test_inception_score_and_coverage_on_real_and_constant_images(classifier):
    _, real_p = features(classifier, digits_split("test"))
    _, const_p = features(classifier, torch.full((360, 1, 8, 8), 0.5))
    # real digits: confident and every class (measured IS 8.1 of at most 10)
    assert inception_score(real_p) > 7 and coverage(real_p, 10) == 1.0
    # one image repeated: one class, no diversity
    assert inception_score(const_p) == pytest.approx(1.0, abs=1e-6) and coverage(const_p, 10) == 0.1


# ---------------------------------------------------------------- gan_digits: resume, artifacts, infer, eval


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """configs/gan_digits.yaml for 3 epochs, uninterrupted, with a checkpoint every 25 steps."""
    root = tmp_path_factory.mktemp("gan_digits")
    overrides = ["train.epochs=3", "train.checkpoint_every={steps: 25}", "train.keep_last=100"]
    summary = fit(gan_digits(*overrides), root, "full")
    assert summary["status"] == "finished" and summary["steps"] == 3 * STEPS_PER_EPOCH, summary
    return SimpleNamespace(summary=summary, run=Path(summary["run_dir"]), root=root, overrides=overrides,
                           ckpt=summary["checkpoints"]["last"])


def resume_copy(run, name: str, step: int) -> dict:
    """Copy the run, then resume the copy from its mid-epoch checkpoint at `step` (in this process)."""
    copy = run.root / name
    shutil.copytree(run.run, copy)
    summary = fit(gan_digits(*run.overrides), run.root, resume=str(copy / "checkpoints" / f"step-{step:09d}.pt"))
    assert summary["run_dir"] == str(copy.resolve()) and summary["status"] == "finished", summary
    return summary


def test_resumed_mid_epoch_ends_bitwise_equal_for_both_networks(digits_run, monkeypatch):
    step = 25  # epoch 2, batch 4
    saved = checkpoint.load(digits_run.run / "checkpoints" / f"step-{step:09d}.pt")
    assert saved["state"]["epoch"] == 2 and saved["position"]["batch_in_epoch"] == step - STEPS_PER_EPOCH
    assert set(saved["optimizer"]) == {"generator", "discriminator"}

    full = checkpoint.load(digits_run.ckpt)
    summary = resume_copy(digits_run, "resumed", step)
    resumed = checkpoint.load(summary["checkpoints"]["last"])
    assert resumed["state"] | {"seconds": 0} == full["state"] | {"seconds": 0}  # all but the wall time
    assert {k.split(".")[0] for k in full["model"]} == {"generator", "discriminator", "fixed_noise", "fixed_labels"}
    assert same_tensors(resumed["model"], full["model"]), "weights differ after a mid-epoch resume"
    for net in ("generator", "discriminator"):
        states = full["optimizer"][net]["state"]
        assert states and int(states[0]["step"]) == 3 * STEPS_PER_EPOCH  # n_critic 1: both step every batch
        for i, state in states.items():
            assert same_tensors(state, resumed["optimizer"][net]["state"][i]), (net, i)
        assert full["scaler"][net] == resumed["scaler"][net]
    assert summary["final"] == digits_run.summary["final"]
    assert records(Path(summary["run_dir"])) == records(digits_run.run)

    # control: without restoring the RNG (noise, dropout) the run ends elsewhere, so the check has teeth
    monkeypatch.setattr(checkpoint, "restore_rng", lambda states: None)
    drifted = resume_copy(digits_run, "no_rng", step)
    assert not same_tensors(checkpoint.load(drifted["checkpoints"]["last"])["model"], full["model"])


def test_each_epoch_writes_a_sample_grid_and_the_summary_links_the_last(digits_run, tmp_path):
    run, summary = digits_run.run, digits_run.summary
    samples = run / "samples"
    assert sorted(p.name for p in samples.glob("epoch_*.png")) == ["epoch_001.png", "epoch_002.png", "epoch_003.png"]
    assert (samples / "real.png").is_file()
    assert summary["samples"] == str(samples / "epoch_003.png")
    assert json.loads((run / "summary.json").read_text())["samples"] == summary["samples"]

    # the last grid is the final generator on the model's fixed noise: 64 digits, 8 per row, 2 px apart
    _, _, model = gan_model(digits_run.ckpt)
    from dlcli.tasks.gan.images import generate

    last = pixels(samples / "epoch_003.png")
    assert last.shape == (82, 82, 3)
    assert torch.equal(last, grid_pixels(generate(model, model.fixed_noise), tmp_path, "expected.png"))
    assert not torch.equal(last, pixels(samples / "epoch_001.png"))  # the generator changed between epochs

    # real.png: the first 64 training digits, in the split's order
    from dlcli.data.pipeline import train_val_sources

    cfg = gan_digits(*digits_run.overrides)
    train_source, _ = train_val_sources(cfg.data, cfg.seed)
    assert torch.equal(pixels(samples / "real.png"), grid_pixels(train_source.x[:64], tmp_path, "real.png"))


def test_metrics_jsonl_logs_both_losses_and_d_outputs_per_epoch(digits_run):
    epochs = [r for r in records(digits_run.run) if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert [r["step"] for r in epochs] == [STEPS_PER_EPOCH * e for e in (1, 2, 3)]
    for record in epochs:
        for split in ("train", "val"):
            for key in ("d_loss", "g_loss", "d_real", "d_fake", "loss"):
                assert math.isfinite(record[f"{split}/{key}"]), (split, key, record)
            assert 0 < record[f"{split}/d_real"] < 1 and 0 < record[f"{split}/d_fake"] < 1  # BCE: probabilities
            assert record[f"{split}/loss"] == pytest.approx(record[f"{split}/d_loss"] + record[f"{split}/g_loss"])
        assert record["lr"] == 0.0005
    assert digits_run.summary["final"] == {k: v for k, v in epochs[-1].items() if k not in ("event", "epoch", "step")}


def test_infer_writes_a_grid_and_files_and_a_seed_repeats_the_images(digits_run, tmp_path):
    ckpt = digits_run.ckpt
    first = cli("infer", ckpt, "--num", 10, "--seed", 3, "--output", tmp_path / "a.png", "--device", "cpu")
    assert first.exit_code == 0, first.stderr
    assert first.stderr.strip() == f"wrote 10 images: {tmp_path / 'a.png'}"
    again = cli("infer", ckpt, "--num", 10, "--seed", 3, "--output", tmp_path / "b.png", "--device", "cpu")
    other = cli("infer", ckpt, "--num", 10, "--seed", 4, "--output", tmp_path / "c.png", "--device", "cpu")
    assert again.exit_code == 0 and other.exit_code == 0, again.stderr + other.stderr
    grid = pixels(tmp_path / "a.png")
    assert grid.shape == (32, 42, 3)  # 10 images: 4 per row, 3 rows of 8 px plus 2 px padding
    assert torch.equal(grid, pixels(tmp_path / "b.png"))  # same seed, same images
    assert not torch.equal(grid, pixels(tmp_path / "c.png"))  # another seed, other images

    # --output-dir: one PNG per image, the same images as the grid of that seed
    result = cli("infer", ckpt, "--num", 10, "--seed", 3, "--output-dir", tmp_path / "each", "--json",
                 "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    names = [f"sample_{i:04d}.png" for i in range(10)]
    assert report == {"images": 10, "files": [str(tmp_path / "each" / n) for n in names], "seed": 3, "classes": None}
    assert sorted(p.name for p in (tmp_path / "each").iterdir()) == names
    _, meta, model = gan_model(ckpt)
    images, _ = sample_images(model, 10, 3, None, meta.class_names, CPU)
    for i, name in enumerate(names):
        image = pixels(tmp_path / "each" / name)
        assert image.shape == (8, 8, 3)
        expected = images[i, 0].mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
        assert torch.equal(image[..., 0], expected), name
    # the in-process API says the same
    kind, same = infer(ckpt, [], "cpu", None, {"num": 10, "seed": 3, "output_dir": str(tmp_path / "each2")})
    assert kind == "images" and same["images"] == 10
    assert all(torch.equal(pixels(a), pixels(b)) for a, b in zip(report["files"], same["files"]))


def test_gan_infer_misuse_is_a_usage_error(digits_run, tmp_path):
    ckpt = digits_run.ckpt
    r = cli("infer", ckpt, "--class", 3, "--output", tmp_path / "x.png", "--device", "cpu")
    assert_one_error(r, 2, "--class", "not class-conditional")
    assert not (tmp_path / "x.png").exists()
    r = cli("infer", ckpt, REPO / "examples" / "digits", "--output", tmp_path / "x.png", "--device", "cpu")
    assert_one_error(r, 2, "takes no input files")
    r = cli("infer", ckpt, "--device", "cpu")  # nowhere to write the images
    assert_one_error(r, 2, "--output", ".png")
    r = cli("infer", ckpt, "--output", tmp_path / "x.csv", "--device", "cpu")
    assert_one_error(r, 2, "--output", ".png")
    r = cli("infer", ckpt, "--prompt", "hello", "--output", tmp_path / "x.png", "--device", "cpu")
    assert_one_error(r, 2, "--prompt", "does not apply")
    for flag, value in (("--top-k", 3), ("--length", 5), ("--temperature", 2)):
        r = cli("infer", ckpt, flag, value, "--output", tmp_path / "x.png", "--device", "cpu")
        assert_one_error(r, 2, flag, "does not apply")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.csv").exists()


def test_gan_only_options_are_usage_errors_on_a_classifier(classifier, tmp_path):
    digit = REPO / "examples" / "digits"
    r = cli("infer", classifier.ckpt, digit, "--class", 3, "--device", "cpu")
    assert_one_error(r, 2, "--class", "does not apply")
    r = cli("infer", classifier.ckpt, digit, "--output-dir", tmp_path / "out", "--device", "cpu")
    assert_one_error(r, 2, "--output-dir", "does not apply")
    for flag, value in (("--num", 4), ("--length", 5), ("--temperature", 0.5)):  # never silently ignored
        r = cli("infer", classifier.ckpt, digit, flag, value, "--device", "cpu")
        assert_one_error(r, 2, flag, "does not apply")
    r = cli("infer", classifier.ckpt, digit, "--output", tmp_path / "x.png", "--device", "cpu")
    assert_one_error(r, 2, "--output", ".csv or .jsonl")
    assert not (tmp_path / "x.png").exists()
    r = cli("eval", classifier.ckpt, "--features", classifier.ckpt, "--device", "cpu")
    assert_one_error(r, 2, "--features", "only for GAN checkpoints")


def test_eval_reports_gan_losses_and_writes_a_sample_grid(digits_run):
    result = evaluate_checkpoint(digits_run.ckpt, "test", [], "cpu")
    assert result["task"] == "gan" and result["samples"] == 360 and result["epoch"] == 3
    assert set(result["metrics"]) == {"d_loss", "g_loss", "d_real", "d_fake", "loss"}
    assert all(math.isfinite(v) for v in result["metrics"].values()) and "quality" not in result
    grid = digits_run.run / "samples" / "eval_test.png"
    assert result["samples_grid"] == str(grid) and pixels(grid).shape == (82, 82, 3)
    # the same numbers every time (the noise is seeded), and val agrees with the logged val metrics
    assert evaluate_checkpoint(digits_run.ckpt, "test", [], "cpu")["metrics"] == result["metrics"]
    val = evaluate_checkpoint(digits_run.ckpt, "val", [], "cpu")
    assert val["samples"] == 144 and (digits_run.run / "samples" / "eval_val.png").exists()
    # D on real images draws no noise: the logged value (the fake-side metrics depend on the noise drawn)
    assert val["metrics"]["d_real"] == pytest.approx(digits_run.summary["final"]["val/d_real"], rel=1e-5)


def test_eval_with_features_reports_fd_is_and_coverage(digits_run, classifier):
    r = cli("eval", digits_run.ckpt, "--features", classifier.ckpt, "--json", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    quality = result["metrics"]  # with the losses, like every other number
    assert set(quality) == {"fd", "fd_real_halves", "inception_score", "real_inception_score", "class_coverage",
                            "real_class_coverage", "d_loss", "g_loss", "d_real", "d_fake", "loss"}
    assert result["samples"] == 360 and "quality" not in result
    assert quality["real_class_coverage"] == 1.0 and quality["real_inception_score"] > 7
    assert 1.0 <= quality["inception_score"] <= 10 and 0.1 <= quality["class_coverage"] <= 1.0
    # 3 epochs: far from real, but nearer than uniform noise (measured FD 121 against 231; real halves 7.3)
    assert quality["fd_real_halves"] < quality["fd"] < 231

    # the same FD from the pieces: the test digits against 360 samples drawn with seed 0
    _, meta, model = gan_model(digits_run.ckpt)
    fakes, _ = sample_images(model, 360, 0, None, meta.class_names, CPU)
    expected = frechet_distance(features(classifier, digits_split("test"))[0], features(classifier, fakes)[0])
    assert quality["fd"] == pytest.approx(expected, rel=1e-6)


@pytest.fixture(scope="module")
def other_checkpoints(tmp_path_factory):
    """Checkpoints that cannot serve as --features for an 8x8 digits GAN."""
    folder = tmp_path_factory.mktemp("other")

    def one(name, dataset, model, monitor="val/acc"):
        config = {"name": name, "seed": 0, "data": {"dataset": dataset, "val_split": 0.2, "batch_size": 64},
                  "model": model, "train": {"epochs": 1, "device": "cpu", "monitor": monitor}}
        return fit(config, folder)["checkpoints"]["last"]

    rows = one("rows", {"name": "digits_rows"}, {"name": "lstm", "hidden_size": 8})  # reads rows: not an image model
    big = one("big", {"name": "synthetic", "samples": 128, "shape": [1, 16, 16], "classes": 3},
              {"name": "mlp", "hidden": [8]})
    rgb = one("rgb", {"name": "synthetic", "samples": 128, "shape": [3, 8, 8], "classes": 3},
              {"name": "mlp", "hidden": [8]})
    garbage = folder / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    return SimpleNamespace(rows=rows, big=big, rgb=rgb, garbage=garbage)


def test_features_from_a_checkpoint_that_does_not_fit_is_a_clean_error(digits_run, other_checkpoints):
    r = cli("eval", digits_run.ckpt, "--features", other_checkpoints.rows, "--device", "cpu")
    assert_one_error(r, 3, "--features", "must be an image classifier", "[8, 8]")
    r = cli("eval", digits_run.ckpt, "--features", other_checkpoints.rgb, "--device", "cpu")
    assert_one_error(r, 3, "--features", "reads 3-channel images; this GAN makes 1-channel ones")
    r = cli("eval", digits_run.ckpt, "--features", digits_run.ckpt, "--device", "cpu")  # a GAN is no classifier
    assert_one_error(r, 3, "--features", "image classifier", "gan model")
    r = cli("eval", digits_run.ckpt, "--features", other_checkpoints.garbage, "--device", "cpu")
    assert_one_error(r, 4, "--features", "garbage.pt")
    with pytest.raises(DataError):
        evaluate_checkpoint(digits_run.ckpt, "test", [], "cpu", features=other_checkpoints.rgb)


def test_a_classifier_for_another_image_size_scores_resized_samples(digits_run, other_checkpoints):
    """A 16x16 classifier scores the 8x8 GAN: real and generated images are both resized to its input."""
    from dlcli.tasks.gan.quality import fit_to

    result = evaluate_checkpoint(digits_run.ckpt, "test", [], "cpu", features=other_checkpoints.big)
    assert math.isfinite(result["metrics"]["fd"]) and 0 < result["metrics"]["class_coverage"] <= 1
    images = torch.rand(4, 1, 8, 8)
    assert fit_to(images, [1, 16, 16]).shape == (4, 1, 16, 16) and fit_to(images, [1, 8, 8]) is images
    # 8x8 digits resized to 16x16 and back (bilinear, antialiased: blurred) are each nearest their own original
    digits = digits_split("test")[:32].flatten(1)
    back = fit_to(fit_to(digits.view(-1, 1, 8, 8), [1, 16, 16]), [1, 8, 8]).flatten(1)
    assert torch.equal(torch.cdist(back, digits).argmin(1), torch.arange(32))


def test_eval_of_a_run_directory_writes_the_grid_into_its_samples(digits_run):
    result = evaluate_checkpoint(str(digits_run.run), "test", [], "cpu")
    assert Path(result["samples_grid"]).parent == digits_run.run / "samples"


# ---------------------------------------------------------------- conditional generation


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    """gan_digits with model.conditional: true, 5 epochs (about 3 s)."""
    summary = fit(gan_digits("train.epochs=5", "model.conditional=true"), tmp_path_factory.mktemp("cond"))
    return SimpleNamespace(summary=summary, ckpt=summary["checkpoints"]["last"])


def test_conditional_generation_draws_the_requested_digit(conditional_run, classifier, tmp_path):
    """Generate with --class k, write PNGs, and let the quickstart classifier read them back."""
    hits = {}
    for k in range(10):
        folder = tmp_path / f"class_{k}"
        r = cli("infer", conditional_run.ckpt, "--class", k, "--num", 40, "--seed", 100 + k, "--output-dir", folder,
                "--json", "--device", "cpu")
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["classes"] == [str(k)] * 40
        kind, rows = infer(classifier.ckpt, [str(folder)], "cpu", 1)
        assert kind == "classes" and len(rows) == 40
        hits[k] = sum(row["class"] == str(k) for row in rows) / 40
    # measured at 5 epochs: 0.85 for 9, 0.95 for 8, 0.975-1.0 for the others, 0.98 on average (chance: 0.1)
    assert min(hits.values()) >= 0.6, hits
    assert sum(hits.values()) / 10 >= 0.85, hits

    # without --class the labels cycle through the classes
    r = cli("infer", conditional_run.ckpt, "--num", 12, "--seed", 0, "--output", tmp_path / "all.png", "--json",
            "--device", "cpu")
    assert r.exit_code == 0 and json.loads(r.stdout)["classes"] == [str(i % 10) for i in range(12)]
    r = cli("infer", conditional_run.ckpt, "--class", 10, "--output", tmp_path / "x.png", "--device", "cpu")
    assert_one_error(r, 2, "--class", "0..9")


def test_conditional_epoch_grids_show_every_class(conditional_run, classifier):
    """The per-epoch grid cycles the fixed labels 0..9: the classifier reads them back from the PNG."""
    _, meta, model = gan_model(conditional_run.ckpt)
    assert model.fixed_labels.tolist() == [i % 10 for i in range(64)]
    from dlcli.tasks.gan.images import generate

    probs = features(classifier, generate(model, model.fixed_noise, model.fixed_labels))[1]
    assert (probs.argmax(1) == model.fixed_labels).float().mean() >= 0.8  # measured 1.0
    assert Path(conditional_run.summary["samples"]).name == "epoch_005.png"


# ---------------------------------------------------------------- n_critic


@pytest.fixture(scope="module")
def wgan_run(tmp_path_factory):
    """gan_digits as a WGAN-GP with n_critic 5 (no dropout), a cosine schedule per network, 2 epochs."""
    root = tmp_path_factory.mktemp("wgan")
    overrides = ["train.epochs=2", "loss={name: wgan_gp, n_critic: 5}", "model.discriminator.dropout=0.0",
                 "scheduler={name: cosine}", "train.checkpoint_every={steps: 25}", "train.keep_last=100"]
    summary = fit(gan_digits(*overrides), root, "full")
    assert summary["status"] == "finished" and summary["steps"] == 2 * STEPS_PER_EPOCH, summary
    return SimpleNamespace(summary=summary, run=Path(summary["run_dir"]), root=root, overrides=overrides,
                           ckpt=summary["checkpoints"]["last"])


def optimizer_steps(payload: dict) -> dict:
    return {net: {int(state["step"]) for state in payload["optimizer"][net]["state"].values()}
            for net in ("generator", "discriminator")}


def test_n_critic_5_steps_the_generator_a_fifth_as_often(wgan_run):
    payload = checkpoint.load(wgan_run.ckpt)
    steps = optimizer_steps(payload)
    assert steps["discriminator"] == {2 * STEPS_PER_EPOCH}  # every batch: 42
    assert steps["generator"] == {(2 * STEPS_PER_EPOCH) // 5}  # every 5th discriminator step of the run: 8
    (g_steps,), (d_steps,) = steps["generator"], steps["discriminator"]
    assert 0.15 < g_steps / d_steps < 0.25  # ~1/5 (the last batch of an epoch has no generator step)
    # the critic's outputs are raw scores, logged as such; the discriminator's LR decayed to the end
    final = wgan_run.summary["final"]
    assert all(math.isfinite(final[f"train/{k}"]) for k in ("d_loss", "g_loss", "d_real", "d_fake"))
    assert payload["optimizer"]["discriminator"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    # mid-epoch: D steps and G steps so far
    mid = checkpoint.load(wgan_run.run / "checkpoints" / "step-000000025.pt")  # epoch 2, batch 4
    assert optimizer_steps(mid) == {"generator": {25 // 5}, "discriminator": {25}}  # counted across epochs


def test_n_critic_resumed_mid_epoch_ends_bitwise_equal(wgan_run):
    copy = wgan_run.root / "resumed"
    shutil.copytree(wgan_run.run, copy)
    summary = fit(gan_digits(*wgan_run.overrides), wgan_run.root,
                  resume=str(copy / "checkpoints" / "step-000000025.pt"))
    full, resumed = checkpoint.load(wgan_run.ckpt), checkpoint.load(summary["checkpoints"]["last"])
    assert optimizer_steps(resumed) == optimizer_steps(full)
    assert same_tensors(resumed["model"], full["model"])


def test_n_critic_generator_schedule_reaches_its_end(wgan_run):
    payload = checkpoint.load(wgan_run.ckpt)
    assert payload["optimizer"]["generator"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_the_generator_trains_when_an_epoch_has_fewer_batches_than_n_critic(tmp_path):
    config = {"name": "few", "seed": 0, "data": {"dataset": {"name": "synthetic", "samples": 160, "shape": [1, 8, 8],
                                                             "classes": 2}, "batch_size": 64, "val_split": 0.2},
              "model": {"name": "gan", "latent_dim": 8, "generator": {"hidden": [16]}, "discriminator": {"hidden": [16]}},
              "loss": {"name": "wgan_gp", "n_critic": 5}, "train": {"epochs": 5, "device": "cpu"}}
    summary = fit(config, tmp_path)  # 2 batches per epoch, 10 discriminator steps in all
    assert summary["steps"] == 10
    assert optimizer_steps(checkpoint.load(summary["checkpoints"]["last"]))["generator"] == {2}


# ---------------------------------------------------------------- configs that do not fit a GAN


def gan_config(**sections) -> dict:
    config = {"name": "g", "seed": 0, "task": "gan",
              "data": {"dataset": {"name": "digits"}, "batch_size": 64, "val_split": 0.1},
              "model": {"name": "gan", "latent_dim": 8, "generator": {"hidden": [16]}, "discriminator": {"hidden": [16]}},
              "loss": {"name": "gan_bce"},
              "optimizer": {"generator": {"name": "adam", "lr": 1e-3}, "discriminator": {"name": "sgd", "lr": 1e-2}},
              "train": {"epochs": 1, "device": "cpu", "monitor": "val/g_loss"}}
    config.update(sections)
    return config


def test_a_good_gan_config_resolves_both_networks():
    config = validate(gan_config())
    assert config.task == "gan" and config.loss == {"name": "gan_bce", "label_smoothing": 0.0, "n_critic": 1}
    assert config.optimizer["generator"]["name"] == "adam" and config.optimizer["discriminator"]["name"] == "sgd"
    assert config.model["conditional"] is False and config.model["generator"]["type"] == "mlp"
    # task from the model; one optimizer for both; the DCGAN recipe when none is given
    data = gan_config(optimizer={"name": "adam", "lr": 0.01})
    del data["task"]
    both = validate(data)
    assert both.task == "gan" and both.optimizer["generator"] == both.optimizer["discriminator"]
    assert both.optimizer["generator"]["lr"] == 0.01
    default = validate(gan_config(optimizer=None)).optimizer
    assert default["generator"]["lr"] == default["discriminator"]["lr"] == 2e-4
    assert default["generator"]["betas"] == [0.5, 0.999]
    assert load(GAN_DIGITS).task == "gan"  # the shipped config


def without(section: str, key: str) -> dict:
    config = gan_config()
    del config[section][key]
    return config


def with_data(**items) -> dict:
    config = gan_config()
    config["data"] = {**config["data"], **items}
    return config


def with_train(**items) -> dict:
    config = gan_config()
    config["train"] = {**config["train"], **items}
    return config


CLASSIFIER_WITH_GAN_LOSS = {"name": "c", "data": {"dataset": {"name": "digits"}}, "model": {"name": "mlp"},
                            "loss": {"name": "gan_hinge"}, "train": {"device": "cpu"}}


@pytest.mark.parametrize("config, key, words", [
    (without("model", "generator"), "model.generator", "required"),
    (without("model", "discriminator"), "model.discriminator", "required"),
    (gan_config(loss={"name": "wgan_gp", "n_critic": 0}), "loss.n_critic", "greater than 0"),
    (gan_config(loss={"name": "gan_bce", "n_critic": 0}), "loss.n_critic", "greater than 0"),
    (CLASSIFIER_WITH_GAN_LOSS, "loss.name", "(a loss for task gan)"),
    (gan_config(loss={"name": "cross_entropy"}), "loss.name", "does not fit task gan"),
    (with_data(train_transforms=[{"normalize": "digits"}], eval_transforms=[{"normalize": "digits"}]),
     "data.train_transforms", "remove normalize"),
    (with_data(dataset={"name": "sine"}), "data.dataset.name", "not an image dataset"),
    (with_data(dataset={"name": "digits_rows"}), "data.dataset.name", "not an image dataset"),
    (gan_config(optimizer={"generator": {"name": "adam"}, "discriminator": {"name": "adam"}, "critic": {"name": "sgd"}}),
     "optimizer.critic", "unknown key"),
    (gan_config(optimizer={"generatr": {"name": "adam"}, "discriminator": {"name": "adam"}}),
     "optimizer.generatr", "did you mean 'generator'"),
    (gan_config(optimizer={"generator": {"name": "adam"}}), "optimizer.discriminator", "required"),
    (gan_config(scheduler={"gen": {"name": "cosine"}}), "scheduler.gen", "unknown key"),
    (with_train(accumulate=2), "train.accumulate", "not supported for GANs"),
    (with_train(l1=0.01), "train.l1", "not supported for GANs"),
    (gan_config(scheduler={"generator": {"name": "reduce_on_plateau", "monitor": "val/acc"},
                           "discriminator": {"name": "constant"}}), "scheduler.generator.monitor", "unknown metric"),
    (gan_config(model={"name": "mlp"}), "model.name", "task gan needs model"),
    (with_train(monitor="val/acc"), "train.monitor", "unknown metric"),
], ids=["no-generator", "no-discriminator", "n_critic-0", "bce-n_critic-0", "gan-loss-on-classifier",
        "classification-loss-on-gan", "normalize", "sine", "digits_rows", "optimizer-extra-net", "optimizer-typo",
        "optimizer-missing-net", "scheduler-extra-net", "accumulate", "l1", "plateau-monitor", "task-gan-model-mlp", "monitor"])
def test_bad_gan_config_is_a_config_error_naming_the_key(config, key, words):
    with pytest.raises(ConfigError) as err:
        validate(config)
    named = [p for p in err.value.problems if p.startswith(f"{key}:")]
    assert named and words in named[0], err.value.problems
    assert err.value.exit_code == 2


@pytest.mark.parametrize("role", ["generator", "discriminator"])
def test_dcgan_size_mismatch_is_a_config_error_at_build_time(role, tmp_path):
    from dlcli.training.build import build_trainer

    config = gan_config()
    config["model"] = {**config["model"], role: {"type": "dcgan", "channels": [8, 8, 8, 8]}}  # 8x8 / 16
    cfg = validate(config)  # the image size is known only once the data is read
    with pytest.raises(ConfigError) as err:
        build_trainer(cfg)
    assert str(err.value).startswith(f"model.{role}.channels: 4 resolution steps") and "8x8" in str(err.value)
    # through `dlcli train`: exit 2, nothing written
    (tmp_path / "cfg.yaml").write_text(json.dumps(config))
    r = cli("train", tmp_path / "cfg.yaml", "--output-dir", tmp_path / "runs", "-q")
    assert_one_error(r, 2, f"model.{role}.channels", "8x8")
    assert not (tmp_path / "runs").exists()
