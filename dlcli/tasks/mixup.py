"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) for classification, batched on whatever
device holds the batch (so the device-resident path and the DataLoader path mix alike), as timm's
`Mixup` in its per-batch mode.

A mixed batch is x' = lam x + (1 - lam) x[perm] (mixup), or x with a box cut from x[perm] whose area
is 1 - lam (cutmix); its loss is lam L(y) + (1 - lam) L(y[perm]), which for cross-entropy is exactly
the cross-entropy against the soft targets lam onehot(y) + (1 - lam) onehot(y[perm]). lam is drawn
from Beta(alpha, alpha) and folded into [0.5, 1] (the pairing is random, so lam and 1 - lam are the
same mix): the batch's own labels are always the dominant ones, which training accuracy counts.
Draws come from torch's default CPU generator, whose state every checkpoint keeps (exact resume).
"""

from dataclasses import dataclass


@dataclass
class Mixed:
    x: object
    partner: object  # the permutation: sample i is mixed with sample partner[i]
    lam: float  # the weight of the batch's own labels, in [0.5, 1]


class Mixup:
    def __init__(self, alpha: float, cutmix_alpha: float, prob: float, switch_prob: float):
        self.alpha, self.cutmix_alpha, self.prob, self.switch_prob = alpha, cutmix_alpha, prob, switch_prob

    def __call__(self, x) -> Mixed | None:
        """The mixed batch, or None when this batch is left as it is (probability 1 - prob)."""
        import torch

        if float(torch.rand(())) >= self.prob:
            return None
        use_cutmix = self.cutmix_alpha > 0 and (self.alpha == 0 or float(torch.rand(())) < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        lam = max(lam, 1 - lam)
        partner = torch.randperm(x.shape[0]).to(x.device)
        if use_cutmix:
            return cutmix(x, partner, lam)
        return Mixed(x * lam + x[partner] * (1 - lam), partner, lam)


def cutmix(x, partner, lam: float) -> Mixed:
    """A box of about (1 - lam) of the area, centred at random and clipped to the image, pasted from
    each sample's partner; lam is then the area actually kept."""
    import torch

    height, width = x.shape[-2:]
    cut = (1 - lam) ** 0.5
    box_h, box_w = int(height * cut), int(width * cut)
    cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
    top, bottom = max(cy - box_h // 2, 0), min(cy + box_h // 2 + box_h % 2, height)
    left, right = max(cx - box_w // 2, 0), min(cx + box_w // 2 + box_w % 2, width)
    mixed = x.clone()
    mixed[..., top:bottom, left:right] = x[partner][..., top:bottom, left:right]
    kept = 1 - (bottom - top) * (right - left) / (height * width)
    return Mixed(mixed, partner, kept)


def mixed_loss(loss_fn, logits, y, weights, mixed: Mixed):
    """lam L(y) + (1 - lam) L(y[partner]): the loss against the mixed (soft) targets."""
    partner_weights = weights[mixed.partner] if weights is not None else None
    return (mixed.lam * loss_fn(logits, y, weights)
            + (1 - mixed.lam) * loss_fn(logits, y[mixed.partner], partner_weights))
