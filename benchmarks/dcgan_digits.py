"""Sample quality: dlcli's DCGAN recipe against a hand-written DCGAN loop of the same recipe.

Both train on the same images (scikit-learn's digits, training split, resized to --size by dlcli's
`resize` transform) for the same number of iterations with the same recipe: the PyTorch DCGAN
example's networks (a 1x1 noise map through a 4x4 transposed conv, then stride-2 transposed convs;
the discriminator mirrors it with batch norm after its first conv), weights from N(0, 0.02),
BCE with real label 1, Adam 2e-4 with betas (0.5, 0.999). The hand-written side is the example's
Generator/Discriminator classes, weights_init and training step written out here; dlcli's side is
`dlcli train` on the equivalent config (in-process).

Both generators are then scored the same way: --samples images from the same noise, in eval mode,
resized to a dlcli classifier's input (an MLP on the 8x8 digits, trained here first), Fréchet
distance between its penultimate features of generated and of real training images (lower is
better). Prints per seed and the mean, and the ratio dlcli / hand-written. `--dlcli-biases` gives
the hand-written nets the three biases dlcli's keep (the only layer difference). Not a test: e.g.
`python benchmarks/dcgan_digits.py --size 64 --width 16 --epochs 10 --seeds 0 1 2`.
"""

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dlcli.cli.progress import Progress  # noqa: E402
from dlcli.config import load, validate  # noqa: E402
from dlcli.data.pipeline import train_batches  # noqa: E402
from dlcli.tasks import task_class  # noqa: E402
from dlcli.tasks.gan.images import generate  # noqa: E402
from dlcli.tasks.gan.quality import scores  # noqa: E402
from dlcli.training import checkpoint  # noqa: E402
from dlcli.training.build import from_checkpoint  # noqa: E402
from dlcli.training.session import train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def gan_config(args, seed: int) -> dict:
    widths = [args.width * 2 ** i for i in reversed(range(doublings(args.size)))]  # e.g. 128, 64, 32, 16
    adam = {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999]}
    return {"name": f"dcgan_digits_s{seed}", "seed": seed, "task": "gan",
            "data": {"dataset": {"name": "digits"}, "val_split": 0, "batch_size": args.batch,
                     "train_transforms": [{"resize": {"size": args.size}}],
                     "eval_transforms": [{"resize": {"size": args.size}}]},
            "model": {"name": "gan", "latent_dim": args.latent, "samples": 16,
                      "generator": {"type": "dcgan", "channels": widths},
                      "discriminator": {"type": "dcgan", "channels": widths, "batch_norm": True}},
            "loss": {"name": "gan_bce"}, "optimizer": {"generator": adam, "discriminator": adam},
            "train": {"epochs": args.epochs, "device": "cpu", "log_interval": 10_000, "monitor": "train/g_loss"}}


def doublings(size: int) -> int:
    """Stride-2 layers from the 4x4 start to size x size."""
    n = (size // 4).bit_length() - 1
    if 4 * 2 ** n != size:
        raise SystemExit(f"--size must be 4 x a power of two (got {size})")
    return n


# ------------------------------------------------------------- the hand-written side (the example's code)

class Generator(nn.Module):
    def __init__(self, nz: int, ngf: int, nc: int, n: int, out_bias: bool = False):
        super().__init__()
        layers = [nn.ConvTranspose2d(nz, ngf * 2 ** (n - 1), 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 2 ** (n - 1)),
                  nn.ReLU(True)]
        for i in reversed(range(1, n)):
            layers += [nn.ConvTranspose2d(ngf * 2 ** i, ngf * 2 ** (i - 1), 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ngf * 2 ** (i - 1)), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=out_bias), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z, labels=None):
        return self.main(z[:, :, None, None])


class Discriminator(nn.Module):
    def __init__(self, ndf: int, nc: int, n: int, biases: bool = False):
        super().__init__()
        layers = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=biases), nn.LeakyReLU(0.2, inplace=True)]
        for i in range(1, n):
            layers += [nn.Conv2d(ndf * 2 ** (i - 1), ndf * 2 ** i, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ndf * 2 ** i), nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.Conv2d(ndf * 2 ** (n - 1), 1, 4, 1, 0, bias=biases)]  # logits: BCE-with-logits below
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x).view(-1)


def weights_init(m):
    name = m.__class__.__name__
    if name.find("Conv") != -1:
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:  # --dlcli-biases only
            nn.init.zeros_(m.bias)
    elif name.find("BatchNorm") != -1:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def hand_written(x, args, seed: int, steps: int):
    """The example's loop for `steps` iterations over x (images in [0, 1]), reshuffled every pass."""
    torch.manual_seed(seed)
    n = doublings(args.size)
    net_g = Generator(args.latent, args.width, x.shape[1], n, out_bias=args.dlcli_biases)
    net_d = Discriminator(args.width, x.shape[1], n, biases=args.dlcli_biases)
    net_g.apply(weights_init)
    net_d.apply(weights_init)
    opt_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    done = 0
    while done < steps:
        order = torch.randperm(len(x))
        for i in range(0, len(x), args.batch):
            real = x[order[i:i + args.batch]] * 2 - 1
            net_d.zero_grad()
            out = net_d(real)
            F.binary_cross_entropy_with_logits(out, torch.ones_like(out)).backward()
            fake = net_g(torch.randn(len(real), args.latent))
            out = net_d(fake.detach())
            F.binary_cross_entropy_with_logits(out, torch.zeros_like(out)).backward()
            opt_d.step()
            net_g.zero_grad()
            out = net_d(fake)
            F.binary_cross_entropy_with_logits(out, torch.ones_like(out)).backward()
            opt_g.step()
            done += 1
            if done == steps:
                break
    holder = nn.Module()
    holder.generator = net_g
    return holder


# ------------------------------------------------------------- shared parts

def classifier(root: Path):
    """A dlcli MLP on the 8x8 digits (configs/quickstart.yaml), as (path, config, meta, model)."""
    config = load(str(REPO / "configs" / "quickstart.yaml"), ["train.device=cpu"])
    summary = train(config, str(root), None, Progress(config.train.epochs, quiet=True, stream=io.StringIO()))
    path = summary["checkpoints"]["best"]
    clf_config, meta, model, _, _ = from_checkpoint(checkpoint.load(path), [], "cpu")
    return path, clf_config, meta, model


def training_images(args) -> torch.Tensor:
    """The digits' training split at --size, as dlcli's GAN sees it (images in [0, 1], resized by its
    training transforms), in one pass over its training batches."""
    config = validate(gan_config(args, 0))
    batches, _, _ = train_batches(config, CPU, torch.Generator().manual_seed(0), task_class("gan"))
    return torch.cat([b.x for b in batches])


def fd(model, real, features, args) -> float:
    noise = torch.randn(args.samples, args.latent, generator=torch.Generator().manual_seed(1))
    return scores(real, generate(model, noise), features, CPU)["fd"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=16, help="ngf = ndf: maps of the finest layer")
    parser.add_argument("--latent", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=1000, help="generated images scored per generator")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dlcli-biases", action="store_true",
                        help="give the hand-written nets the biases dlcli keeps (G's output conv, D's first and last "
                             "layer), to tell the recipe's effect from theirs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="dcgan_digits_"))
    features = classifier(root)
    real = training_images(args)
    print(f"digits training split: {len(real)} images at {args.size}x{args.size}; batch {args.batch}, "
          f"{args.epochs} epochs, ngf = ndf = {args.width}, scored on {args.samples} samples", flush=True)
    rows = []
    for seed in args.seeds:
        config = validate(gan_config(args, seed))
        started = time.perf_counter()
        summary = train(config, str(root), None, Progress(args.epochs, quiet=True, stream=io.StringIO()))
        dlcli_s = time.perf_counter() - started
        _, _, model, _, _ = from_checkpoint(checkpoint.load(summary["checkpoints"]["last"]), [], "cpu")
        started = time.perf_counter()
        hand = hand_written(real, args, seed, summary["steps"])
        hand_s = time.perf_counter() - started
        rows.append((fd(model, real, features, args), fd(hand, real, features, args)))
        print(f"seed {seed}: {summary['steps']} iterations  FD dlcli {rows[-1][0]:.2f} ({dlcli_s:.0f} s)  "
              f"hand-written {rows[-1][1]:.2f} ({hand_s:.0f} s)", flush=True)
    ours, theirs = statistics.mean(r[0] for r in rows), statistics.mean(r[1] for r in rows)
    print(f"mean FD over {len(rows)} seeds: dlcli {ours:.2f}  hand-written {theirs:.2f}  "
          f"ratio dlcli / hand-written {ours / theirs:.3f}")


if __name__ == "__main__":
    main()
