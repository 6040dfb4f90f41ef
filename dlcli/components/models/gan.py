"""`gan`: a generator and a discriminator in one module (one state_dict, one checkpoint).

Both come as an MLP or a DCGAN-style conv net sized from the dataset's image shape. With
`conditional: true` the class label is embedded in both: concatenated to the generator's noise,
and projected onto the discriminator's features (a projection discriminator)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict

from dlcli.components.models.registry import MODELS
from dlcli.errors import ConfigError
from dlcli.types import Fraction, PositiveInt


class NetSpec(BaseModel):
    """One network: `mlp` (hidden widths) or `dcgan` (feature maps; one upsampling per entry)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["mlp", "dcgan"] = "mlp"
    hidden: list[PositiveInt] = [256, 256]  # mlp
    channels: list[PositiveInt] = [128, 64]  # dcgan: generator from coarse to fine; discriminator reversed
    batch_norm: bool | None = None  # default: on in the generator, off in the discriminator (safe with wgan_gp)
    dropout: Fraction = 0.0
    init: Literal["dcgan", "default"] | None = None  # default: dcgan for type dcgan, torch's own for mlp
    # dcgan generator: how the noise becomes the first maps (default conv; None keeps the
    # discriminator's section, which has no stem, equal to that of checkpoints from before the option)
    stem: Literal["conv", "linear"] | None = None


def legacy_gan(spec: dict) -> dict:
    """A `gan` section embedded in a checkpoint written before `stem` existed: its generator was
    built with the linear stem (`init` needs no such care: it only shapes fresh weights)."""
    generator = spec.get("generator")
    if not isinstance(generator, dict) or "stem" in generator:
        return spec
    return {**spec, "generator": {**generator, "stem": "linear"}}


@MODELS.register("gan", legacy=legacy_gan)
def gan(input_shape, num_classes, *, generator: NetSpec, discriminator: NetSpec,
        latent_dim: PositiveInt = 64, conditional: bool = False, embedding_dim: PositiveInt = 16,
        samples: PositiveInt = 64):
    """Generative adversarial network: generator + discriminator (mlp or dcgan), optionally class-conditional."""
    import torch
    from torch import nn

    classes = num_classes if conditional else 0
    g_net = _generator(generator, tuple(input_shape), latent_dim, classes, embedding_dim)
    d_net = _discriminator(discriminator, tuple(input_shape), classes)
    _initialise(g_net, generator)
    _initialise(d_net, discriminator)

    class GAN(nn.Module):
        def __init__(self):
            super().__init__()
            self.generator, self.discriminator = g_net, d_net
            self.latent_dim, self.num_classes, self.image_shape = latent_dim, classes, tuple(input_shape)
            # A fixed noise batch (saved with the weights) so each epoch's sample grid shows the same points.
            gen = torch.Generator().manual_seed(1234)
            self.register_buffer("fixed_noise", torch.randn(samples, latent_dim, generator=gen))
            self.register_buffer("fixed_labels", torch.arange(samples) % max(classes, 1))

        def forward(self, z, labels=None):
            """Images in [-1, 1] from noise (and labels when conditional)."""
            return self.generator(z, labels)

    return GAN()


def _check_size(spec: NetSpec, shape: tuple, role: str) -> int:
    """Start resolution of a dcgan net: the image size halved once per entry of `channels`."""
    _, height, width = shape
    k = 2 ** len(spec.channels)
    if height != width or height % k:
        raise ConfigError(f"model.{role}.channels: {len(spec.channels)} resolution steps need a square image "
                          f"whose side divides by {k}; this dataset's images are {height}x{width}",
                          hint="use fewer channels entries, or type: mlp")
    return height // k


def _generator(spec: NetSpec, shape: tuple, latent: int, classes: int, emb: int):
    from torch import nn

    from dlcli.components.models.gan_nets import ConvGenerator, MLPGenerator

    batch_norm = True if spec.batch_norm is None else spec.batch_norm
    embed = nn.Embedding(classes, emb) if classes else None
    width = latent + (emb if classes else 0)
    if spec.type == "mlp":
        return MLPGenerator(width, spec.hidden, shape, batch_norm, embed)
    start = _check_size(spec, shape, "generator")
    return ConvGenerator(width, spec.channels, shape, start, batch_norm, embed, spec.stem or "conv")


def _discriminator(spec: NetSpec, shape: tuple, classes: int):
    from dlcli.components.models.gan_nets import ConvDiscriminator, MLPDiscriminator

    batch_norm = bool(spec.batch_norm)
    if spec.type == "mlp":
        return MLPDiscriminator(shape, spec.hidden, spec.dropout, classes)
    _check_size(spec, shape, "discriminator")
    return ConvDiscriminator(shape, list(reversed(spec.channels)), spec.dropout, batch_norm, classes)


def _initialise(net, spec: NetSpec) -> None:
    from dlcli.components.models.gan_nets import dcgan_init

    if (spec.init or ("dcgan" if spec.type == "dcgan" else "default")) == "dcgan":
        dcgan_init(net)
