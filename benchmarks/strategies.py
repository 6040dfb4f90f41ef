"""What weight EMA, mixup and an augmentation policy do to test accuracy on digits (offline), against
the same config without them, over several seeds; and what each costs per training step.

Each variant trains `configs/cnn_digits.yaml`'s model on scikit-learn's 8x8 digits for the same
epochs with seeds 0..N-1; the test accuracy is `dlcli eval`'s on the fixed test split, the cost is the
run's training seconds per optimizer step. Not a test: `python benchmarks/strategies.py [--seeds 3]`.
"""

import argparse
import io
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dlcli.cli.progress import Progress  # noqa: E402
from dlcli.config import load  # noqa: E402
from dlcli.inference.evaluate import evaluate_checkpoint  # noqa: E402
from dlcli.training.session import train  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cnn_digits.yaml"
VARIANTS = {
    "baseline": [],
    "ema 0.99": ["train.ema.decay=0.99"],
    "mixup 0.2": ["data.mixup.alpha=0.2"],
    "trivial_augment": ["data.train_transforms=[{random_crop: {size: 8, padding: 1}}, {trivial_augment: {}}, "
                        "{normalize: digits}]"],
}


def run(overrides: list[str], seed: int, epochs: int, root: str) -> tuple[float, float]:
    config = load(str(CONFIG), [*overrides, f"seed={seed}", f"train.epochs={epochs}", "train.device=cpu",
                                "callbacks=[]"])
    summary = train(config, root, None, Progress(epochs, quiet=True, stream=io.StringIO()))
    test = evaluate_checkpoint(summary["checkpoints"]["last"], "test", [], "cpu")["metrics"]["acc"]
    return test, summary["seconds"] / summary["steps"] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"digits, {CONFIG.name}'s model, {args.epochs} epochs, seeds 0..{args.seeds - 1}, 1 thread")
    print(f"{'variant':<18} {'test acc (mean ± std)':>22} {'ms/step':>9}")
    with tempfile.TemporaryDirectory() as root:
        for name, overrides in VARIANTS.items():
            results = [run(overrides, seed, args.epochs, root) for seed in range(args.seeds)]
            accs, costs = [r[0] for r in results], [r[1] for r in results]
            spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
            print(f"{name:<18} {statistics.fmean(accs):>14.4f} ± {spread:.4f} {statistics.median(costs):>9.2f}")


if __name__ == "__main__":
    main()
