"""Throughput: dlcli's engine against a hand-written PyTorch loop, same model/data/batch/device.

Prints samples/s (tokens/s for the LSTM and transformer language models; images/s for the DCGAN) for
each and the ratio (dlcli / hand-written). Models: mlp, cnn (MNIST-shaped), airbench (the
airbench94-style CIFAR net), cifar (the net of configs/cnn_cifar.yaml), resnet18 (torchvision's,
`stem: cifar`, CIFAR-sized input; not in the default list: slow on CPU, `--models resnet18`), lstm,
transformer (configs/transformer_chars.yaml's sizes; the hand-written loop is nanoGPT's: cross-entropy,
backward, step on the same model object), dcgan. With `lightning` installed, the CNN rows (cnn,
airbench, cifar) also print Lightning's figure. `--compile` compiles both loops' models. Not a test:
run it on a quiet machine, e.g. `python benchmarks/throughput.py` or `--device cuda`.
"""

import argparse
import importlib.util
import io
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from bench_configs import IMAGE_MODELS, config  # noqa: E402

from dlcli.cli.progress import Progress  # noqa: E402
from dlcli.config import validate  # noqa: E402
from dlcli.data.transforms import NORMALIZE_PRESETS  # noqa: E402
from dlcli.training.build import build_trainer  # noqa: E402


def gan_hand_written_epoch(nets, opts, x, batch, device, dtype) -> float:
    """The usual two-optimizer DCGAN loop: a D step on real and detached fakes, then a G step."""
    g, d, latent_dim = nets
    opt_g, opt_d = opts
    sync(device)
    start = time.perf_counter()
    g.train()
    d.train()
    order = torch.randperm(len(x)).to(device)
    for i in range(0, len(x), batch):
        real = x[order[i:i + batch]].float() / 255 * 2 - 1
        z = torch.randn(real.shape[0], latent_dim, device=device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            fake = g(z)
            real_s, fake_s = d(real), d(fake.detach())
            d_loss = (F.binary_cross_entropy_with_logits(real_s, torch.ones_like(real_s))
                      + F.binary_cross_entropy_with_logits(fake_s, torch.zeros_like(fake_s)))
        d_loss.backward()
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            score = d(fake)
            g_loss = F.binary_cross_entropy_with_logits(score, torch.ones_like(score))
        g_loss.backward()
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - start


def normalizer(preset: str, device):
    mean, std = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in NORMALIZE_PRESETS[preset])
    return mean, std


def image_loss(mean, std):
    return lambda model, x, y: F.cross_entropy(model((x.float() / 255 - mean) / std), y)


def lm_loss(model, x, y):
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def dlcli_epoch(trainer) -> float:
    progress = Progress(1, quiet=True, stream=io.StringIO())
    sync(trainer.device)
    start = time.perf_counter()
    trainer.train_epoch(progress)
    sync(trainer.device)
    return time.perf_counter() - start


def hand_written_epoch(model, opt, x, y, batch, device, dtype, loss_of) -> float:
    """The loop a careful user writes: data resident on the device, no per-step host sync."""
    sync(device)
    start = time.perf_counter()
    model.train()
    order = torch.randperm(len(y)).to(device)
    for i in range(0, len(y), batch):
        idx = order[i:i + batch]
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_of(model, x[idx], y[idx])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - start


def hand_written(model_name: str, model, x, y, args, device, dtype):
    """The hand-written loop's epoch, on the same model object, optimizer and data tensors."""
    fused = {"fused": True} if device.type == "cuda" else {}  # what a careful GPU user writes
    maybe_compile = torch.compile if args.compile else (lambda net: net)
    if model_name == "dcgan":
        opts = [torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999), **fused)
                for net in (model.generator, model.discriminator)]
        nets = (maybe_compile(model.generator), maybe_compile(model.discriminator), model.latent_dim)
        return lambda: gan_hand_written_epoch(nets, opts, x, args.batch, device, dtype)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **fused)
    language = model_name in ("lstm", "transformer")
    loss_of = lm_loss if language else image_loss(*normalizer(IMAGE_MODELS[model_name][2], device))
    net = maybe_compile(model)
    return lambda: hand_written_epoch(net, opt, x, y, args.batch, device, dtype, loss_of)


def bench(model_name: str, args) -> None:
    cfg = validate(config(model_name, args.device, args.batch, args.samples, args.precision, args.compile))
    trainer, _ = build_trainer(cfg)
    device = trainer.device
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(trainer.precision)
    # The hand-written loop gets an identical fresh model and the same data tensors.
    reference, _ = build_trainer(cfg)
    x, y = reference.train_batches.x, reference.train_batches.y
    hand = hand_written(model_name, reference.model, x, y, args, device, dtype)
    unit = "tokens" if model_name in ("lstm", "transformer") else "samples"
    count = y.numel() if model_name in ("lstm", "transformer") else len(y)
    dlcli_epoch(trainer)  # warm-up (allocator, cuDNN autotune, compilation)
    hand()
    ours, theirs = [], []
    for _ in range(args.rounds):  # interleaved so machine noise hits both alike
        ours.append(count / dlcli_epoch(trainer))
        theirs.append(count / hand())
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{model_name:8s} {str(device):6s} {trainer.precision:5s} batch {args.batch:5d}  "
          f"hand-written {b:10.0f} {unit}/s  dlcli {a:10.0f} {unit}/s  ratio {a / b:.3f}", flush=True)
    if model_name in ("cnn", "airbench", "cifar") and not args.compile and importlib.util.find_spec("lightning"):
        from lightning_row import lightning_samples_per_s

        fresh, _ = build_trainer(cfg)
        mean, std = normalizer(IMAGE_MODELS[model_name][2], device)
        c = lightning_samples_per_s(fresh.model, x, y, args.batch, device, trainer.precision, args.rounds,
                                    args.workers, mean, std)
        print(f"{'':8s} lightning {c:10.0f} samples/s (DataLoader, {args.workers} workers)  "
              f"dlcli / lightning {a / c:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", default="mlp,cnn,airbench,cifar,lstm,transformer,dcgan")
    parser.add_argument("--compile", action="store_true", help="torch.compile in both loops (train.compile)")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers for the Lightning row")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.models.split(","):
        bench(name, args)


if __name__ == "__main__":
    main()
