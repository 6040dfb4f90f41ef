"""File-backed image datasets: decode one image per item, with errors naming the file."""

from dlcli.errors import DataError


def load_image(path: str, channels: int | None = None):
    """Read an image file as a float CHW tensor in [0, 1]; convert to `channels` if given."""
    import torch
    from torchvision.io import ImageReadMode, decode_image

    mode = {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB}.get(channels, ImageReadMode.UNCHANGED)
    try:
        image = decode_image(path, mode=mode)
    except (RuntimeError, OSError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {str(err).splitlines()[0] if str(err) else 'decode failed'}") from None
    return image.to(torch.float32) / 255.0


class ImageFiles:
    """A torch-style Dataset over image paths; `transform` is set by the loader."""

    def __init__(self, paths: list[str], targets: list[int], channels: int = 3):
        self.paths, self.targets, self.channels = paths, targets, channels
        self.transform = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image = load_image(self.paths[index], self.channels)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]
