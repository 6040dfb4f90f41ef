"""The image cache (dlcli/data/image_cache.py, cache_build.py, image_store.py, mapped.py), in process:
the cached pixels are the files' (exactly, or up to the documented resize), a changed folder is
rebuilt, the cache is checked against free space before anything is written, the memory-map path
reads what the device-resident path reads, and the batched random_resized_crop draws as documented."""

import os
import pickle

import numpy as np
import pytest
import torch

from dlcli.config import validate
from dlcli.data.cache_entries import cached_entries, clear_entries
from dlcli.data.datasets import DATASETS
from dlcli.data.files import load_image
from dlcli.data.image_cache import cache_dir, cached_source
from dlcli.data.mapped import MappedImages
from dlcli.errors import ConfigError, DataError, DlcliError
from tests.data.test_datasets import image_folder_config, make_image_folder


def make_photo_folder(root, per_class: int = 4, seed: int = 0):
    """root/<a|b>/<i>.jpg: JPEGs of varied, non-square sizes (40 to 80 pixels a side) holding smooth
    colour ramps, so resampling differences stay small where the geometry is right."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            height, width = rng.integers(40, 81, 2)
            rows, cols = np.mgrid[0:height, 0:width]
            ramps = [(rows / height * rng.uniform() + cols / width * rng.uniform()) * 127 for _ in range(3)]
            Image.fromarray(np.stack(ramps, -1).astype(np.uint8)).save(root / name / f"{i}.jpg", quality=95)
    return root


def data_config(folder, **data):
    return validate(image_folder_config(folder, **data)).data


def pool(data_cfg, spec=None):
    return cached_source(DATASETS.build(data_cfg.dataset, "train"), data_cfg, spec, workers=0)


def test_images_of_their_own_size_are_cached_exactly(tmp_path):
    folder = make_image_folder(tmp_path / "colours")  # 12x12 PNGs; no resize in the pipeline: stored as they are
    data = data_config(folder, train_transforms=[{"horizontal_flip": {}}], eval_transforms=[])
    files = DATASETS.build(data.dataset, "train").dataset
    cached = pool(data)
    assert cached.stored == {"channels": 3, "size": [12, 12], "resize": False}
    assert isinstance(cached.x, MappedImages) and cached.x.shape == (18, 3, 12, 12)
    for i in (0, 7, 17):
        torch.testing.assert_close(cached.x[i].float() / 255, load_image(files.paths[i], 3), rtol=0, atol=0)
    assert cached.y.tolist() == files.targets


def test_resized_images_are_the_centre_square_at_1_14_times_the_final_size(tmp_path):
    from torchvision.transforms import v2

    folder = make_photo_folder(tmp_path / "photos")
    data = data_config(folder, train_transforms=[{"random_resized_crop": {"size": 28}}],
                       eval_transforms=[{"resize": 32}, {"center_crop": 28}])
    cached = pool(data)
    assert cached.stored == {"channels": 3, "size": [32, 32], "resize": True}  # ceil(28 * 256 / 224)
    files = DATASETS.build(data.dataset, "train").dataset
    for i in range(len(files.paths)):
        expected = v2.CenterCrop(32)(v2.Resize(32, antialias=True)(load_image(files.paths[i], 3)))
        difference = (cached.x[i].float() / 255 - expected).abs()
        assert difference.mean() < 0.02 and difference.max() < 0.25, (i, difference.mean())  # resampling only


def test_cache_size_sets_the_stored_side(tmp_path):
    data = data_config(make_photo_folder(tmp_path / "photos"), cache_size=20,
                       train_transforms=[{"center_crop": 16}], eval_transforms=[{"center_crop": 16}])
    assert pool(data).x.shape == (8, 3, 20, 20)


def release_entries():
    """What the end of this process would do: drop its shared locks on the entries it used."""
    from dlcli.data import cache_entries

    for fd in cache_entries._IN_USE:
        os.close(fd)
    cache_entries._IN_USE.clear()


def test_a_changed_folder_gets_a_new_entry_and_readers_of_the_old_one_read_on(tmp_path):
    from PIL import Image

    folder, cache = make_image_folder(tmp_path / "colours"), tmp_path / "cache"
    data = data_config(folder, eval_transforms=[], train_transforms=[], cache=str(cache))
    first = pool(data)
    (built,) = cached_entries(cache)
    assert built["state"] == "in use"  # by this process
    again = pool(data)
    assert torch.equal(first.x[3], again.x[3]) and cached_entries(cache) == [built]  # found, not rebuilt
    paths = DATASETS.build(data.dataset, "train").dataset.paths
    old = first.x[3].clone()
    Image.new("RGB", (12, 12), (1, 2, 3)).save(paths[3])
    changed = pool(data)
    assert changed.x[3][:, 0, 0].tolist() == [1, 2, 3]
    assert torch.equal(first.x[3], old) and torch.equal(first.x[:4][3], old)  # the old entry is as it was
    assert len(cached_entries(cache)) == 2  # the old one is in use: not removed
    release_entries()
    Image.new("RGB", (12, 12), (4, 5, 6)).save(paths[3])
    pool(data)
    (newest,) = cached_entries(cache)  # entries nobody uses are removed once replaced
    assert newest["name"] not in (built["name"],)


def test_images_of_several_sizes_that_nothing_rescales_are_read_from_the_files(tmp_path, capsys):
    from dlcli.data.cache_build import MixedSizes
    from dlcli.data.image_cache import cache_folders

    folder, cache = make_photo_folder(tmp_path / "photos"), tmp_path / "cache"
    data = data_config(folder, train_transforms=[{"random_crop": {"size": 32}}], eval_transforms=[{"center_crop": 32}],
                       cache=str(cache))
    source = pool(data)
    assert not source.in_memory and source.stored is None  # as with data.cache: off, which crops them fine
    assert "are not all 74x66" in capsys.readouterr().err
    assert cached_entries(cache) == []  # found from the headers, before anything was decoded
    with pytest.raises(MixedSizes, match=r"images in .* are not all 74x66, .* \(.*\.jpg is \d+x\d+"):
        cache_folders(data, 0)  # `dlcli cache`: exit 3, the hint names data.cache_size
    assert pool(data_config(folder, cache_size=32, cache=str(cache))).x.shape == (8, 3, 32, 32)


def test_an_image_of_another_size_is_never_skipped_as_unreadable(tmp_path, monkeypatch):

    folder = make_image_folder(tmp_path / "colours")
    from dlcli.data import image_cache

    monkeypatch.setattr(image_cache, "check_one_size", lambda paths, size: None)  # a header that lies
    from PIL import Image

    Image.new("RGB", (9, 9)).save(folder / "red" / "zz.png")
    with pytest.raises(DataError, match="images differ in size: .*zz.png is 9x9") as info:
        pool(data_config(folder, train_transforms=[], eval_transforms=[], skip_bad_images=True))
    assert info.value.hint is None


def test_a_corrupt_first_image_is_skipped_too(tmp_path):
    folder = make_image_folder(tmp_path / "colours")
    (folder / "blue" / "aaa.png").write_bytes(b"not a png")
    cached = pool(data_config(folder, skip_bad_images=True))
    assert len(cached) == 18 and cached.skipped == ["blue/aaa.png"]


def test_a_corrupt_image_stops_the_build_or_is_skipped_and_counted(tmp_path):
    folder = make_image_folder(tmp_path / "colours")
    bad = folder / "green" / "zz.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    with pytest.raises(DataError, match=f"cannot read image {bad}"):
        pool(data_config(folder))
    assert not any(row["state"] == "complete" for row in cached_entries(cache_dir()) if row["folder"] == str(folder))
    skipping = pool(data_config(folder, skip_bad_images=True))
    assert len(skipping) == 18 and skipping.skipped == ["green/zz.png"]
    with pytest.raises(DataError, match=f"cannot read image {bad}"):  # the cache remembers, the setting decides
        pool(data_config(folder))


def test_the_cache_is_checked_against_free_space_before_anything_is_written(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    folder = tmp_path / "cache"
    data = data_config(make_image_folder(tmp_path / "colours"), cache=str(folder))
    with pytest.raises(DlcliError) as info:
        pool(data)
    assert info.value.exit_code == 1
    assert str(info.value) == f"image cache {folder}: needs 5.4 KB, only 1.0 KB free on its disk"  # 18 x 3 x 10 x 10
    assert not folder.exists()  # nothing written, not even the folder or a lock file


def test_the_memory_map_path_reads_what_the_device_path_reads(tmp_path):
    from dlcli.data.loading import HostLoaderBatches, TensorBatches, make_batches
    from dlcli.data.transforms import compose

    source = pool(data_config(make_image_folder(tmp_path / "colours"), eval_transforms=[], train_transforms=[]))
    augment = compose([{"name": "random_resized_crop", "size": 8, "scale": [0.3, 1.0], "ratio": [0.75, 1.33]},
                       {"name": "horizontal_flip", "p": 0.5}])
    batches = {}
    for budget, kind in ((1.0, TensorBatches), (1e-9, HostLoaderBatches)):
        torch.manual_seed(7)  # the augmentation's draws
        made = make_batches(source, 5, torch.device("cpu"), augment, True, torch.Generator().manual_seed(3),
                            num_workers=1, budget_gb=budget)  # a worker process: MappedImages travels by path
        assert isinstance(made, kind)
        batches[kind] = [(b.x, b.y) for b in made]
    for (x1, y1), (x2, y2) in zip(batches[TensorBatches], batches[HostLoaderBatches], strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_mapped_images_subsets_are_views_and_reads_keep_the_order_asked(tmp_path):
    path = tmp_path / "images.u8"
    pixels = np.arange(6 * 2 * 2 * 2, dtype=np.uint8).reshape(6, 2, 2, 2)
    pixels.tofile(path)
    images = MappedImages(str(path), pixels.shape)
    view = images.subset([5, 1, 3])
    assert view.shape == (3, 2, 2, 2) and view.numel() == 24
    assert torch.equal(view[torch.tensor([2, 0])], torch.from_numpy(pixels[[3, 5]]))
    assert torch.equal(view[1], torch.from_numpy(pixels[1]))
    travelled = pickle.loads(pickle.dumps(view))
    assert len(pickle.dumps(view)) < 1000 and torch.equal(travelled.to("cpu"), torch.from_numpy(pixels[[5, 1, 3]]))


def test_clear_removes_every_cache_and_reports_the_bytes(tmp_path):
    folder = tmp_path / "cache"
    pool(data_config(make_image_folder(tmp_path / "colours"), cache=str(folder)))
    (entry,) = cached_entries(folder)
    assert entry["state"] == "in use" and entry["images"] == 18 and entry["folder"] == str(tmp_path / "colours")
    assert clear_entries(folder) == (0, 0, 1)  # kept: this process reads it
    release_entries()
    assert cached_entries(folder)[0]["state"] == "complete"
    assert clear_entries(folder) == (1, entry["bytes"], 0)
    assert cached_entries(folder) == [] and not any(p.is_dir() for p in folder.iterdir())


@pytest.mark.parametrize("data, key", [
    ({"cache": "off", "cache_size": 64}, "data.cache_size: needs the image cache"),
    ({"cache": "OFF", "skip_bad_images": True}, "data.skip_bad_images: needs the image cache"),
    ({"cache_size": 4}, "data.cache_size"),
    ({"cache": 123}, "data.cache: expected auto, off or the path of a folder"),
    ({"cache": None}, "data.cache: expected auto, off or the path of a folder"),
])
def test_bad_cache_settings_are_config_errors_naming_the_key(tmp_path, data, key):
    with pytest.raises(ConfigError) as info:
        validate(image_folder_config(tmp_path, **data))
    assert any(p.startswith(key) for p in info.value.problems), info.value.problems


def test_cache_settings_on_a_dataset_not_read_from_files_are_refused():
    from tests.conftest import tiny_digits_config

    config = tiny_digits_config()
    config["data"]["cache_size"] = 64
    with pytest.raises(ConfigError, match="data.cache_size: dataset 'digits' is not read from image files"):
        validate(config)


def test_a_bare_yaml_off_turns_the_cache_off(tmp_path):
    from dlcli.config import load

    path = tmp_path / "cfg.yaml"
    import yaml

    config = image_folder_config(tmp_path)
    path.write_text(yaml.safe_dump(config).replace("data:\n", "data:\n  cache: off\n", 1))
    assert load(str(path)).data.cache == "off"


def test_the_cache_folder_follows_the_setting_then_the_environment(monkeypatch, tmp_path):
    assert cache_dir(str(tmp_path / "x")) == tmp_path / "x"
    monkeypatch.setenv("DLCLI_CACHE_DIR", str(tmp_path / "env"))
    assert cache_dir("auto") == tmp_path / "env"
    monkeypatch.delenv("DLCLI_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir("auto") == tmp_path / ".cache" / "dlcli"
    assert os.path.basename(cache_dir("off")) == "dlcli"


def test_a_run_trained_from_the_files_is_evaluated_on_the_files(tmp_path):
    from dlcli.data.loading import LoaderBatches, TensorBatches
    from dlcli.data.pipeline import DataMeta, split_for_eval
    from dlcli.tasks import task_class

    folder = make_image_folder(tmp_path / "colours")
    raw = image_folder_config(folder, val_split=0.34)
    raw["data"]["dataset"]["test_root"] = str(folder)
    config = validate(raw)
    assert config.data.cache == "auto"
    task = task_class(config.task)
    before = DataMeta(["blue", "green", "red"], [3, 8, 8], "image")  # a checkpoint from before the cache
    assert isinstance(split_for_eval(config, before, "val", torch.device("cpu"), task), LoaderBatches)
    assert isinstance(split_for_eval(config, before, "test", torch.device("cpu"), task), LoaderBatches)
    cached = DataMeta(["blue", "green", "red"], [3, 8, 8], "image",
                      stored={"channels": 3, "size": [10, 10], "resize": True})
    assert isinstance(split_for_eval(config, cached, "test", torch.device("cpu"), task), TensorBatches)


def test_the_settings_auto_and_off_are_read_in_any_case(tmp_path):
    assert validate(image_folder_config(tmp_path, cache="Auto")).data.cache == "auto"
    assert validate(image_folder_config(tmp_path, cache="Off")).data.cache == "off"


def test_a_cache_path_that_is_a_file_is_a_config_error_naming_the_key(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="data.cache: .*afile is not a folder"):
        pool(data_config(make_image_folder(tmp_path / "colours"), cache=str(tmp_path / "afile")))


@pytest.mark.parametrize("damage", ["[1, 2]", "null", '{"count": "x"}', "truncate"])
def test_a_damaged_entry_is_listed_as_damaged_and_rebuilt(tmp_path, damage):
    folder, cache = make_image_folder(tmp_path / "colours"), tmp_path / "cache"
    data = data_config(folder, cache=str(cache))
    expected = pool(data).x[5]
    release_entries()
    (entry,) = [path for path in cache.iterdir() if path.is_dir()]
    if damage == "truncate":
        os.truncate(entry / "images.u8", 1000)
    else:
        (entry / "meta.json").write_text(damage)
    assert [row["state"] for row in cached_entries(cache)] == ["damaged"]
    assert torch.equal(pool(data).x[5], expected)  # rebuilt in place of the damaged one
    assert [row["state"] for row in cached_entries(cache)] == ["in use"]
    release_entries()


def test_one_wide_first_image_does_not_set_the_stored_size(tmp_path):
    from PIL import Image

    folder = make_photo_folder(tmp_path / "photos")
    Image.new("RGB", (100, 30)).save(folder / "a" / "-wide.jpg")  # sorts first
    data = data_config(folder, train_transforms=[{"random_resized_crop": {"size": 32}}],
                       eval_transforms=[{"resize": 32}])
    assert pool(data).stored["size"] == [37, 37]  # from a 32-pixel output, not the wide image's 32 x 107


def test_a_test_folder_of_another_image_size_is_a_data_error_naming_both_sizes(tmp_path):
    from dlcli.data.pipeline import DataMeta, split_for_eval
    from dlcli.tasks import task_class

    raw = image_folder_config(make_image_folder(tmp_path / "colours"), train_transforms=[], eval_transforms=[])
    raw["data"]["dataset"]["test_root"] = str(make_image_folder(tmp_path / "bigger", size=16))
    config = validate(raw)
    trained = DataMeta(["blue", "green", "red"], [3, 12, 12], "image",
                       stored={"channels": 3, "size": [12, 12], "resize": False})
    with pytest.raises(DataError, match="the test split's images come out of data.eval_transforms as 3x16x16; "
                                        "the model takes 3x12x12"):
        split_for_eval(config, trained, "test", torch.device("cpu"), task_class(config.task))


def test_clear_touches_nothing_but_entries_and_their_lock_files(tmp_path):
    folder = tmp_path / "shared"
    pool(data_config(make_image_folder(folder / "colours"), cache=str(folder)))  # a cache folder that holds data too
    release_entries()
    (folder / "notes").mkdir()
    (folder / "notes" / "keep.txt").write_text("mine")
    (folder / "look-0123456789abcdef-0123456789ab").mkdir()  # named as an entry, holding something else
    (folder / "look-0123456789abcdef-0123456789ab" / "mine.txt").write_text("mine")
    assert [row["state"] for row in cached_entries(folder)] == ["complete"]
    removed, _, kept = clear_entries(folder)
    assert (removed, kept) == (1, 0)
    left = sorted(p.name for p in folder.iterdir())
    assert left == ["colours", "look-0123456789abcdef-0123456789ab", "notes"]  # no entry, no lock file
    assert (folder / "colours" / "red").is_dir() and (folder / "notes" / "keep.txt").read_text() == "mine"


def test_clearing_an_entry_that_cannot_be_removed_is_an_error_naming_it(tmp_path, monkeypatch):
    import shutil

    folder = tmp_path / "cache"
    pool(data_config(make_image_folder(tmp_path / "colours"), cache=str(folder)))
    release_entries()

    def refuse(path, *args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(shutil, "rmtree", refuse)
    with pytest.raises(DlcliError, match="cannot remove the image cache entry .*: Operation not permitted"):
        clear_entries(folder)
