"""Inception-style random-resized-crop on whole batches (registered as `random_resized_crop` in
transforms.py, which folds a following horizontal flip into it)."""

from typing import Any


class BatchRandomResizedCrop:
    """Inception-style crops, one per image, drawn as torchvision's RandomResizedCrop draws them (10
    tries at a random area and aspect, else the centre). A batch of images at most MAX_BATCHED times
    the output size (as the image cache stores them) is resampled in one bilinear grid_sample, which
    needs no antialiasing at that ratio; larger images are cropped and resized one by one with
    antialiasing, as torchvision does."""

    MAX_BATCHED = 1.5

    def __init__(self, size: tuple[int, int], scale: tuple[float, float], ratio: tuple[float, float]):
        self.size, self.scale, self.ratio = size, scale, ratio
        self.flip: Any = None  # a horizontal flip (transforms.BatchFlip) that follows, folded in by Pipeline

    def __call__(self, images):
        import torch
        import torch.nn.functional as F

        batch = images if images.dim() == 4 else images.unsqueeze(0)
        n, _, height, width = batch.shape
        top, left, h, w = self.boxes(n, height, width, batch.device)
        if max(height / self.size[0], width / self.size[1]) > self.MAX_BATCHED:
            out = self._one_by_one(batch, top, left, h, w)
            out = self.flip(out) if self.flip is not None else out
            return out if images.dim() == 4 else out[0]
        x_scale = w / width
        if self.flip is not None:  # drawn as BatchFlip draws it; a mirrored grid samples the mirror image
            flipped = torch.rand(n, device=batch.device) < self.flip.p
            x_scale = torch.where(flipped, -x_scale, x_scale)
        # The grid affine_grid would make for this scale-and-shift, built from its two axes (a tenth of the cost)
        out_h, out_w = self.size
        xs = (torch.arange(out_w, device=batch.device) * 2 + 1) / out_w - 1  # output pixel centres in [-1, 1]
        ys = (torch.arange(out_h, device=batch.device) * 2 + 1) / out_h - 1
        gx = x_scale[:, None] * xs + ((left + w / 2) / width * 2 - 1)[:, None]
        gy = (h / height)[:, None] * ys + ((top + h / 2) / height * 2 - 1)[:, None]
        grid = torch.stack([gx[:, None, :].expand(n, out_h, out_w), gy[:, :, None].expand(n, out_h, out_w)], -1)
        out = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out if images.dim() == 4 else out[0]

    def _one_by_one(self, batch, top, left, h, w):
        import torch
        from torchvision.transforms.v2.functional import resized_crop

        boxes = torch.stack([top, left, h, w], 1).long().tolist()
        return torch.stack([resized_crop(image, *box, list(self.size), antialias=True)
                            for image, box in zip(batch, boxes)])

    def boxes(self, n: int, height: int, width: int, device):
        """(top, left, height, width) float tensors of n crops."""
        import math

        import torch

        tries = 10
        area = height * width * torch.empty(n, tries, device=device).uniform_(*self.scale)
        aspect = torch.empty(n, tries, device=device).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1])).exp()
        w, h = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
        fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = fits.to(torch.uint8).argmax(1, keepdim=True)  # the first try that fits, as torchvision takes
        w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], fits.any(1)
        centre_w, centre_h = self._centre(height, width)
        w, h = torch.where(found, w, centre_w), torch.where(found, h, centre_h)
        top = torch.where(found, (torch.rand(n, device=device) * (height - h + 1)).floor(), ((height - h) / 2).floor())
        left = torch.where(found, (torch.rand(n, device=device) * (width - w + 1)).floor(), ((width - w) / 2).floor())
        return top, left, h, w

    def _centre(self, height: int, width: int) -> tuple[float, float]:
        """(width, height) of torchvision's fallback: the whole image, cut to the nearest allowed aspect."""
        low, high = self.ratio
        if width / height < low:
            return float(width), float(round(width / low))
        if width / height > high:
            return float(round(height * high)), float(height)
        return float(width), float(height)
