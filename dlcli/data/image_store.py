"""How a file-backed image is stored in the image cache: decoded once to uint8 pixels at one stored
size, so every later epoch and run reads pixels instead of decoding JPEG/PNG.

The stored image is either the file's own pixels (`resize: false`: every image must then have one
size, as batching them needs anyway) or its centre square, scaled so the shorter side is `size`
(`resize: true`). The square is what a fixed-size record allows; random crops then sample from it."""

import math
import os
import sys

from dlcli.errors import DataError, first_line

# ImageNet's 256/224: a stored image this much larger than the pipeline's final size leaves crops
# and flips room without ever scaling a crop down by more than this (so no aliasing).
STORE_MARGIN = 256 / 224
RESCALING = ("resize", "random_resized_crop")  # transforms after which the file's own size no longer matters
FORMAT_VERSION = 1  # bump when the decoding below changes: caches built before are rebuilt


class Unreadable(DataError):
    """An image file that cannot be decoded (data.skip_bad_images may leave it out)."""


def store_spec(first_image, data_cfg, channels: int) -> dict:
    """{channels, size [H, W], resize} for a folder whose first image (float CHW) is `first_image`:
    data.cache_size if set; else, when the transforms rescale, 1.14x the eval pipeline's final size;
    else the images' own size."""
    import torch

    from dlcli.data.transforms import compose

    names = {spec["name"] for spec in [*data_cfg.train_transforms, *data_cfg.eval_transforms]}
    if data_cfg.cache_size is None and not names & set(RESCALING):
        return {"channels": channels, "size": list(first_image.shape[-2:]), "resize": False}
    # What the eval pipeline makes of the stored centre square (a square the first image's shorter
    # side: one wide or tall image must not set the size of all)
    square = torch.zeros(first_image.shape[0], *[min(first_image.shape[-2:])] * 2)
    with torch.random.fork_rng(devices=[]):
        try:
            final = compose(data_cfg.eval_transforms)(square).shape[-2:]
        except (RuntimeError, ValueError, TypeError) as err:
            raise DataError(f"data.eval_transforms: {first_line(err)}") from None
    side = data_cfg.cache_size or math.ceil(STORE_MARGIN * max(final) - 1e-6)
    if side < max(final):
        print(f"note: data.cache_size {side} is smaller than the {max(final)}-pixel images the pipelines make: "
              f"they are scaled up", file=sys.stderr)
    return {"channels": channels, "size": [side, side], "resize": True}


def stored_pixels(path: str, spec: dict):
    """The uint8 [C, H, W] numpy array `spec` stores for the image file `path`; DataError naming the
    file when it cannot be decoded or (resize: false) has another size."""
    import numpy as np
    from PIL import Image

    height, width = spec["size"]
    try:
        with Image.open(path) as image:
            if spec["resize"] and image.format == "JPEG":  # decode at a reduced scale when it is far larger
                image.draft("RGB" if spec["channels"] == 3 else "L", _scaled(image.size, min(height, width)))
            image = _eight_bit(image).convert("L" if spec["channels"] == 1 else "RGB")
            if spec["resize"]:
                image = image.resize((width, height), Image.Resampling.BILINEAR, box=_centre_box(image.size))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise Unreadable(f"cannot read image {path}: {first_line(err, 'decode failed')}") from None
    if image.size != (width, height):
        raise DataError(f"images differ in size: {path} is {image.size[1]}x{image.size[0]}, the first is "
                        f"{height}x{width}; add a resize (or random_resized_crop) to data.train_transforms "
                        f"and data.eval_transforms, or set data.cache_size")
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def stored_image(path: str, spec: dict):
    """The image as the cache stores it, as a float CHW tensor in [0, 1] (what training read)."""
    import torch

    return torch.from_numpy(stored_pixels(path, spec)).to(torch.float32) / 255.0


def _eight_bit(image):
    """16-bit grayscale scaled by its full range to 8 bits (PIL's own convert would clip it)."""
    import numpy as np
    from PIL import Image

    if not image.mode.startswith("I;16"):
        return image
    return Image.fromarray((np.asarray(image, dtype=np.float32) * (255 / 65535)).round().astype(np.uint8))


def _centre_box(size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The centred square of an image of `size` (width, height), as PIL's (left, top, right, bottom)."""
    width, height = size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def _scaled(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    """The smallest (width, height) with the aspect of `size` whose shorter side is at least `shorter`."""
    scale = shorter / min(size)
    return max(1, math.ceil(size[0] * scale)), max(1, math.ceil(size[1] * scale))


def fingerprint(root: str, paths: list[str]) -> str:
    """A digest of the files' relative paths, sizes, modification and change times and inodes: any
    added, removed, replaced or touched image changes it (so does a chmod: a rebuild, harmlessly)."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError as err:
            raise DataError(f"cannot read image {path}: {err.strerror or err}") from None
        # ctime and inode too: a copy that keeps the mtime (cp -p, rsync -a, tar x) still changes them
        line = f"{os.path.relpath(path, root)}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\0{stat.st_ino}"
        digest.update(f"{line}\n".encode())
    return digest.hexdigest()
