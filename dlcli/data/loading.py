"""Batches. In-memory data stays as tensors on the training device and is shuffled
by index permutation, with augmentation run on whole batches; file-backed data goes through a
torch DataLoader with workers."""

from dataclasses import dataclass
from typing import cast

from dlcli.data.source import Source
from dlcli.errors import DataError, DlcliError


@dataclass
class Batch:
    x: object
    y: object
    weights: object = None  # per-sample loss weights, or None when all are 1
    lengths: object = None  # valid lengths of padded token sequences, or None


def trimmed(x, y, weights, lengths):
    """A Batch; padded token sequences are cut to this batch's longest (padding per batch). Reading
    that length is one host sync per batch, which packing the sequences needs anyway."""
    if lengths is None:
        return Batch(x, y, weights)
    return Batch(x[:, :int(lengths.max())], y, weights, lengths)


class _Batches:
    """An epoch of batches: `rows` rows in batches of `batch_size` (all full but perhaps the last)."""

    rows: int
    batch_size: int

    def __len__(self) -> int:
        return -(-self.rows // self.batch_size)

    def __iter__(self):
        for _, batch in self.iterate():
            yield batch

    def batch_rows(self, index: int) -> int:
        """Rows in batch `index` of the epoch (over all DDP ranks)."""
        return min(self.batch_size, self.rows - index * self.batch_size)


class TensorBatches(_Batches):
    """Batches from in-memory tensors, held on `device`; shuffling draws from `generator`."""

    def __init__(self, source: Source, batch_size: int, device, transform, shuffle: bool, generator=None,
                 sample_weights=None):
        import torch

        self.x = source.x.to(device)
        self.y = source.y.to(device)
        self.weights = sample_weights.to(device) if sample_weights is not None else None
        self.lengths = source.lengths.to(device) if source.lengths is not None else None
        self.batch_size, self.transform, self.shuffle = batch_size, transform, shuffle
        self.generator = generator
        self.scale = 1 / 255 if self.x.dtype == torch.uint8 else None  # uint8 images -> [0, 1]; token ids stay
        self.rows = covered_rows(len(self.y), batch_size)

    def iterate(self, first: int = 0, on_resumed=None):
        """(index, Batch) pairs from batch `first` on; the shuffle is drawn as for a full epoch."""
        import torch

        n = len(self.y)
        order = torch.randperm(n, generator=self.generator).to(self.x.device) if self.shuffle else None
        if on_resumed is not None:
            on_resumed()  # skipping used no randomness: restore RNG states before the first batch
        for index, start in enumerate(range(first * self.batch_size, self.rows, self.batch_size), start=first):
            rows = slice(start, start + self.batch_size) if order is None else order[start:start + self.batch_size]
            rows = shard_rows(rows, self.rows)
            x, y = self.x[rows], self.y[rows]
            w = self.weights[rows] if self.weights is not None else None
            lengths = self.lengths[rows] if self.lengths is not None else None
            x = x.float().mul_(self.scale) if self.scale else x  # in place: a fresh copy, a pass saved
            yield index, trimmed(self.transform(x) if self.transform else x, y, w, lengths)


class LoaderBatches(_Batches):
    """Batches from a file-backed dataset through torch's DataLoader (workers, pinned memory); under
    DDP, this rank's share of each global batch."""

    def __init__(self, source: Source, batch_size: int, device, transform, shuffle: bool, generator=None,
                 sample_weights=None, num_workers: int = 0):
        import torch

        from dlcli.ranks import world

        self.device = device
        self.weights = sample_weights
        # The batch sampler draws one permutation per epoch from the shuffle generator, as the in-memory
        # paths do (so a resumed epoch redraws the same order); under DDP each rank loads only its part
        # of every global batch. It also draws an epoch seed from which worker processes seed each
        # item's augmentation, so a resumed epoch (with fresh persistent workers) augments as the
        # interrupted one did. Worker base seeds come from a generator of their own, different per rank.
        seed = (generator.initial_seed() if generator is not None else 0) + 7919 * world()[0]
        # _Transformed is a map-style dataset by duck typing (__len__, __getitem__), as DataLoader allows
        dataset = cast("torch.utils.data.Dataset", _Transformed(source.dataset, transform))
        sampler = _PermutationBatches(len(source.dataset), batch_size, shuffle, generator, item_seeds=True)
        self.loader = torch.utils.data.DataLoader(
            dataset, generator=torch.Generator().manual_seed(seed), batch_sampler=sampler, collate_fn=_collate,
            num_workers=num_workers, pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers else None,
        )
        self.rows, self.batch_size = sampler.rows, batch_size

    def iterate(self, first: int = 0, on_resumed=None):
        """(index, Batch) pairs from batch `first` on. Skipped batches are still loaded (the loader's
        order and worker seeds come from the generator), then RNG states are restored."""
        try:
            batches = map(_raise_failure, self.loader)
            for _ in range(first):
                next(batches)
            if on_resumed is not None:  # before batch `first` is loaded: its augmentation must match
                on_resumed()
            for index, (x, y, idx) in enumerate(batches, start=first):
                w = self.weights[idx].to(self.device) if self.weights is not None else None
                yield index, Batch(x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True), w)
        except RuntimeError as err:
            if "stack expects each tensor to be equal size" in str(err):
                raise DataError("images differ in size; add a resize (or center_crop) to data.train_transforms "
                                "and data.eval_transforms") from None
            raise


class _Transformed:
    """A dataset view with this loader's own transform; items carry their index (for sample weights).
    Keys are (index, epoch seed): in a worker process, each item's augmentation is seeded from both."""

    def __init__(self, dataset, transform):
        self.dataset, self.transform = dataset, transform

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        import torch

        i, epoch_seed = key
        in_worker = torch.utils.data.get_worker_info() is not None
        if in_worker:  # the main process keeps its own (saved) stream
            torch.manual_seed((epoch_seed + i) % 2**63)
        try:
            x, y = self.dataset[i]
            return (self.transform(x) if self.transform else x), y, i
        except DlcliError as err:
            if in_worker:
                return _Failure(err)
            raise


class _Failure:
    """A dlcli error raised in a worker process, sent to the main process as the batch itself: torch
    would re-raise it there with the worker's whole traceback as its message."""

    def __init__(self, err: DlcliError):
        self.kind, self.message, self.hint = type(err), str(err), err.hint


def _collate(items):
    """torch's default collation, unless an item failed: then the batch is that failure."""
    import torch

    failure = next((item for item in items if isinstance(item, _Failure)), None)
    return failure if failure is not None else torch.utils.data.default_collate(items)


def _raise_failure(batch):
    """The batch, or the worker's own error (one line naming the file) raised in the main process."""
    if isinstance(batch, _Failure):
        raise batch.kind(batch.message, hint=batch.hint)
    return batch


class HostLoaderBatches(_Batches):
    """In-memory tensors left in host memory and fed by torch's DataLoader (pinned memory, workers),
    for data over the device-memory budget. Same order (same permutation draw) and same batched
    augmentation on the device as TensorBatches, so both paths train identically."""

    def __init__(self, source: Source, batch_size: int, device, transform, shuffle: bool, generator=None,
                 sample_weights=None, num_workers: int = 0):
        import torch

        self.sampler = _PermutationBatches(len(source.y), batch_size, shuffle, generator)
        self.device, self.transform = device, transform
        self.scale = 1 / 255 if source.x.dtype == torch.uint8 else None
        # _TensorRows is a map-style dataset by duck typing (__len__, __getitems__), as DataLoader allows
        dataset = cast("torch.utils.data.Dataset", _TensorRows(source.x, source.y, sample_weights, source.lengths))
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.sampler,
            collate_fn=_as_is,
            num_workers=num_workers, pin_memory=device.type == "cuda", persistent_workers=num_workers > 0,
            generator=torch.Generator(),  # its seed draw must not touch the global RNG
        )
        self.rows, self.batch_size = self.sampler.rows, batch_size

    def iterate(self, first: int = 0, on_resumed=None):
        self.sampler.first = first
        for index, (x, y, w, lengths) in enumerate(self.loader, start=first):
            if index == first and on_resumed is not None:
                on_resumed()  # after the shuffle draw, before the first augmentation
            x = x.to(self.device, non_blocking=True)
            x = x.float().mul_(self.scale) if self.scale else x  # in place: a fresh copy, a pass saved
            w = w.to(self.device, non_blocking=True) if w is not None else None
            y = y.to(self.device, non_blocking=True)
            yield index, trimmed(self.transform(x) if self.transform else x, y, w, lengths)


class _PermutationBatches:
    """Batch sampler drawing one permutation per epoch from `generator`, like TensorBatches."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, generator, item_seeds: bool = False):
        self.n, self.batch_size, self.shuffle, self.generator, self.first = n, batch_size, shuffle, generator, 0
        self.rows = covered_rows(n, batch_size)
        self.item_seeds = item_seeds  # yield (index, epoch seed) keys, the seed drawn after the order

    def __len__(self) -> int:
        return -(-self.rows // self.batch_size)

    def __iter__(self):
        import torch

        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        # never from the global RNG: evaluation loaders have no generator (and no random transforms)
        seeded = self.item_seeds and self.generator is not None
        epoch_seed = int(torch.randint(2**62, (), generator=self.generator)) if seeded else 0
        for start in range(self.first * self.batch_size, self.rows, self.batch_size):
            rows = shard_rows(order[start:start + self.batch_size], self.rows)
            yield [(int(i), epoch_seed) for i in rows] if self.item_seeds else rows


class _TensorRows:
    """Map-style dataset over tensors with a batched fetch (one gather per batch, not per row)."""

    def __init__(self, x, y, weights, lengths=None):
        self.x, self.y, self.weights, self.lengths = x, y, weights, lengths

    def __len__(self) -> int:
        return len(self.y)

    def __getitems__(self, idx):
        pick = (lambda t: t[idx] if t is not None else None)
        return self.x[idx], self.y[idx], pick(self.weights), pick(self.lengths)


def _as_is(batch):
    return batch


def covered_rows(n: int, batch_size: int) -> int:
    """How many of n rows the batches use: all, except under DDP a last batch with fewer rows than
    processes, which is dropped (some ranks would get no rows, yet every rank must take every step)."""
    from dlcli.ranks import world

    size, tail = world()[1], n % batch_size
    return n - tail if size > 1 and 0 < tail < size else n


def shard_rows(rows, n: int):
    """Under DDP, this rank's contiguous part of a global batch (every rank draws the same order);
    in a single process, the whole batch."""
    import torch

    from dlcli.ranks import world

    rank, size, _ = world()
    if size == 1:
        return rows
    if isinstance(rows, slice):
        rows = torch.arange(rows.start, min(rows.stop, n))
    return rows.tensor_split(size)[rank]


def make_batches(source: Source, batch_size: int, device, transform, shuffle: bool, generator=None,
                 sample_weights=None, num_workers: int = 0, loader: str = "auto", budget_gb: float = 4.0):
    """Device-resident tensors when the data is in memory and fits the budget (or loader: device);
    otherwise a DataLoader: over host tensors, or over files for file-backed datasets."""
    from dlcli.errors import ConfigError

    if len(source) == 0:
        raise DataError("dataset split is empty")
    if covered_rows(len(source), batch_size) == 0:
        from dlcli.ranks import world

        raise DataError(f"a dataset split has {len(source)} sample(s), fewer than the {world()[1]} processes")
    if not source.in_memory:
        if loader == "device":
            raise ConfigError("data.loader: device needs an in-memory dataset; this one is read from disk")
        return LoaderBatches(source, batch_size, device, transform, shuffle, generator, sample_weights, num_workers)
    fits = source.x.numel() * source.x.element_size() <= budget_gb * 2**30
    if loader == "device" or (loader == "auto" and fits):
        return TensorBatches(source, batch_size, device, transform, shuffle, generator, sample_weights)
    return HostLoaderBatches(source, batch_size, device, transform, shuffle, generator, sample_weights, num_workers)
