"""The configs throughput.py trains: the same model, data and batch for dlcli and the hand-written loop."""

import random
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SEQ_LEN = 128


def airbench_layers() -> list:
    """The airbench94-style net: a 2x2 conv 3->24, three conv-maxpool-BN-GELU-conv-BN-GELU blocks
    (64/256/256), max-pool, linear."""
    layers: list = [{"conv2d": {"out_channels": 24, "kernel_size": 2}}, "gelu"]
    for width in (64, 256, 256):
        layers += [{"conv2d": {"out_channels": width, "kernel_size": 3, "padding": 1, "bias": False}},
                   {"maxpool2d": 2}, "batchnorm2d", "gelu",
                   {"conv2d": {"out_channels": width, "kernel_size": 3, "padding": 1, "bias": False}},
                   "batchnorm2d", "gelu"]
    return layers + [{"maxpool2d": 3}, "flatten", {"linear": {"out_features": 10, "bias": False}}]


def cifar_config_model() -> dict:
    return yaml.safe_load((REPO / "configs" / "cnn_cifar.yaml").read_text())["model"]


IMAGE_MODELS = {  # name -> (model spec, input shape, normalize preset)
    "mlp": (lambda: {"name": "mlp", "hidden": [1024, 1024]}, [1, 28, 28], "mnist"),
    "cnn": (lambda: {"name": "cnn", "channels": [32, 64], "batch_norm": True, "head": [128]}, [1, 28, 28], "mnist"),
    "airbench": (lambda: {"name": "sequential", "layers": airbench_layers()}, [3, 32, 32], "cifar10"),
    "cifar": (cifar_config_model, [3, 32, 32], "cifar10"),
    "resnet18": (lambda: {"name": "resnet18", "stem": "cifar"}, [3, 32, 32], "cifar10"),  # torchvision's
}


def train_section(device: str, precision: str, compile_: bool) -> dict:
    return {"epochs": 1, "device": device, "precision": precision, "log_interval": 10**9,
            "monitor": "train/loss", "compile": compile_}


def config(model: str, device: str, batch: int, samples: int, precision: str, compile_: bool = False) -> dict:
    train = train_section(device, precision, compile_)
    if model in ("lstm", "transformer"):
        return lstm_config(batch, samples, train, model)
    if model == "dcgan":
        return dcgan_config(batch, samples, train)
    spec, shape, preset = IMAGE_MODELS[model]
    return {
        "name": f"bench_{model}", "seed": 0,
        "data": {"dataset": {"name": "synthetic", "samples": samples, "shape": shape},
                 "val_split": 0, "batch_size": batch,
                 "train_transforms": [{"normalize": preset}], "eval_transforms": [{"normalize": preset}]},
        "model": spec(),
        "optimizer": {"name": "adam", "lr": 1e-3},
        "train": train,
    }


TRANSFORMER = {"name": "transformer", "d_model": 128, "n_heads": 4, "n_layers": 4, "dropout": 0.0,
               "tie_weights": True, "bias": False}  # configs/transformer_chars.yaml's sizes, no dropout


def lstm_config(batch: int, windows: int, train: dict, model: str = "lstm") -> dict:
    """A character LM (LSTM or transformer) over random text: `windows` windows of SEQ_LEN tokens."""
    text = Path(tempfile.mkdtemp()) / "corpus.txt"
    rng = random.Random(0)
    text.write_text("".join(rng.choice("abcdefghijklmnopqrstuvwxyz .,\n") for _ in range(windows * SEQ_LEN + 1)))
    return {
        "name": f"bench_{model}", "seed": 0, "task": "language_model",
        "data": {"dataset": {"name": "text", "path": str(text), "seq_len": SEQ_LEN}, "val_split": 0,
                 "batch_size": batch},
        "model": (TRANSFORMER if model == "transformer"
                  else {"name": "lstm", "embedding_dim": 128, "hidden_size": 256, "num_layers": 2}),
        "optimizer": {"name": "adam", "lr": 1e-3},
        "train": train,
    }


def dcgan_config(batch: int, samples: int, train: dict) -> dict:
    adam = {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999]}
    return {
        "name": "bench_dcgan", "seed": 0, "task": "gan",
        "data": {"dataset": {"name": "synthetic", "samples": samples, "shape": [1, 28, 28]}, "val_split": 0,
                 "batch_size": batch},
        "model": {"name": "gan", "latent_dim": 64, "generator": {"type": "dcgan", "channels": [128, 64]},
                  "discriminator": {"type": "dcgan", "channels": [128, 64]}},
        "optimizer": {"generator": adam, "discriminator": adam},
        "train": train,
    }
