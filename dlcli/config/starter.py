"""`dlcli init --model cnn --dataset cifar10 > my.yaml`: a commented starting config that validates."""

from dlcli.errors import ConfigError
from dlcli.registry import did_you_mean

DATASET_LINES = {
    "digits": "{name: digits}                      # scikit-learn's bundled 8x8 digits, offline",
    "mnist": "{name: mnist, root: data/, download: true}",
    "fashion_mnist": "{name: fashion_mnist, root: data/, download: true}",
    "cifar10": "{name: cifar10, root: data/, download: true}",
    "cifar100": "{name: cifar100, root: data/, download: true}",
    "image_folder": "{name: image_folder, root: data/train, test_root: data/test}   # root/<class>/<image>",
    "csv": "{name: csv, path: data/train.csv, label: label}   # feature columns + a label column",
}
MODEL_LINES = {
    "mlp": "{name: mlp, hidden: [256, 128], activation: relu, dropout: 0.1}",
    "cnn": "{name: cnn, channels: [32, 64], batch_norm: true, dropout: 0.1, head: [128]}",
    "sequential": ("\n  name: sequential\n  layers:                              # input sizes are inferred\n"
                   "    - conv2d: {out_channels: 32, kernel_size: 3}\n    - relu\n    - maxpool2d: 2\n"
                   "    - flatten\n    - linear: 128\n    - relu\n    - linear: num_classes"),
}
AUGMENT = {"cifar10": "{random_crop: {size: 32, padding: 4}}, horizontal_flip, ",
           "cifar100": "{random_crop: {size: 32, padding: 4}}, horizontal_flip, "}


def _transforms(dataset: str, augment: bool) -> str:
    if dataset == "csv":
        return "[]"
    steps = "{resize: [64, 64]}, " if dataset == "image_folder" else ""
    preset = dataset if dataset != "image_folder" else "imagenet"
    return f"[{steps}{AUGMENT.get(dataset, '') if augment else ''}{{normalize: {preset}}}]"


def starting_config(model: str, dataset: str) -> str:
    for value, choices, option in ((model, MODEL_LINES, "--model"), (dataset, DATASET_LINES, "--dataset")):
        if value not in choices:
            raise ConfigError(f"{option}: unknown {value!r}{did_you_mean(value, choices)}; "
                              f"available: {', '.join(choices)}")
    if dataset == "csv" and model != "mlp":
        raise ConfigError("--model: tabular (csv) data takes the mlp model")
    name = f"{model}_{dataset}"
    return f"""# {name}: written by `dlcli init`. Run: dlcli train {name}.yaml
# Check it with `dlcli validate {name}.yaml`; every key and default: `dlcli list`, the README.
name: {name}
seed: 0
task: classification
data:
  dataset: {DATASET_LINES[dataset]}
  val_split: 0.1                          # held out for validation (stratified)
  batch_size: 128
  train_transforms: {_transforms(dataset, augment=True)}
  eval_transforms: {_transforms(dataset, augment=False)}
model: {MODEL_LINES[model]}
loss: {{name: cross_entropy, label_smoothing: 0.0}}
optimizer: {{name: adamw, lr: 0.001, weight_decay: 0.01}}
scheduler: {{name: cosine, warmup_epochs: 1}}
train:
  epochs: 20
  device: auto                            # cuda when present, else cpu
  precision: auto                         # bf16 on CUDA, fp32 on CPU
  grad_clip: {{max_norm: 1.0}}
  monitor: val/acc                        # decides checkpoints/best.pt
  checkpoint_every: {{minutes: 15}}         # resumable with --resume
callbacks:
  - {{name: early_stopping, patience: 5}}
"""
