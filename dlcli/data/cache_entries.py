"""The image cache's folder: entries, their locks, listing and clearing.

An entry is `<key>-<digest>/`: `key` names a folder and how it is stored (`<folder name>-<16 hex>`),
`digest` the folder's files (image_store.fingerprint). An entry never changes once published, so a
changed folder gets a new entry and a process reading the old one reads on undisturbed. Two locks:
`<key>.lock` (exclusive) is held by whoever builds, lists or clears the key's entries; each process
that uses an entry holds a shared lock on its meta.json for as long as it lives, so an entry in use
is never removed (a rebuild removes the entries it replaces only once nobody uses them)."""

import fcntl
import json
import os
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from dlcli.data.image_store import FORMAT_VERSION

_IN_USE: list[int] = []  # descriptors holding this process's shared locks (released when it ends)


def entry_key(root: str, spec: dict) -> str:
    """`<folder name>-<16 hex digits>` for a folder stored as `spec` by this decoder (Pillow's version
    included: another libjpeg may decode other pixels)."""
    import hashlib

    import PIL

    real = os.path.realpath(root)
    key = json.dumps([real, spec, FORMAT_VERSION, PIL.__version__], sort_keys=True)
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in os.path.basename(real))[:40] or "images"
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def entry_name(root: str, spec: dict, digest: str) -> str:
    return f"{entry_key(root, spec)}-{digest[:12]}"


def key_of(name: str) -> str:
    """The key part of an entry's folder name (`.partial` or not)."""
    return name.removesuffix(".partial").rsplit("-", 1)[0]


@contextmanager
def locked(lock_path: Path, waiting: str):
    """Hold an exclusive lock on `lock_path` (the kernel releases it if this process dies); says
    `waiting` on stderr when another process holds it. The lock is the file at the path once locked
    (--clear removes lock files it holds: a process that waited on a removed one tries again). Where
    the file system has no locks, warns and goes on unlocked."""
    said = False
    while True:
        with open(lock_path, "a+") as handle:  # closing it releases the lock
            try:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if not said:
                        print(f"note: {waiting}", file=sys.stderr)
                        said = True
                    fcntl.flock(handle, fcntl.LOCK_EX)
            except OSError as err:  # no flock here (Lustre without -o flock, some NFS set-ups)
                print(f"warning: cannot lock {lock_path} ({err.strerror}); processes building this image cache "
                      f"at the same time may each build it", file=sys.stderr)
            if _same_file(handle, lock_path):
                yield
                return


def _same_file(handle, path: Path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def hold_in_use(entry: Path) -> None:
    """Mark `entry` used by this process until it ends (a shared lock on its meta.json)."""
    fd = os.open(entry / "meta.json", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:
        pass  # no locks on this file system: nothing can tell an entry in use
    _IN_USE.append(fd)


def in_use(entry: Path) -> bool:
    """Whether some process holds `entry` (its meta.json shared-locked)."""
    try:
        fd = os.open(entry / "meta.json", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock


def read_meta(entry: Path) -> dict:
    """The entry's meta.json, or {} when it is missing or not what a build writes (damaged)."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    fields = (("count", int), ("spec", dict), ("bad", list), ("root", str), ("fingerprint", str))
    if not isinstance(meta, dict) or not all(isinstance(meta.get(key), kind) for key, kind in fields):
        return {}
    spec = meta["spec"]
    shape_ok = isinstance(spec.get("channels"), int) and isinstance(spec.get("size"), list) and \
        len(spec["size"]) == 2 and all(isinstance(side, int) for side in spec["size"])
    pairs_ok = all(isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)
                   for pair in meta["bad"])
    return meta if shape_ok and pairs_ok else {}


def complete(entry: Path, meta: dict) -> bool:
    """Whether the entry's pixel file has the size its meta says."""
    try:
        size = (entry / "images.u8").stat().st_size
    except OSError:
        return False
    return size == meta["count"] * meta["spec"]["channels"] * meta["spec"]["size"][0] * meta["spec"]["size"][1]


def _disk_bytes(path: Path) -> int:
    """Bytes the folder's files take on disk (a partial build's file is sparse until written)."""
    return sum(f.stat().st_blocks * 512 for f in path.iterdir() if f.is_file())


ENTRY = re.compile(r"^.+-[0-9a-f]{16}-[0-9a-f]{12}(\.partial)?$")
LOCK = re.compile(r"^.+-[0-9a-f]{16}\.lock$")


def is_entry(path: Path) -> bool:
    """Whether `path` is an entry (or a partial build): a real folder named as entries are, holding
    nothing but an entry's two files. Nothing else in a cache folder is ever listed or removed."""
    if path.is_symlink() or not path.is_dir() or not ENTRY.match(path.name):
        return False
    return all(child.name in ("images.u8", "meta.json") and child.is_file() and not child.is_symlink()
               for child in path.iterdir())


def cached_entries(folder: Path) -> list[dict]:
    """Each entry in the cache folder: name, folder cached, images, skipped, stored size, bytes on
    disk, state (complete, in use, damaged, building or cut short)."""
    rows = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not is_entry(path):
            continue
        meta = read_meta(path)
        state = "building or cut short" if path.name.endswith(".partial") else \
            ("in use" if in_use(path) else "complete") if meta and complete(path, meta) else "damaged"
        rows.append({"name": path.name, "folder": meta.get("root"), "images": meta.get("count"),
                     "skipped": len(meta.get("bad", [])), "size": (meta.get("spec") or {}).get("size"),
                     "bytes": _disk_bytes(path), "state": state})
    return rows


def clear_entries(folder: Path) -> tuple[int, int, int]:
    """Remove every entry nobody uses (waiting for builds to finish), and the lock files of keys left
    without entries: (removed, bytes freed, kept in use)."""
    removed = freed = kept = 0
    for row in cached_entries(folder):
        key = key_of(row["name"])
        with locked(folder / f"{key}.lock", f"waiting for the process building the image cache {key}"):
            if not is_entry(folder / row["name"]):  # a build that was going on: published or gone since
                continue
            if in_use(folder / row["name"]):
                kept += 1
                continue
            _remove(folder / row["name"])
        removed, freed = removed + 1, freed + row["bytes"]
    for lock in sorted(folder.iterdir()) if folder.is_dir() else []:
        if LOCK.match(lock.name) and lock.is_file():
            key = lock.name.removesuffix(".lock")
            with locked(lock, f"waiting for the process building the image cache {key}"):
                if not any(is_entry(path) for path in folder.glob(f"{key}-*")):
                    lock.unlink()  # held: a process waiting on it finds it gone and locks the new one
    return removed, freed, kept


def remove_replaced(folder: Path, key: str, keep: str) -> None:
    """Remove the key's other entries (its folder changed since) that nobody uses; the caller holds
    the key's lock."""
    for path in folder.glob(f"{key}-*"):
        if is_entry(path) and path.name != keep and not path.name.endswith(".partial") and not in_use(path):
            shutil.rmtree(path, ignore_errors=True)  # tidying: what cannot go stays for --clear to report


def _remove(entry: Path) -> None:
    from dlcli.errors import DlcliError

    try:
        shutil.rmtree(entry)
    except OSError as err:
        raise DlcliError(f"cannot remove the image cache entry {entry}: {err.strerror or err}") from None
