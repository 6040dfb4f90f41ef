"""File-backed image datasets: decode one image per item, with errors naming the file."""

from dlcli.errors import DataError


def load_image(path: str, channels: int | None = None):
    """Read an image file as a float CHW tensor in [0, 1]; convert to `channels` (1 or 3) if given."""
    import torch
    from PIL import Image
    from torchvision.transforms.v2.functional import pil_to_tensor

    try:
        with Image.open(path) as image:
            image = image.convert({1: "L", 3: "RGB"}.get(channels, "RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {path}: {str(err).splitlines()[0] if str(err) else 'decode failed'}") from None
    return pil_to_tensor(image).to(torch.float32) / 255.0


class ImageFiles:
    """A torch-style Dataset over image paths, yielding (float CHW image, label)."""

    def __init__(self, paths: list[str], targets: list[int], channels: int = 3):
        self.paths, self.targets, self.channels = paths, targets, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return load_image(self.paths[index], self.channels), self.targets[index]
