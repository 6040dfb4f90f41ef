"""The generator and discriminator networks behind the `gan` model (torch imported here only)."""

import torch
from torch import nn


class MLPGenerator(nn.Module):
    def __init__(self, width: int, hidden: list[int], shape: tuple, batch_norm: bool, embed):
        super().__init__()
        self.shape, self.embed = shape, embed
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size)] + ([nn.BatchNorm1d(size)] if batch_norm else []) + [nn.ReLU()]
            width = size
        out = shape[0] * shape[1] * shape[2]
        self.net = nn.Sequential(*layers, nn.Linear(width, out), nn.Tanh())

    def forward(self, z, labels=None):
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], 1)
        return self.net(z).view(-1, *self.shape)


class ConvGenerator(nn.Module):
    """Noise to channels[0] maps at the start size, then stride-2 transposed convs up to the image.

    stem `conv` (the DCGAN recipe): the noise as a 1x1 map through a transposed conv whose kernel is
    the start size; `linear` (dlcli's first layout): a linear layer, then BatchNorm1d."""

    def __init__(self, width: int, channels: list[int], shape: tuple, start: int, batch_norm: bool, embed,
                 stem: str = "conv"):
        super().__init__()
        self.embed, self.start, self.first, self.stem = embed, start, channels[0], stem
        if stem == "conv":  # no bias where batch norm follows: its shift would cancel it
            self.project = nn.Sequential(nn.ConvTranspose2d(width, channels[0], start, 1, 0, bias=not batch_norm),
                                         nn.BatchNorm2d(channels[0]) if batch_norm else nn.Identity(), nn.ReLU())
        else:
            self.project = nn.Sequential(nn.Linear(width, channels[0] * start * start),
                                         nn.BatchNorm1d(channels[0] * start * start) if batch_norm else nn.Identity(),
                                         nn.ReLU())
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=not batch_norm)]
            layers += ([nn.BatchNorm2d(c_out)] if batch_norm else []) + [nn.ReLU()]
        layers += [nn.ConvTranspose2d(channels[-1], shape[0], 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z, labels=None):
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], 1)
        if self.stem == "conv":
            return self.net(self.project(z[:, :, None, None]))
        return self.net(self.project(z).view(-1, self.first, self.start, self.start))


class _Projection(nn.Module):
    """Score = linear(features) [+ <embed(label), features> when conditional]."""

    def __init__(self, width: int, classes: int):
        super().__init__()
        self.out = nn.Linear(width, 1)
        self.embed = nn.Embedding(classes, width) if classes else None

    def forward(self, h, labels):
        score = self.out(h).squeeze(1)
        if self.embed is not None:
            score = score + (self.embed(labels) * h).sum(1)
        return score


class MLPDiscriminator(nn.Module):
    def __init__(self, shape: tuple, hidden: list[int], dropout: float, classes: int):
        super().__init__()
        layers: list[nn.Module]
        layers, width = [nn.Flatten()], shape[0] * shape[1] * shape[2]
        for size in hidden:
            layers += [nn.Linear(width, size), nn.LeakyReLU(0.2)] + ([nn.Dropout(dropout)] if dropout else [])
            width = size
        self.features, self.head = nn.Sequential(*layers), _Projection(width, classes)

    def forward(self, x, labels=None):
        return self.head(self.features(x), labels)


class ConvDiscriminator(nn.Module):
    """Stride-2 convs halve the image per entry of channels; then a linear score."""

    def __init__(self, shape: tuple, channels: list[int], dropout: float, batch_norm: bool, classes: int):
        super().__init__()
        layers: list[nn.Module]
        layers, c_in = [], shape[0]
        for i, c_out in enumerate(channels):
            layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not (batch_norm and i)))
            layers += ([nn.BatchNorm2d(c_out)] if batch_norm and i else []) + [nn.LeakyReLU(0.2)]
            layers += [nn.Dropout(dropout)] if dropout else []
            c_in = c_out
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        side = shape[1] // 2 ** len(channels)
        self.head = _Projection(c_in * side * side, classes)

    def forward(self, x, labels=None):
        return self.head(self.features(x), labels)


def dcgan_init(net: nn.Module) -> None:
    """The DCGAN paper's init: conv and linear weights from N(0, 0.02), batch-norm weights from
    N(1, 0.02), biases 0 (embeddings keep torch's)."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(module.weight, 1.0, 0.02)
        else:
            continue
        if module.bias is not None:
            nn.init.zeros_(module.bias)
