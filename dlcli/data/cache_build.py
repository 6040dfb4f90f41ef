"""Building one image cache entry: decode every image once, in worker processes, and write the
pixels in order into `<entry>.partial/images.u8`; meta.json last, then the rename that publishes it.
The caller holds the entry's lock."""

import errno
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from dlcli.data.image_store import FORMAT_VERSION, Unreadable, stored_pixels
from dlcli.errors import DataError, DlcliError

DECODE_BATCH = 32  # images a worker decodes per task: large enough to amortise the hand-off
SPACE_HINT = "set data.cache: PATH on a larger disk, a smaller data.cache_size, or data.cache: off"


def never() -> bool:
    return False


# Whether a stop was asked for: `dlcli train` sets it while it builds (its signal handlers only record
# a signal), so a build of minutes ends at the next image, as Ctrl-C ends `dlcli cache`.
stop_requested: Callable[[], bool] = never


class MixedSizes(DataError):
    """The images differ in size and are to be stored at their own size: no one record size fits."""


class _Decoder:
    """Decodes image i straight into row i of the cache file, in whichever process runs it (each
    DataLoader worker maps the file itself, so no pixels travel between processes). Item i is None,
    or (fatal, message): an unreadable image is not fatal (data.skip_bad_images may skip it), an
    image of another size is."""

    def __init__(self, paths: list[str], spec: dict, target: Path):
        self.paths, self.spec, self.target = paths, spec, target
        self.rows: Any = None  # the file's memory map, opened in the process that writes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[bool, str] | None:
        import numpy as np

        if self.rows is None:
            shape = (len(self.paths), self.spec["channels"], *self.spec["size"])
            self.rows = np.memmap(self.target, dtype=np.uint8, mode="r+", shape=shape)
        try:
            self.rows[index] = stored_pixels(self.paths[index], self.spec)
        except Unreadable as err:
            return False, str(err)  # the row stays zeros
        except DataError as err:
            return True, str(err)
        return None


def build(files, spec: dict, entry: Path, digest: str, workers: int, skip_bad: bool) -> dict:
    """Decode `files` (an ImageFiles) into a new `entry` and return its meta. An unreadable image is
    recorded in meta["bad"] (the caller decides whether that is an error) unless `skip_bad` is false:
    then it stops the build at once, as a DataError naming the file."""
    count, (height, width) = len(files.paths), spec["size"]
    partial = entry.with_name(entry.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by a build that was killed: we hold the lock
    check_free_space(entry.parent, count * spec["channels"] * height * width)
    started = time.perf_counter()
    partial.mkdir(parents=True)
    try:
        target, bad = partial / "images.u8", []
        _allocate(target, count * spec["channels"] * height * width)
        with (progress := _progress(count, entry, spec, workers)) as advance:
            for index, problem in enumerate(_decoded(_Decoder(files.paths, spec, target), workers)):
                if stop_requested():
                    raise KeyboardInterrupt  # as Ctrl-C would: the partial entry goes below
                if problem is not None and (problem[0] or not skip_bad):
                    hint = None if problem[0] else "data.skip_bad_images: true skips unreadable images"
                    raise DataError(problem[1], hint=hint)
                if problem is not None:
                    bad.append([os.path.relpath(files.paths[index], files.root), problem[1]])
                    progress.unreadable += 1
                advance()
        with open(target, "rb+") as written:  # every process's rows are in the page cache: make them durable
            os.fsync(written.fileno())
        meta = {"version": FORMAT_VERSION, "root": os.path.realpath(files.root), "spec": spec, "count": count,
                "fingerprint": digest, "bad": bad, "seconds": round(time.perf_counter() - started, 2),
                "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _write_last(partial / "meta.json", json.dumps(meta, indent=1))
        _publish(partial, entry)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return meta


def check_one_size(paths: list[str], size: tuple[int, int]) -> None:
    """MixedSizes naming the first image whose header gives another (width, height) than `size`
    (reading a header decodes nothing; unreadable files are left to the build to report)."""
    from PIL import Image

    for path in paths:
        try:
            with Image.open(path) as image:
                found = image.size
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        if found != size:
            raise MixedSizes(f"images in {os.path.dirname(os.path.dirname(path))} are not all {size[1]}x{size[0]}, "
                             f"the size they would be cached at unscaled ({path} is {found[1]}x{found[0]})",
                             hint="set data.cache_size, or add a resize (or random_resized_crop) to both pipelines")


def _allocate(target: Path, size: int) -> None:
    """The whole file, its blocks reserved: a disk that fills up now is exit 1 here, not a SIGBUS when
    a worker writes through its memory map."""
    with open(target, "wb") as out:
        try:
            os.posix_fallocate(out.fileno(), 0, size)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                out.truncate(size)  # no fallocate on this file system
                return
            free = shutil.disk_usage(target.parent).free
            raise DlcliError(f"image cache {target.parent.parent}: needs {human_size(size)}, only {human_size(free)} "
                             "free on its disk", hint=SPACE_HINT) from None


def check_free_space(folder: Path, needed: int) -> None:
    """Exit 1 with the numbers when the cache would not fit on its disk (before writing any of it)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise DlcliError(f"image cache {folder}: needs {human_size(needed)}, only {human_size(free)} free on its disk",
                         hint=SPACE_HINT)


def human_size(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    return ""  # not reached


def _decoded(decoder: _Decoder, workers: int):
    """Each image's problem (or None), in order, decoded by `workers` processes (0: this one)."""
    import torch

    # _Decoder is a map-style dataset by duck typing (__len__, __getitem__), as DataLoader allows
    loader = torch.utils.data.DataLoader(
        cast("torch.utils.data.Dataset", decoder), batch_size=DECODE_BATCH, num_workers=workers, collate_fn=list,
        prefetch_factor=4 if workers else None,
        generator=torch.Generator())  # its worker seeds must not come from (and move) the global RNG
    for batch in loader:
        yield from batch


def _write_last(path: Path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _publish(partial: Path, entry: Path) -> None:
    """Rename the finished build into place, over a damaged entry of the same name if there is one
    (a complete one would not have been rebuilt, and nobody can use a damaged one)."""
    shutil.rmtree(entry, ignore_errors=True)
    os.rename(partial, entry)


class _progress:
    """A line when the build starts and one when it ends, and a tqdm bar between them on a terminal;
    whichever process builds says so (under DDP, one per machine)."""

    def __init__(self, count: int, entry: Path, spec: dict, workers: int):
        self.count, self.entry, self.spec, self.workers = count, entry, spec, workers
        self.unreadable = 0  # the build counts them here

    def __enter__(self):
        height, width = self.spec["size"]
        self.started, self.bar = time.perf_counter(), None
        size = human_size(self.count * self.spec["channels"] * height * width)
        print(f"caching {self.count} images at {height}x{width} ({size}) in {self.entry} with "
              f"{self.workers or 'no'} worker processes", file=sys.stderr)
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.count, desc="caching images", unit="img", file=sys.stderr, leave=False)
        return self.bar.update if self.bar is not None else (lambda: None)

    def __exit__(self, kind, *_):
        if self.bar is not None:
            self.bar.close()
        if kind is None:
            seconds = time.perf_counter() - self.started
            left_out = f", {self.unreadable} unreadable left out" if self.unreadable else ""
            print(f"cached {self.count - self.unreadable} images in {seconds:.1f} s "
                  f"({self.count / max(seconds, 1e-9):.0f} images/s{left_out})", file=sys.stderr)
        return False
