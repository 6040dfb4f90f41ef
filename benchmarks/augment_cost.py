"""What each augmentation costs per batch, next to one training step it feeds.

For every registered transform (the batched ones and the per-image policies), the median time to
transform a batch of CIFAR-shaped float images, and its ratio to a forward + backward + Adam step of
the `configs/cnn_cifar.yaml` net on the same batch. Not a test: run it on a quiet machine, e.g.
`python benchmarks/augment_cost.py --batch 256` (or `--device cuda`).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dlcli.components.models import MODELS  # noqa: E402
from dlcli.data.transforms import TRANSFORMS, compose  # noqa: E402

ENTRIES = {
    "horizontal_flip": {}, "random_crop": {"size": 32, "padding": 4}, "grayscale": {"p": 0.2},
    "normalize": {"preset": "cifar10"}, "color_jitter": {"brightness": 0.4, "contrast": 0.4},
    "rotation": {"degrees": 15}, "random_resized_crop": {"size": 32}, "rand_augment": {}, "trivial_augment": {},
    "auto_augment": {"policy": "cifar10"}, "aug_mix": {}, "random_erasing": {}, "gaussian_blur": {},
    "random_affine": {"degrees": 10, "translate": [0.1, 0.1]}, "random_perspective": {},
}


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(action, device, rounds: int) -> float:
    action()  # warm-up
    times = []
    for _ in range(rounds):
        sync(device)
        start = time.perf_counter()
        action()
        sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def step_ms(images, device, rounds: int) -> float:
    model = MODELS.build({"name": "cnn", "channels": [64, 128, 256], "convs_per_block": 2, "dropout": 0.1,
                          "global_pool": True}, (3, 32, 32), 10).to(device)
    optimizer = torch.optim.Adam(model.parameters())
    labels = torch.randint(0, 10, (len(images),), device=device)

    def step():
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return median_ms(step, device, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    images = torch.rand(args.batch, 3, 32, 32, device=device)
    step = step_ms(images, device, args.rounds)
    print(f"device {device}, batch {args.batch}x3x32x32, {torch.get_num_threads()} threads; "
          f"one cnn_cifar training step: {step:.1f} ms")
    print(f"{'transform':<20} {'ms/batch':>9} {'x step':>7}  runs")
    for name, params in ENTRIES.items():
        transform = compose([TRANSFORMS.validate({"name": name, **params}, "t")])
        cost = median_ms(lambda t=transform: t(images), device, args.rounds)
        how = "per image" if type(transform.transforms[0]).__name__ == "PerSample" else "batched"
        print(f"{name:<20} {cost:>9.2f} {cost / step:>7.3f}  {how}")


if __name__ == "__main__":
    main()
