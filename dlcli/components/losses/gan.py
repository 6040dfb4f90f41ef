"""Adversarial losses (`loss: {name: gan_bce|gan_hinge|wgan_gp}`), each with `n_critic`:
discriminator steps per generator step. Scores are the discriminator's raw outputs."""

from dlcli.components.losses.registry import LOSSES
from dlcli.types import Fraction, NonNegativeFloat, PositiveInt


class AdversarialLoss:
    def __init__(self, kind: str, n_critic: int, label_smoothing: float = 0.0, gp_weight: float = 0.0):
        self.kind, self.n_critic, self.smoothing, self.gp_weight = kind, n_critic, label_smoothing, gp_weight

    def discriminator(self, real, fake):
        import torch.nn.functional as F

        if self.kind == "bce":  # one-sided smoothing: real targets 1 - s, fake targets stay 0
            return (F.binary_cross_entropy_with_logits(real, real.new_full(real.shape, 1 - self.smoothing))
                    + F.binary_cross_entropy_with_logits(fake, fake.new_zeros(fake.shape)))
        if self.kind == "hinge":
            return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        return fake.mean() - real.mean()  # Wasserstein critic

    def generator(self, fake):
        import torch.nn.functional as F

        if self.kind == "bce":  # non-saturating: maximise log D(G(z))
            return F.binary_cross_entropy_with_logits(fake, fake.new_ones(fake.shape))
        return -fake.mean()

    def probability(self, scores):
        """D(x) as logged: a probability for BCE, the raw score for hinge and Wasserstein critics."""
        return scores.sigmoid() if self.kind == "bce" else scores

    def gradient_penalty(self, critic, real, fake, labels):
        """WGAN-GP: gp_weight x (|grad critic(x_hat)| - 1)^2 on random interpolates of real and fake."""
        import torch

        if not self.gp_weight:
            return real.new_zeros(())
        alpha = torch.rand(real.shape[0], *[1] * (real.dim() - 1), device=real.device)
        mixed = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
        scores = critic(mixed, labels)
        (grad,) = torch.autograd.grad(scores.float().sum(), mixed, create_graph=True)
        return self.gp_weight * (grad.flatten(1).norm(dim=1) - 1).square().mean()


@LOSSES.register("gan_bce")
def gan_bce(*, label_smoothing: Fraction = 0.0, n_critic: PositiveInt = 1):
    """GAN: non-saturating binary cross-entropy (the default); one-sided label smoothing for real images."""
    return AdversarialLoss("bce", n_critic, label_smoothing)


@LOSSES.register("gan_hinge")
def gan_hinge(*, n_critic: PositiveInt = 1):
    """GAN: hinge loss for the discriminator, -D(G(z)) for the generator."""
    return AdversarialLoss("hinge", n_critic)


@LOSSES.register("wgan_gp")
def wgan_gp(*, gp_weight: NonNegativeFloat = 10.0, n_critic: PositiveInt = 5):
    """GAN: Wasserstein critic with gradient penalty (use without batch norm in the discriminator)."""
    return AdversarialLoss("wasserstein", n_critic, gp_weight=gp_weight)
