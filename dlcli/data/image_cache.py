"""The image cache (data.cache): a folder of images decoded once into one uint8 file, read through
a memory map by every later epoch and run (cache_entries.py: the entries and their locks;
cache_build.py: building one)."""

import os
import sys
import time
from pathlib import Path

from dlcli.data.cache_build import MixedSizes, build, check_free_space, check_one_size
from dlcli.data.cache_entries import complete, entry_name, hold_in_use, key_of, locked, read_meta, remove_replaced
from dlcli.data.files import ImageFiles
from dlcli.data.image_store import FORMAT_VERSION, fingerprint, store_spec
from dlcli.data.mapped import MappedImages
from dlcli.errors import DataError, DlcliError

WRITE_HINT = "set data.cache: PATH (or $DLCLI_CACHE_DIR) to a folder you can write, or data.cache: off"


def cache_dir(setting: str = "auto") -> Path:
    """Where caches live: data.cache when it is a path, else $DLCLI_CACHE_DIR, else ~/.cache/dlcli."""
    if setting not in ("auto", "off"):
        return Path(setting).expanduser()
    if os.environ.get("DLCLI_CACHE_DIR"):
        return Path(os.environ["DLCLI_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dlcli"


def open_cache(files, spec: dict, folder: Path, workers: int, skip_bad: bool,
               builds: bool = True) -> tuple[dict, MappedImages]:
    """(meta, images) of the cache of `files` (an ImageFiles), built first when missing (see
    cache_build.build for `skip_bad`). With `builds` false (DDP ranks but the first on a machine) it
    waits until another process has built it."""
    digest = fingerprint(files.root, files.paths)
    entry = folder / entry_name(files.root, spec, digest)
    count, record = len(files.paths), spec["channels"] * spec["size"][0] * spec["size"][1]
    if not complete_meta(entry, digest, spec, count):
        if not spec["resize"]:  # every DDP rank: MixedSizes sends them all to the files
            check_one_size(files.paths, (spec["size"][1], spec["size"][0]))
        if builds:
            check_free_space(folder, count * record)  # before the folder or its lock file is made
    _make_folder(folder)
    waiting_since = time.time()
    while True:
        with locked(folder / f"{key_of(entry.name)}.lock", f"waiting for another process to build {entry}"):
            meta = complete_meta(entry, digest, spec, count)
            if meta is None and builds:
                try:
                    meta = build(files, spec, entry, digest, workers, skip_bad) | {"built_now": True}
                except OSError as err:  # a read-only or vanished cache folder, say
                    raise DlcliError(f"cannot write the image cache {entry}: {err.strerror or err}",
                                     hint=WRITE_HINT) from None
                remove_replaced(folder, key_of(entry.name), entry.name)
            if meta is not None:
                hold_in_use(entry)  # under the lock: nobody can remove it between the check and this
                return meta, MappedImages(str(entry / "images.u8"), (count, spec["channels"], *spec["size"]))
            if _newer_sibling(folder, entry, waiting_since):
                raise DataError(f"image folder {files.root} changed while another process cached it; "
                                "run again")
        time.sleep(1.0)  # the machine's first process builds it


def _make_folder(folder: Path) -> None:
    from dlcli.errors import ConfigError

    if folder.exists() and not folder.is_dir():
        env = os.environ.get("DLCLI_CACHE_DIR")
        origin = "$DLCLI_CACHE_DIR" if env and Path(env).expanduser() == folder else "data.cache"
        raise ConfigError(f"{origin}: {folder} is not a folder (the image cache's folder)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DlcliError(f"cannot create the image cache folder {folder}: {err.strerror or err}",
                         hint=WRITE_HINT) from None


def _newer_sibling(folder: Path, entry: Path, since: float) -> bool:
    """Whether another entry of this key was published after `since` (the builder saw other files)."""
    return any(path.name != entry.name and not path.name.endswith(".partial") and
               (path / "meta.json").exists() and (path / "meta.json").stat().st_mtime >= since
               for path in folder.glob(f"{key_of(entry.name)}-*"))


def complete_meta(entry: Path, digest: str, spec: dict, count: int) -> dict | None:
    """The entry's meta.json when the entry is complete and of these files, stored this way."""
    meta = read_meta(entry)
    found = (meta.get("version"), meta.get("fingerprint"), meta.get("spec"), meta.get("count"))
    return meta if found == (FORMAT_VERSION, digest, spec, count) and complete(entry, meta) else None


def cached_source(source, data_cfg, spec: dict | None, workers: int | None = None):
    """`source` read from the image cache when it is a file-backed image split and data.cache is not
    off: `spec` says how the training split was stored (None: this is the training pool; decide).
    `workers` decode a missing cache (default: data.num_workers, or one per core when 0). Images of
    several sizes that no transform rescales cannot share a record size: they are read from the files."""
    if data_cfg.cache == "off" or not isinstance(source.dataset, ImageFiles):
        return source
    try:
        return _opened(source, data_cfg, spec, workers)[0]
    except MixedSizes as err:
        print(f"note: {err}; reading them from the files (data.cache_size caches them at one size)",
              file=sys.stderr)
        return source


def _opened(source, data_cfg, spec: dict | None, workers: int | None):
    """(cached source, the cache's meta): see cached_source."""
    import torch

    from dlcli.data.source import Source
    from dlcli.ranks import world

    files = source.dataset
    spec = spec or store_spec(_first_readable(files, data_cfg.skip_bad_images), data_cfg, files.channels)
    workers = workers if workers is not None else data_cfg.num_workers or len(os.sched_getaffinity(0))
    meta, images = open_cache(files, spec, cache_dir(data_cfg.cache), workers, data_cfg.skip_bad_images,
                              builds=world()[2] == 0)  # one process per machine builds; the others wait
    bad = dict(meta["bad"])
    if bad and not data_cfg.skip_bad_images:
        raise DataError(next(iter(bad.values())), hint="data.skip_bad_images: true skips unreadable images")
    keep = [i for i, path in enumerate(files.paths) if os.path.relpath(path, files.root) not in bad]
    rows = torch.as_tensor(keep, dtype=torch.long)
    cached = Source(y=source.y[rows], x=images.subset(keep), class_names=source.class_names, kind="image",
                    stored=spec, skipped=sorted(bad))
    return cached, meta


def _first_readable(files, skip_bad: bool):
    """The first image (float CHW), or with skip_bad the first that decodes (the others are
    reported when the cache is built)."""
    for index in range(len(files.paths)):
        try:
            return files[index][0]
        except DataError:
            if not skip_bad or index == len(files.paths) - 1:
                raise
    raise DataError(f"no images in {files.root}")  # not reached: class_folders needs one


def cache_folders(data_cfg, workers: int | None) -> list[dict]:
    """Build, or find built, the caches a config reads: its training folder, then val_root and
    test_root stored as training's are. Per folder: split, folder, entry, images, skipped, built."""
    from dlcli.data.datasets import DATASETS

    dataset, rows, spec = data_cfg.dataset, [], None
    for split, key in (("train", "root"), ("val", "val_root"), ("test", "test_root")):
        if dataset.get(key) is None:
            continue
        cached, meta = _opened(DATASETS.build(dataset, split), data_cfg, spec, workers)
        spec = cached.stored
        entry = cache_dir(data_cfg.cache) / entry_name(meta["root"], spec, meta["fingerprint"])
        rows.append({"split": split, "folder": meta["root"], "entry": str(entry), "images": len(cached),
                     "skipped": len(cached.skipped), "size": spec["size"], "built": meta.get("built_now", False)})
    return rows
