"""`dlcli cache`: build a config's image cache ahead of training, list the caches, clear them.
No torch import here."""

from typing import Optional

import typer

from dlcli.cli.base import OVERRIDES_HELP, command, emit_json
from dlcli.errors import ConfigError


@command()
def cache(
    config: Optional[str] = typer.Argument(None, help="YAML experiment file whose image folders to cache"),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, max=256,
                                          help="decoding processes (default: data.num_workers, or one per core)"),
    show: bool = typer.Option(False, "--list", help="list the caches (in the config's cache folder, if given)"),
    clear: bool = typer.Option(False, "--clear", help="remove the caches (in the config's cache folder, if given)"),
    folder: Optional[str] = typer.Option(None, "--dir", help="cache folder (default: $DLCLI_CACHE_DIR or "
                                                             "~/.cache/dlcli)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
):
    """Decode a config's image folders into the image cache (data.cache), or --list / --clear caches."""
    from pathlib import Path

    from dlcli.config import load
    from dlcli.data.image_cache import cache_dir

    if show and clear:
        raise ConfigError("--list and --clear: give one of them")
    cfg = load(config, overrides or []) if config else None
    if cfg is not None and cfg.data.cache == "off":
        raise ConfigError("data.cache: off: this config reads its images from the files; set data.cache: auto")
    where = Path(folder).expanduser() if folder else cache_dir(cfg.data.cache if cfg else "auto")
    if (show or clear) and where.exists() and not where.is_dir():
        raise ConfigError(f"{'--dir' if folder else 'the cache folder'}: {where} is not a folder")
    if show or clear:
        _list_or_clear(where, clear, as_json)
    elif folder:
        raise ConfigError("--dir: only with --list or --clear; data.cache=PATH builds the cache in PATH")
    elif cfg is None:
        raise ConfigError("give a config to cache its images, or --list / --clear")
    else:
        _build(cfg, where, workers, as_json)


def _build(cfg, where, workers: int | None, as_json: bool) -> None:
    from dlcli.data.datasets import DATASETS
    from dlcli.data.image_cache import cache_folders
    from dlcli.errors import Interrupted
    from dlcli.training.signals import StopSignals

    name = cfg.data.dataset.get("name")
    if not DATASETS.has_tag(name, "image_files"):
        raise ConfigError(f"data.dataset: {name!r} is not read from image files; only image folders are cached")
    with StopSignals() as signals, signals.ending_builds():  # SIGTERM from a batch scheduler too
        rows = cache_folders(cfg.data.model_copy(update={"cache": str(where)}), workers)
    if signals.received:
        raise Interrupted(f"stopped by {signals.name}; the image cache was not finished (nothing of it kept)",
                          signals.received)
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        state = "built" if row["built"] else "already cached"
        skipped = f", {row['skipped']} unreadable skipped" if row["skipped"] else ""
        typer.echo(f"{row['split']}: {row['images']} images of {row['folder']} at {row['size'][0]}x{row['size'][1]}"
                   f"{skipped}: {state} in {row['entry']}")


def _list_or_clear(where, clear: bool, as_json: bool) -> None:
    from dlcli.data.cache_build import human_size
    from dlcli.data.cache_entries import cached_entries, clear_entries

    if clear:
        removed, freed, kept = clear_entries(where)
        result = {"folder": str(where), "removed": removed, "bytes": freed, "kept_in_use": kept}
        if as_json:
            emit_json(result)
        else:
            in_use = f"; kept {kept} in use by a running process" if kept else ""
            typer.echo(f"removed {removed} cache(s), {human_size(freed)}, from {where}{in_use}")
        return
    rows = cached_entries(where)
    if as_json:
        emit_json({"folder": str(where), "caches": rows})
        return
    if not rows:
        typer.echo(f"no image caches in {where}")
    for row in rows:
        size = "x".join(map(str, row["size"])) if row["size"] else "?"
        typer.echo(f"{row['name']}  {row['state']}  {row['images'] or '?'} images at {size}  "
                   f"{human_size(row['bytes'])}  {row['folder'] or ''}")
