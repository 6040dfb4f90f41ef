"""Dataset builders (mnist/cifar10 via torchvision, image_folder, csv) and the train/val split.

Real files are written into tmp_path in each dataset's on-disk format: IDX for MNIST, PNG class
folders for image_folder, CSV tables. CLI runs are real subprocesses (each costs a torch import),
so there are few of them; the rest runs in-process, some through typer's CliRunner, which runs the
same command functions and exit-code mapping as `python -m dlcli`.
"""

import csv
import gzip
import json
import struct

import numpy as np
import pytest
from typer.testing import CliRunner

from dlcli.errors import DataError

N_MNIST_TRAIN, N_MNIST_TEST = 200, 60
COLOURS = {"blue": (30, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}  # sorted = class order


# ---------------------------------------------------------------- file writers


def write_idx(path, array) -> None:
    """IDX as MNIST ships it: big-endian magic (0x0803 images, 0x0801 labels), dims, uint8 data."""
    array = np.asarray(array, dtype=np.uint8)
    magic = {3: 0x00000803, 1: 0x00000801}[array.ndim]
    with open(path, "wb") as handle:
        handle.write(struct.pack(">I", magic))
        handle.write(struct.pack(f">{array.ndim}I", *array.shape))
        handle.write(array.tobytes())


def mnist_arrays(n: int, seed: int):
    """Images with a bright 8x4 block whose position encodes the label (learnable in one epoch)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 30, size=(n, 28, 28))
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[i, 4 + 12 * row: 12 + 12 * row, 2 + 5 * col: 6 + 5 * col] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def make_mnist(root, n_train=N_MNIST_TRAIN, n_test=N_MNIST_TEST) -> dict:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = mnist_arrays(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[prefix] = (images, labels)
    return arrays


def make_image_folder(root, per_class: int = 6, size: int = 12):
    """root/<colour>/<colour>_<i>.png: noisy solid-colour 12x12 RGB images, one folder per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.array(rgb)[None, None, :] + rng.integers(-20, 20, size=(size, size, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(root / name / f"{name}_{i}.png")
    return root


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def assert_clean_failure(stderr: str, code: int, expected: int) -> None:
    assert code == expected, stderr
    assert "Traceback" not in stderr, stderr
    assert "error:" in stderr, stderr


def invoke(args):
    """The real CLI command functions in-process (no extra torch import)."""
    from dlcli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert isinstance(result.exception, (SystemExit, type(None))), repr(result.exception)
    return result


# ---------------------------------------------------------------- MNIST (torchvision, IDX files)


def test_mnist_reads_idx_files_written_by_hand(tmp_path):
    import torch

    from dlcli.data.datasets import DATASETS

    arrays = make_mnist(tmp_path)
    spec = {"name": "mnist", "root": str(tmp_path), "download": False}
    train = DATASETS.build(spec, "train")
    assert train.x.dtype == torch.uint8
    assert tuple(train.x.shape) == (N_MNIST_TRAIN, 1, 28, 28)
    assert train.y.dtype == torch.long
    assert train.y.tolist() == arrays["train"][1].tolist()
    assert torch.equal(train.x[:, 0], torch.from_numpy(arrays["train"][0]))
    assert len(train.class_names) == 10 and train.class_names[3].startswith("3")
    assert train.kind == "image" and train.in_memory

    test = DATASETS.build(spec, "test")
    assert tuple(test.x.shape) == (N_MNIST_TEST, 1, 28, 28)
    assert test.y.tolist() == arrays["t10k"][1].tolist()
    assert test.class_names == train.class_names


def test_mnist_train_then_eval_via_cli(run_cli, write_config, tmp_path):
    make_mnist(tmp_path / "data")
    cfg = write_config({
        "name": "mnist-tiny",
        "seed": 0,
        "data": {"dataset": {"name": "mnist", "root": str(tmp_path / "data"), "download": False},
                 "val_split": 0.2, "batch_size": 32,
                 "train_transforms": [{"normalize": "mnist"}], "eval_transforms": [{"normalize": "mnist"}]},
        "model": {"name": "cnn", "channels": [8, 16]},
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 1, "device": "cpu", "monitor": "val/acc"},
    })
    result = run_cli("train", cfg, "--output-dir", tmp_path / "runs", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "finished" and summary["epochs"] == 1
    assert summary["steps"] == 5  # 160 training images / batch 32
    run_dir = tmp_path / "runs" / "mnist-tiny" / "v1"
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    assert "input [1, 28, 28]" in result.stderr

    result = run_cli("eval", run_dir / "checkpoints" / "last.pt", "--split", "test", "--json")
    assert result.returncode == 0, result.stderr
    evaluation = json.loads(result.stdout)
    assert evaluation["split"] == "test"
    assert evaluation["samples"] == N_MNIST_TEST  # the t10k files, not the training pool
    assert len(evaluation["class_names"]) == 10
    assert set(evaluation["metrics"]) >= {"loss", "acc", "f1", "top5"}
    assert sum(map(sum, evaluation["confusion"])) == N_MNIST_TEST
    assert evaluation["metrics"]["acc"] > 0.5  # the label is a bright block: easy after one epoch


def test_mnist_missing_files_cli_exit_3(run_cli, write_config, tmp_path):
    empty = tmp_path / "empty-root"
    empty.mkdir()
    cfg = write_config({"name": "nomnist", "data": {"dataset": {"name": "mnist", "root": str(empty), "download": False}},
                        "model": {"name": "mlp"}, "train": {"epochs": 1, "device": "cpu"}})
    result = run_cli("train", cfg)  # default output dir: ./runs under tmp_path
    assert_clean_failure(result.stderr, result.returncode, 3)
    assert str(empty) in result.stderr
    assert "MNIST/raw" in result.stderr  # the hint says where to put the files
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name, layout", [("mnist", "MNIST"), ("cifar10", "cifar-10-batches-py")])
def test_missing_torchvision_dataset_is_a_data_error(tmp_path, name, layout):
    from dlcli.data.datasets import DATASETS

    with pytest.raises(DataError) as info:
        DATASETS.build({"name": name, "root": str(tmp_path), "download": False}, "train")
    err = info.value
    assert err.exit_code == 3
    assert str(tmp_path) in str(err)
    assert layout in (err.hint or "")


def test_cifar10_missing_cli_exit_3_and_no_run_dir(tmp_path, write_config):
    cfg = write_config({"name": "nocifar", "data": {"dataset": {"name": "cifar10", "root": str(tmp_path / "nothing"),
                                                                "download": False}},
                        "model": {"name": "mlp"}, "train": {"epochs": 1, "device": "cpu"}})
    result = invoke(["train", cfg, "--output-dir", tmp_path / "runs"])
    assert_clean_failure(result.stderr, result.exit_code, 3)
    assert str(tmp_path / "nothing") in result.stderr
    assert not (tmp_path / "runs").exists()


def test_mnist_file_placed_still_compressed_is_a_data_error(tmp_path):
    """A .gz placed under the uncompressed name is a data problem (exit 3), not an internal error."""
    from dlcli.data.datasets import DATASETS

    make_mnist(tmp_path)
    labels = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels.write_bytes(gzip.compress(labels.read_bytes()))
    with pytest.raises(DataError) as info:
        DATASETS.build({"name": "mnist", "root": str(tmp_path), "download": False}, "train")
    assert str(tmp_path) in str(info.value)


# ---------------------------------------------------------------- image_folder


def image_folder_config(root, **data) -> dict:
    return {
        "name": "colours",
        "seed": 0,
        "data": {"dataset": {"name": "image_folder", "root": str(root)}, "val_split": 0.0, "batch_size": 6,
                 "train_transforms": [{"resize": {"size": [8, 8]}}],
                 "eval_transforms": [{"resize": {"size": [8, 8]}}], **data},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "adam", "lr": 0.05},
        "train": {"epochs": 2, "device": "cpu", "monitor": "train/loss"},
    }


def test_image_folder_train_then_infer_folder_via_cli(run_cli, write_config, tmp_path):
    folder = make_image_folder(tmp_path / "colours")
    config = image_folder_config(folder)
    config["train"]["epochs"] = 6  # 18 steps: enough to separate the colours whatever the shuffle order
    cfg = write_config(config)
    result = run_cli("train", cfg, "--output-dir", tmp_path / "runs", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "3 classes, input [3, 8, 8]" in result.stderr  # resized from 12x12 by the eval transforms
    ckpt = tmp_path / "runs" / "colours" / "v1" / "checkpoints" / "best.pt"
    assert ckpt.is_file()

    out = tmp_path / "preds.jsonl"
    result = run_cli("infer", ckpt, folder, "--json", "--output", out)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(printed) == len(COLOURS) * 6 and written == printed
    for row in printed:
        assert row["class"] in COLOURS
        assert [t["class"] for t in row["top_k"]][0] == row["class"]
        assert sorted(t["class"] for t in row["top_k"]) == sorted(COLOURS)  # top-3 of 3 classes
    correct = sum(row["class"] == row["input"].split("/")[-2] for row in printed)
    assert correct >= 15, printed  # distinct solid colours: should be near perfect


def test_image_folder_corrupt_image_names_the_file(tmp_path, write_config):
    folder = make_image_folder(tmp_path / "colours")
    bad = folder / "red" / "zz_corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    cfg = write_config(image_folder_config(folder, batch_size=32))
    result = invoke(["train", cfg, "--output-dir", tmp_path / "runs", "--quiet"])
    assert_clean_failure(result.stderr, result.exit_code, 3)
    assert str(bad) in result.stderr


def test_16_bit_grayscale_images_keep_their_brightness(tmp_path):
    """PIL's convert to 8-bit clips 16-bit values (a nearly black image read as white)."""
    import torch
    from PIL import Image

    from dlcli.data.files import load_image

    for value in (1000, 32768, 65535):
        path = tmp_path / f"g{value}.png"
        Image.fromarray(np.full((4, 5), value, np.uint16)).save(path)
        gray, rgb = load_image(str(path), 1), load_image(str(path), 3)
        assert gray.shape == (1, 4, 5) and rgb.shape == (3, 4, 5)
        assert torch.allclose(gray, torch.full_like(gray, value / 65535)) and torch.equal(rgb[0], gray[0])


def test_load_image_corrupt_file_is_data_error(tmp_path):
    from dlcli.data.files import load_image

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match="broken.jpg"):
        load_image(str(bad), 3)


def test_image_folder_train_batches_use_train_transforms_with_val_split(tmp_path):
    """Train and val share the file-backed dataset; the val loader must not swap in eval transforms."""
    import torch

    from dlcli.config import validate
    from dlcli.data.files import load_image
    from dlcli.data.transforms import compose
    from dlcli.training.build import build_trainer

    folder = make_image_folder(tmp_path / "colours")
    raw = image_folder_config(folder, val_split=0.34, shuffle=False, batch_size=64, cache="off",
                              train_transforms=[{"resize": {"size": [8, 8]}}, {"vertical_flip": {"p": 1.0}}])
    raw["train"]["monitor"] = "val/loss"
    config = validate(raw)
    trainer, _ = build_trainer(config)
    batch = next(iter(trainer.train_batches))
    subset = trainer.train_batches.loader.dataset.dataset
    first = load_image(subset.dataset.paths[subset.indices[0]], 3)
    resized = compose(config.data.eval_transforms)(first)
    assert not torch.allclose(resized, resized.flip(-2))  # noisy image: flipping changes it
    flipped = bool(torch.allclose(batch.x[0], resized.flip(-2)))
    assert flipped, "the training batch got the eval transforms, not train_transforms (no vertical flip)"
    val_batch = next(iter(trainer.val_batches))
    val_subset = trainer.val_batches.loader.dataset.dataset
    val_first = compose(config.data.eval_transforms)(load_image(val_subset.dataset.paths[val_subset.indices[0]], 3))
    assert torch.allclose(val_batch.x[0], val_first)  # val: eval transforms only, no flip


# ---------------------------------------------------------------- csv


def csv_config(path, seed: int = 3) -> dict:
    return {
        "name": "weights",
        "seed": seed,
        "data": {"dataset": {"name": "csv", "path": str(path), "label": "label", "weight": "w"},
                 "val_split": 0.0, "shuffle": False, "batch_size": 64, "standardize": False},
        "model": {"name": "mlp", "hidden": [8]},
        "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.0, "weight_decay": 0.0},
        "train": {"epochs": 1, "device": "cpu", "monitor": "train/loss"},
    }


CSV_HEADER = ["a", "b", "label", "w"]
CSV_ROWS = [(0.5, 1.0, 0, 1.0), (1.5, -0.5, 1, 2.0), (-1.0, 0.3, 2, 1.0),
            (0.2, 0.2, 0, 0.5), (2.0, 1.0, 1, 1.0), (-0.7, -1.2, 2, 1.0)]


def one_full_batch_epoch(path):
    """(initial state_dict, state_dict after one full-batch SGD step, epoch metrics)."""
    from dlcli.cli.progress import Progress
    from dlcli.config import validate
    from dlcli.training.build import build_trainer

    trainer, meta = build_trainer(validate(csv_config(path)))
    assert meta.feature_names == ["a", "b"]  # the weight column is not a feature
    assert len(trainer.train_batches) == 1
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.state.epoch = 1
    metrics = trainer.train_epoch(Progress(1, quiet=True))
    return before, trainer.model.state_dict(), metrics


def assert_same_state(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_csv_zero_weight_sample_does_not_move_the_weights(tmp_path):
    import torch

    base = write_csv(tmp_path / "base.csv", CSV_HEADER, CSV_ROWS)
    with_zero = write_csv(tmp_path / "zero.csv", CSV_HEADER, CSV_ROWS + [(9.0, -9.0, 1, 0.0)])
    with_one = write_csv(tmp_path / "one.csv", CSV_HEADER, CSV_ROWS + [(9.0, -9.0, 1, 1.0)])

    init_base, after_base, _ = one_full_batch_epoch(base)
    init_zero, after_zero, _ = one_full_batch_epoch(with_zero)
    init_one, after_one, _ = one_full_batch_epoch(with_one)
    assert_same_state(init_base, init_zero)  # same seed, same model: same start
    assert any(not torch.equal(init_base[k], after_base[k]) for k in init_base)  # the step did something
    assert_same_state(after_base, after_zero)
    # Control: the same extra row with weight 1 does change the update.
    assert any(not torch.allclose(after_base[k], after_one[k], atol=1e-6) for k in after_base)


def test_csv_weight_two_equals_duplicated_row(tmp_path):
    rows_unit = [(a, b, y, 1.0) for a, b, y, _ in CSV_ROWS]
    doubled = write_csv(tmp_path / "doubled.csv", CSV_HEADER, [rows_unit[0][:3] + (2.0,)] + rows_unit[1:])
    duplicated = write_csv(tmp_path / "dup.csv", CSV_HEADER, [rows_unit[0]] + rows_unit)
    _, after_doubled, m_doubled = one_full_batch_epoch(doubled)
    _, after_dup, m_dup = one_full_batch_epoch(duplicated)
    assert_same_state(after_doubled, after_dup)
    assert m_doubled["train/loss"] == pytest.approx(m_dup["train/loss"], rel=1e-5)


def test_csv_reads_features_labels_and_weights(tmp_path):
    import torch

    from dlcli.data.datasets import DATASETS

    path = write_csv(tmp_path / "t.csv", ["x1", "name", "x2", "label", "w"],
                     [(1.0, 5, 2.0, "cat", 0.5), (3.0, 6, 4.0, "dog", 1.0), (5.0, 7, 6.0, "cat", 0.0)])
    source = DATASETS.build({"name": "csv", "path": str(path), "label": "label", "weight": "w",
                             "features": ["x1", "x2"]}, "train")
    assert source.kind == "tabular" and source.feature_names == ["x1", "x2"]
    assert source.class_names == ["cat", "dog"]
    assert source.y.tolist() == [0, 1, 0]
    assert torch.equal(source.x, torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    assert source.weights.tolist() == [0.5, 1.0, 0.0]


@pytest.mark.parametrize("header, rows, spec, expected", [
    (["a", "b", "label"], [(1, 2, 0), (3, "oops", 1)], {"numeric": ["b"]}, [":3", "'b'", "oops"]),
    (["a", "b", "label", "w"], [(1, 2, 0, 1), (3, 4, 1, "heavy")], {"weight": "w"}, [":3", "'w'", "heavy"]),
    (["a", "label"], [(1, 0)], {"features": ["a", "b"]}, ["missing column", "'b'"]),
    (["a", "b"], [(1, 0)], {}, ["missing column", "'label'"]),
    (["a", "b", "label"], [(1, 2, 0), (3, 4)], {}, [":3", "expected 3 fields"]),
    (["a", "b", "label", "w"], [(1, 2, 0, -1)], {"weight": "w"}, ["'w'", ">= 0"]),
    (["a", "a", "label"], [(1, 2, 0), (3, 4, 1)], {}, ["['a']", "more than once"]),
])
def test_csv_bad_content_is_a_data_error_naming_file_and_place(tmp_path, header, rows, spec, expected):
    from dlcli.data.datasets import DATASETS

    path = write_csv(tmp_path / "table.csv", header, rows)
    with pytest.raises(DataError) as info:
        DATASETS.build({"name": "csv", "path": str(path), **spec}, "train")
    message = str(info.value)
    assert "table.csv" in message
    for part in expected:
        assert part in message, message
    assert info.value.exit_code == 3


def test_an_unreadable_csv_is_a_data_error_naming_it(tmp_path, monkeypatch):
    import dlcli.data.text
    from dlcli.data.datasets import DATASETS

    path = write_csv(tmp_path / "locked.csv", ["a", "label"], [(1, 0), (2, 1)])

    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    # chmod 000 does not stop root, who runs CI: the data readers' open() is denied instead
    monkeypatch.setattr(dlcli.data.text, "open", denied, raising=False)
    with pytest.raises(DataError, match="locked.csv: cannot read the file: Permission denied") as info:
        DATASETS.build({"name": "csv", "path": str(path)}, "train")
    assert info.value.exit_code == 3


def test_csv_missing_file_and_missing_test_split(tmp_path):
    from dlcli.data.datasets import DATASETS

    with pytest.raises(DataError, match="nope.csv"):
        DATASETS.build({"name": "csv", "path": str(tmp_path / "nope.csv")}, "train")
    with pytest.raises(DataError, match="test_path"):
        DATASETS.build({"name": "csv", "path": str(tmp_path / "nope.csv")}, "test")


# ---------------------------------------------------------------- train/val split


def test_split_indices_is_stratified_and_repeatable():
    import torch

    from dlcli.data.splits import split_indices

    labels = torch.tensor([0] * 40 + [1] * 40 + [2] * 20)
    train, val = split_indices(labels, 0.25, seed=0, stratify=True)
    assert len(val) == 25 and len(train) == 75
    assert sorted(train + val) == list(range(100))  # a partition
    assert train == sorted(train) and val == sorted(val)
    assert torch.bincount(labels[val]).tolist() == [10, 10, 5]  # class proportions kept
    assert torch.bincount(labels[train]).tolist() == [30, 30, 15]

    assert split_indices(labels, 0.25, seed=0, stratify=True) == (train, val)  # same seed, same split
    other = [split_indices(labels, 0.25, seed=s, stratify=True)[1] for s in (1, 2, 3)]
    assert any(v != val for v in other)  # the seed matters
    assert all(torch.bincount(labels[v]).tolist() == [10, 10, 5] for v in other)


def test_split_indices_without_validation_or_stratification():
    import torch

    from dlcli.data.splits import split_indices

    labels = torch.tensor([0] * 10 + [1] * 10)
    assert split_indices(labels, 0.0, seed=0, stratify=True) == (list(range(20)), [])
    train, val = split_indices(labels, 0.5, seed=7, stratify=False)
    assert len(val) == 10 and sorted(train + val) == list(range(20))
    assert split_indices(labels, 0.5, seed=7, stratify=False) == (train, val)
    # A class with a single sample cannot be stratified: still a valid split, no error.
    lonely = torch.tensor([0] * 9 + [1])
    train, val = split_indices(lonely, 0.3, seed=0, stratify=True)
    assert len(val) == 3 and sorted(train + val) == list(range(10))


def test_split_indices_one_sample_is_a_data_error():
    import torch

    from dlcli.data.splits import split_indices

    with pytest.raises(DataError):
        split_indices(torch.tensor([0]), 0.5, seed=0, stratify=True)


@pytest.mark.parametrize("labels, val_split", [
    ([0, 0, 1, 1], 0.9),  # the validation share rounds up to every sample
    ([0, 0, 1, 1, 2, 2, 3, 3], 0.9),  # 1 training sample left for 4 classes: cannot stratify
])
def test_split_indices_degenerate_sizes_never_raise_raw_errors(labels, val_split):
    """Either a valid partition with samples on both sides, or a DataError (exit 3) explaining why."""
    import torch

    from dlcli.data.splits import split_indices

    try:
        train, val = split_indices(torch.tensor(labels), val_split, seed=0, stratify=True)
    except DataError:
        return
    assert train and val and sorted(train + val) == list(range(len(labels)))

