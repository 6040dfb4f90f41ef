"""The device-resident path and the DataLoader path give the same batches and the same training."""

import io

import pytest
import torch

from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.data.loading import HostLoaderBatches, LoaderBatches, TensorBatches
from dlcli.errors import ConfigError, DataError
from dlcli.training.build import build_trainer
from tests.conftest import tiny_digits_config


def config(loader, **data):
    base = tiny_digits_config(train={"epochs": 1, "device": "cpu"})
    base["data"].update({"loader": loader, "train_transforms": [{"random_crop": {"size": 8, "padding": 1}},
                                                                "horizontal_flip", {"normalize": "digits"}]}, **data)
    return validate(base)


def test_auto_picks_the_device_path_within_budget_and_the_dataloader_beyond():
    assert isinstance(build_trainer(config("auto"))[0].train_batches, TensorBatches)
    tiny_budget = build_trainer(config("auto", memory_budget_gb=1e-9))[0]
    assert isinstance(tiny_budget.train_batches, HostLoaderBatches)
    assert isinstance(build_trainer(config("dataloader"))[0].train_batches, HostLoaderBatches)


def test_same_batches_and_same_training_result():
    runs = {}
    for loader in ("device", "dataloader"):
        trainer, _ = build_trainer(config(loader, num_workers=0))
        torch.manual_seed(5)  # the augmentation draws from the global RNG in both paths
        first = [(b.x.clone(), b.y.clone()) for _, b in zip(range(3), trainer.train_batches)]
        for _ in range(2):
            trainer.train_epoch(Progress(1, quiet=True, stream=io.StringIO()))
        runs[loader] = first, trainer.model.state_dict()
    (batches_a, weights_a), (batches_b, weights_b) = runs["device"], runs["dataloader"]
    for (xa, ya), (xb, yb) in zip(batches_a, batches_b):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_dataloader_path_with_workers_keeps_the_order():
    plain, _ = build_trainer(config("device"))
    workers, _ = build_trainer(config("dataloader", num_workers=2, train_transforms=[{"normalize": "digits"}],
                                      eval_transforms=[{"normalize": "digits"}]))
    ya = torch.cat([b.y for b in plain.train_batches])
    yb = torch.cat([b.y for b in workers.train_batches])
    assert torch.equal(ya, yb)


def test_device_loader_on_file_backed_data_is_a_config_error(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (4, 4), (i * 40, 0, 0)).save(tmp_path / cls / f"{i}.png")
    cfg = tiny_digits_config()
    cfg["data"] = {"dataset": {"name": "image_folder", "root": str(tmp_path)}, "loader": "device", "val_split": 0,
                   "cache": "off"}
    cfg["train"]["monitor"] = "train/loss"
    with pytest.raises(ConfigError, match="data.loader: device needs an in-memory dataset"):
        build_trainer(validate(cfg))
    cfg["data"]["loader"] = "auto"
    assert isinstance(build_trainer(validate(cfg))[0].train_batches, LoaderBatches)


class _Numbers(torch.utils.data.Dataset):
    """A file-backed stand-in: item i is (a 1x2x2 image of value i, label i % 3)."""

    def __len__(self):
        return 40

    def __getitem__(self, i):
        return torch.full((1, 2, 2), float(i)), i % 3


def numbers_source():
    from dlcli.data.source import Source

    return Source(y=torch.arange(40) % 3, class_names=["a", "b", "c"], kind="image", dataset=_Numbers())


def epoch_items(batches) -> list[int]:
    return [int(v) for batch in batches for v in batch.x[:, 0, 0, 0]]


@pytest.mark.parametrize("workers", [0, 1])
def test_file_backed_order_comes_from_the_shuffle_generator_alone(workers):
    """A resumed epoch (a new loader, the generator restored) redraws the order the run would have
    drawn, with or without (persistent) workers, whose seeds come from a generator of their own."""
    generator = torch.Generator().manual_seed(0)
    running = LoaderBatches(numbers_source(), 8, torch.device("cpu"), None, True, generator, num_workers=workers)
    first = epoch_items(running)
    state = generator.get_state()
    second = epoch_items(running)
    assert sorted(first) == sorted(second) == list(range(40)) and first != second
    restored = torch.Generator()
    restored.set_state(state)
    resumed = LoaderBatches(numbers_source(), 8, torch.device("cpu"), None, True, restored, num_workers=workers)
    assert epoch_items(resumed) == second


class _NoisyNumbers(_Numbers):
    """Item i plus noise drawn from the process's RNG, as a random augmentation would."""

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x + torch.rand(()), y


def test_a_resumed_epoch_augments_like_the_interrupted_one_with_persistent_workers():
    """Workers seed each item's augmentation from the epoch's seed and the item, not from where
    their own (persistent, freshly started on resume) random streams happen to be."""
    def loader(generator):
        source = numbers_source()
        source.dataset = _NoisyNumbers()
        return LoaderBatches(source, 8, torch.device("cpu"), lambda x: x, True, generator, num_workers=1)

    def items(batches):
        return [tuple(v.tolist()) for batch in batches for v in batch.x[:, 0, 0]]

    generator = torch.Generator().manual_seed(0)
    running = loader(generator)
    first = items(running)
    state = generator.get_state()
    second = items(running)
    restored = torch.Generator()
    restored.set_state(state)
    assert items(loader(restored)) == second
    assert sorted(first) != sorted(second)  # fresh noise each epoch


def test_each_rank_gets_its_own_worker_seeds_and_no_empty_shard(monkeypatch):
    seeds = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        batches = LoaderBatches(numbers_source(), 13, torch.device("cpu"), None, False, torch.Generator().manual_seed(0))
        seeds[rank] = batches.loader.generator.initial_seed()
        # 40 = 3 x 13 + 1: the last global batch of one row would leave a rank without rows; it is dropped.
        assert len(batches) == 3
        assert epoch_items(batches) == [v for start in (0, 13, 26) for v in
                                        list(range(start, start + 13))[(0, 7)[rank]:(7, 13)[rank]]]
    assert seeds[0] != seeds[1]  # per-item augmentation in workers differs across ranks


def test_training_on_a_single_class_is_a_data_error_but_evaluating_one_is_fine(tmp_path):
    """A test file may hold one class (its labels map onto the training classes); training data may not."""
    from dlcli.data.datasets import DATASETS
    from dlcli.errors import DataError

    only = tmp_path / "only.csv"
    only.write_text("a,label\n1,yes\n2,yes\n")
    assert DATASETS.build({"name": "csv", "path": str(only)}, "train").class_names == ["yes"]
    config = tiny_digits_config(data={"dataset": {"name": "csv", "path": str(only)}, "val_split": 0})
    config["train"]["monitor"] = "train/loss"
    with pytest.raises(DataError, match="single class \\(yes\\)"):
        build_trainer(validate(config))


class _BrokenItem(_Numbers):
    """Item 13 cannot be read, as a corrupt image file cannot."""

    def __getitem__(self, i):
        if i == 13:
            raise DataError("cannot read image photos/13.png: broken data stream", hint="replace the file")
        return super().__getitem__(i)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_item_that_cannot_be_read_raises_its_own_error_also_from_a_worker(workers):
    """torch re-raises a worker's exception with the worker's whole traceback as its message; the
    loader raises the worker's own error instead."""
    source = numbers_source()
    source.dataset = _BrokenItem()
    batches = LoaderBatches(source, 8, torch.device("cpu"), None, False, num_workers=workers)
    with pytest.raises(DataError) as info:
        epoch_items(batches)
    assert str(info.value) == "cannot read image photos/13.png: broken data stream"
    assert info.value.hint == "replace the file"


def test_a_corrupt_image_read_by_a_worker_process_is_one_error_line(tmp_path, write_config, run_cli):
    from tests.data.test_datasets import image_folder_config, make_image_folder

    folder = make_image_folder(tmp_path / "colours")
    bad = folder / "red" / "zz_corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    cfg = write_config(image_folder_config(folder, batch_size=4, num_workers=2, cache="off"))
    result = run_cli("train", cfg, "--output-dir", tmp_path / "runs", "--quiet")
    assert result.returncode == 3, result.stderr
    assert "Caught" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("run directory:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot read image {bad}: "), result.stderr
