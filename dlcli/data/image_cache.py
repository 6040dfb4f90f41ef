"""The image cache (data.cache): a folder of images decoded once into one uint8 file, read through
a memory map by every later epoch and run.

Each cached folder is `<cache dir>/<folder name>-<key>/` (the key: the folder's real path and how
it is stored) holding `images.u8` (N x C x H x W bytes, in the dataset's order) and `meta.json`.
A build writes `<name>.partial/` and renames it when done, meta.json (with the folder's fingerprint)
written last, so a build cut short never looks complete; one process builds while the others wait on
`<name>.lock`; a folder whose files changed no longer matches its fingerprint and is rebuilt."""

import fcntl
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from dlcli.data.cache_build import build
from dlcli.data.files import ImageFiles
from dlcli.data.image_store import FORMAT_VERSION, fingerprint, store_spec
from dlcli.data.mapped import MappedImages
from dlcli.errors import DataError


def cache_dir(setting: str = "auto") -> Path:
    """Where caches live: data.cache when it is a path, else $DLCLI_CACHE_DIR, else ~/.cache/dlcli."""
    if setting not in ("auto", "off"):
        return Path(setting).expanduser()
    if os.environ.get("DLCLI_CACHE_DIR"):
        return Path(os.environ["DLCLI_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dlcli"


def entry_name(root: str, spec: dict) -> str:
    """`<folder name>-<16 hex digits>`: one entry per folder and stored size."""
    import hashlib

    real = os.path.realpath(root)
    key = json.dumps([real, spec, FORMAT_VERSION], sort_keys=True)
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in os.path.basename(real))[:40] or "images"
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


@contextmanager
def locked(lock_path: Path, waiting: str):
    """Hold an exclusive lock on `lock_path` (released by the kernel if this process dies); says
    `waiting` on stderr when another process holds it."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"note: {waiting}", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_cache(files, spec: dict, folder: Path, workers: int, skip_bad: bool,
               builds: bool = True) -> tuple[dict, MappedImages]:
    """(meta, images) of the cache of `files` (an ImageFiles), built first if missing or stale (see
    cache_build.build for `skip_bad`). With `builds` false (DDP ranks but the first) it waits until
    another process has built it."""
    digest = fingerprint(files.root, files.paths)
    entry = folder / entry_name(files.root, spec)
    lock = folder / f"{entry.name}.lock"
    while True:
        with locked(lock, f"waiting for another process to finish the image cache {entry}"):
            meta = complete_meta(entry, digest, spec, len(files.paths))
            if meta is None and builds:
                meta = build(files, spec, entry, digest, workers, skip_bad) | {"built_now": True}
            if meta is not None:
                return meta, MappedImages(str(entry / "images.u8"), (meta["count"], spec["channels"], *spec["size"]))
        time.sleep(1.0)  # the first rank builds it


def complete_meta(entry: Path, digest: str, spec: dict, count: int) -> dict | None:
    """The entry's meta.json when the entry is complete and of these files, stored this way."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        size = (entry / "images.u8").stat().st_size
    except (OSError, ValueError):
        return None
    expected = (FORMAT_VERSION, digest, spec, count, count * spec["channels"] * spec["size"][0] * spec["size"][1])
    found = (meta.get("version"), meta.get("fingerprint"), meta.get("spec"), meta.get("count"), size)
    return meta if found == expected else None


def cached_entries(folder: Path) -> list[dict]:
    """Each entry in the cache folder: name, folder cached, images, bytes on disk, stored size, state."""
    rows = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_dir():
            continue
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError):
            meta = {}
        state = "building or cut short" if path.name.endswith(".partial") else ("complete" if meta else "damaged")
        rows.append({"name": path.name, "folder": meta.get("root"), "images": meta.get("count"),
                     "skipped": len(meta.get("bad", [])), "size": (meta.get("spec") or {}).get("size"),
                     "bytes": sum(f.stat().st_size for f in path.iterdir() if f.is_file()), "state": state})
    return rows


def clear_entries(folder: Path) -> tuple[int, int]:
    """Remove every entry (each under its lock, so not while it is being built or opened): (entries,
    bytes). The lock files stay: removing one another process waits on would let two hold "it"."""
    removed = freed = 0
    for row in cached_entries(folder):
        name = row["name"].removesuffix(".partial")
        with locked(folder / f"{name}.lock", f"waiting for the process using the image cache {name}"):
            shutil.rmtree(folder / row["name"], ignore_errors=True)
        removed, freed = removed + 1, freed + row["bytes"]
    return removed, freed


def cached_source(source, data_cfg, spec: dict | None, workers: int | None = None):
    """`source` read from the image cache when it is a file-backed image split and data.cache is not
    off: `spec` says how the training split was stored (None: this is the training pool; decide).
    `workers` decode a missing cache (default: data.num_workers, or one per core when 0)."""
    if data_cfg.cache == "off" or not isinstance(source.dataset, ImageFiles):
        return source
    return _opened(source, data_cfg, spec, workers)[0]


def _opened(source, data_cfg, spec: dict | None, workers: int | None):
    """(cached source, the cache's meta): see cached_source."""
    import torch

    from dlcli.data.source import Source
    from dlcli.ranks import world

    files = source.dataset
    spec = spec or store_spec(files[0][0], data_cfg, files.channels)
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
        rows.append({"split": split, "folder": meta["root"], "entry": str(cache_dir(data_cfg.cache) / entry_name(
            meta["root"], spec)), "images": len(cached), "skipped": len(cached.skipped), "size": spec["size"],
            "built": meta.get("built_now", False)})
    return rows
