"""Cached images read through a memory map: a Source's `x` that stays on disk (the page cache) until
a batch asks for rows, so a folder larger than memory trains without being loaded. numpy is imported
where it is used: config loading imports this module (through splits) and must stay light."""


class MappedImages:
    """Rows `rows` of a uint8 [N, C, H, W] file. Indexing reads those rows (in file order, so a batch
    is a sweep through the file, not random seeks) and returns a tensor; `subset` is a view;
    `to(device)` loads them all (the device-resident path)."""

    def __init__(self, path: str, shape: tuple[int, ...], rows=None):
        import numpy as np

        self.path, self.file_shape = path, tuple(shape)
        self.rows = np.arange(shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
        self._open()

    def _open(self) -> None:
        import numpy as np

        self.array = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.file_shape)

    def __getstate__(self):  # to DataLoader workers: the path, not the pixels (each worker maps the file)
        return {"path": self.path, "file_shape": self.file_shape, "rows": self.rows}

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        self._open()

    @property
    def dtype(self):
        import torch

        return torch.uint8

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.file_shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def numel(self) -> int:
        import math

        return math.prod(self.shape)

    def element_size(self) -> int:
        return 1

    def subset(self, indices) -> "MappedImages":
        import numpy as np

        return MappedImages(self.path, self.file_shape, self.rows[np.asarray(indices, dtype=np.int64)])

    def __getitem__(self, index):
        import numpy as np
        import torch

        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        wanted = self.rows[index]
        if np.ndim(wanted) == 0:
            return torch.from_numpy(np.array(self.array[int(wanted)]))
        if _consecutive(wanted):  # one read into the tensor (4x faster than copying from the map)
            return self._read(int(wanted[0]), len(wanted))
        order = np.argsort(wanted, kind="stable")
        if (order == np.arange(len(order))).all():
            return torch.from_numpy(self.array[wanted])
        pixels = np.empty((len(wanted), *self.file_shape[1:]), dtype=np.uint8)
        pixels[order] = self.array[wanted[order]]
        return torch.from_numpy(pixels)

    def _read(self, first: int, count: int):
        import torch

        from dlcli.errors import DataError

        pixels = torch.empty((count, *self.file_shape[1:]), dtype=torch.uint8)
        with open(self.path, "rb") as handle:
            handle.seek(first * pixels[0].numel())
            got = handle.readinto(pixels.numpy().data.cast("B"))
        if got != pixels.numel():
            raise DataError(f"image cache {self.path}: shorter than its meta.json says; dlcli cache --clear")
        return pixels

    def to(self, device):
        """All rows as one tensor on `device`."""
        import numpy as np

        return self[np.arange(len(self.rows))].to(device)


def _consecutive(rows) -> bool:
    import numpy as np

    return len(rows) > 0 and int(rows[-1]) - int(rows[0]) == len(rows) - 1 and bool((np.diff(rows) == 1).all())
