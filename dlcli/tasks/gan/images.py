"""Generated images: sampling from a GAN checkpoint and writing PNG grids or files."""

from pathlib import Path


def generate(model, noise, labels=None, batch_size: int = 512):
    """Images in [0, 1] for the given noise (and labels), in eval mode, without gradients."""
    from dlcli.compute import batched

    def images(rows):
        return model.generator(noise[rows], None if labels is None else labels[rows]).float()

    return ((batched(model, images, len(noise), noise.device, batch_size=batch_size) + 1) / 2).clamp(0, 1)


def save_grid(images, path: Path) -> None:
    """Images in [0, 1] as one PNG grid, about square."""
    import math

    from torchvision.utils import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.float().cpu(), str(path), nrow=max(1, int(math.ceil(math.sqrt(len(images))))), padding=2)


def save_each(images, folder: Path) -> list[str]:
    from torchvision.utils import save_image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(folder / f"sample_{i:04d}.png"))
        save_image(image.float(), paths[-1])
    return paths


def first_images(batches, n: int = 64):
    """Up to n training images in [0, 1], read without drawing from any RNG (the shuffle must not
    move); None for file-backed data."""
    x = getattr(batches, "x", None)  # device-resident batches
    if x is None:  # the DataLoader path over host tensors
        x = getattr(getattr(getattr(batches, "loader", None), "dataset", None), "x", None)
    if x is None:
        return None
    x = x[:n]
    return x.float() / 255 if not x.dtype.is_floating_point else x.float()
