"""Throughput: dlcli's engine against a hand-written PyTorch loop, same model/data/batch/device.

Prints samples/s (tokens/s for the LSTM language model; images/s for the DCGAN) for each and the ratio (dlcli /
hand-written). Not a test: run it on a quiet machine, e.g. `python benchmarks/throughput.py` or
`--device cuda`.
"""

import argparse
import io
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dlcli.build import build_trainer
from dlcli.config import validate
from dlcli.progress import Progress

MODELS = {
    "mlp": {"name": "mlp", "hidden": [1024, 1024]},
    "cnn": {"name": "cnn", "channels": [32, 64], "batch_norm": True, "head": [128]},
}


SEQ_LEN = 128


def config(model: str, device: str, batch: int, samples: int, precision: str) -> dict:
    if model == "lstm":
        return lstm_config(device, batch, samples, precision)
    if model == "dcgan":
        return dcgan_config(device, batch, samples, precision)
    return {
        "name": f"bench_{model}", "seed": 0,
        "data": {"dataset": {"name": "synthetic", "samples": samples, "shape": [1, 28, 28]},
                 "val_split": 0, "batch_size": batch,
                 "train_transforms": [{"normalize": "mnist"}], "eval_transforms": [{"normalize": "mnist"}]},
        "model": MODELS[model],
        "optimizer": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": 1, "device": device, "precision": precision, "log_interval": 10**9,
                  "monitor": "train/loss"},
    }


def lstm_config(device: str, batch: int, windows: int, precision: str) -> dict:
    """A character LM over random text: `windows` windows of SEQ_LEN tokens."""
    text = Path(tempfile.mkdtemp()) / "corpus.txt"
    rng = random.Random(0)
    text.write_text("".join(rng.choice("abcdefghijklmnopqrstuvwxyz .,\n") for _ in range(windows * SEQ_LEN + 1)))
    return {
        "name": "bench_lstm", "seed": 0, "task": "language_model",
        "data": {"dataset": {"name": "text", "path": str(text), "seq_len": SEQ_LEN}, "val_split": 0,
                 "batch_size": batch},
        "model": {"name": "lstm", "embedding_dim": 128, "hidden_size": 256, "num_layers": 2},
        "optimizer": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": 1, "device": device, "precision": precision, "log_interval": 10**9,
                  "monitor": "train/loss"},
    }


def dcgan_config(device: str, batch: int, samples: int, precision: str) -> dict:
    adam = {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999]}
    return {
        "name": "bench_dcgan", "seed": 0, "task": "gan",
        "data": {"dataset": {"name": "synthetic", "samples": samples, "shape": [1, 28, 28]}, "val_split": 0,
                 "batch_size": batch},
        "model": {"name": "gan", "latent_dim": 64, "generator": {"type": "dcgan", "channels": [128, 64]},
                  "discriminator": {"type": "dcgan", "channels": [128, 64]}},
        "optimizer": {"generator": adam, "discriminator": adam},
        "train": {"epochs": 1, "device": device, "precision": precision, "log_interval": 10**9,
                  "monitor": "train/loss"},
    }


def gan_hand_written_epoch(model, opts, x, batch, device, dtype) -> float:
    """The usual two-optimizer DCGAN loop: a D step on real and detached fakes, then a G step."""
    g, d = model.generator, model.discriminator
    opt_g, opt_d = opts
    sync(device)
    start = time.perf_counter()
    model.train()
    order = torch.randperm(len(x)).to(device)
    for i in range(0, len(x), batch):
        real = x[order[i:i + batch]].float() / 255 * 2 - 1
        z = torch.randn(real.shape[0], model.latent_dim, device=device)
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


def image_loss(model, x, y):
    mean, std = 0.1307, 0.3081
    return F.cross_entropy(model((x.float() / 255 - mean) / std), y)


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


def bench(model_name: str, args) -> None:
    cfg = validate(config(model_name, args.device, args.batch, args.samples, args.precision))
    trainer, _ = build_trainer(cfg)
    device = trainer.device
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(trainer.precision)
    # The hand-written loop gets an identical fresh model and the same data tensors.
    reference, _ = build_trainer(cfg)
    model = reference.model
    x, y = reference.train_batches.x, reference.train_batches.y
    if model_name == "dcgan":
        opts = [torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))
                for net in (model.generator, model.discriminator)]
        hand = lambda: gan_hand_written_epoch(model, opts, x, args.batch, device, dtype)  # noqa: E731
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_of = lm_loss if model_name == "lstm" else image_loss
        hand = lambda: hand_written_epoch(model, opt, x, y, args.batch, device, dtype, loss_of)  # noqa: E731
    unit = "tokens" if model_name == "lstm" else "samples"
    count = y.numel() if model_name == "lstm" else len(y)
    dlcli_epoch(trainer)  # warm-up (allocator, cuDNN autotune)
    hand()
    ours, theirs = [], []
    for _ in range(args.rounds):  # interleaved so machine noise hits both alike
        ours.append(count / dlcli_epoch(trainer))
        theirs.append(count / hand())
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{model_name:5s} {str(device):6s} {trainer.precision:5s} batch {args.batch:5d}  "
          f"hand-written {b:10.0f} {unit}/s  dlcli {a:10.0f} {unit}/s  ratio {a / b:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", default="mlp,cnn,lstm,dcgan")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.models.split(","):
        bench(name, args)


if __name__ == "__main__":
    main()
