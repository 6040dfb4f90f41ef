"""Image folders: dlcli's image cache against the loader pytorch/examples' imagenet/main.py builds.

Generates N JPEGs of varied sizes around 256x256 in 10 class folders (noise plus shapes, so decoding
costs what it costs on photos), then measures, with the same augmentation (random-resized-crop to
`--crop`, horizontal flip, normalize):
  (a) torchvision ImageFolder + DataLoader (num_workers = cores, pinned memory on CUDA), loader only;
  (b) dlcli with data.cache: auto: the first pass (decode + write the cache, then one epoch from it)
      and the epochs after it, loader only;
  (c) training images/s of one model (resnet18 by default) fed by (a), by (b), and by one in-memory
      batch reused (the model alone), with the same hand-written step, interleaved.
Ratios are printed against (a) and against the model alone. Not a test: run it on a quiet machine,
e.g. `python benchmarks/image_folder.py` (CPU) or `--device cuda --images 20000`.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dlcli.components.models import MODELS  # noqa: E402
from dlcli.config import validate  # noqa: E402
from dlcli.data.pipeline import train_batches  # noqa: E402
from dlcli.tasks import task_class  # noqa: E402

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def make_folder(root: Path, images: int) -> None:
    """`images` JPEGs (quality 90) in 10 class folders, sides 224 to 288 pixels, noise plus shapes."""
    from PIL import Image, ImageDraw

    if root.is_dir() and sum(1 for _ in root.rglob("*.jpg")) == images:
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    for i in range(images):
        folder = root / f"class_{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        height, width = (int(v) for v in rng.integers(224, 289, 2))
        base = rng.integers(0, 256, 3)
        pixels = np.clip(base + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
            box = [x0, y0, x0 + int(rng.integers(10, 120)), y0 + int(rng.integers(10, 120))]
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        image.save(folder / f"{i:06d}.jpg", quality=90)


def reference_loader(root: Path, crop: int, batch: int, workers: int, device):
    """What imagenet/main.py builds for training (its transforms, DataLoader arguments)."""
    import torchvision.datasets as datasets
    import torchvision.transforms as transforms

    dataset = datasets.ImageFolder(str(root), transforms.Compose([
        transforms.RandomResizedCrop(crop), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize(MEAN, STD)]))
    return torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                       pin_memory=device.type == "cuda", persistent_workers=True)


def dlcli_batches(root: Path, crop: int, batch: int, device, cache: Path, budget: float):
    normalize = {"normalize": "imagenet"}
    config = validate({
        "name": "bench", "seed": 0,
        "data": {"dataset": {"name": "image_folder", "root": str(root)}, "val_split": 0.0, "batch_size": batch,
                 "cache": str(cache), "memory_budget_gb": budget,
                 "train_transforms": [{"random_resized_crop": {"size": crop}}, "horizontal_flip", normalize],
                 "eval_transforms": [{"resize": round(crop * 256 / 224)}, {"center_crop": crop}, normalize]},
        "model": {"name": "cnn"}, "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 1, "device": str(device), "monitor": "train/loss"}})
    batches, _, _ = train_batches(config, device, torch.Generator().manual_seed(0), task_class(config.task))
    return batches


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def epoch_rate(batches, device, steps: int | None = None, step=None) -> float:
    """Images/s over one pass (or `steps` batches), x and y moved to `device`, `step` run on each."""
    count, started = 0, time.perf_counter()
    for index, item in enumerate(batches):
        x, y = (item.x, item.y) if hasattr(item, "x") else item
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if step is not None:
            step(x, y)
        count += len(x)
        if steps is not None and index + 1 == steps:
            break
    sync(device)
    return count / (time.perf_counter() - started)


def training_step(model_name: str, crop: int, device):
    model = MODELS.build({"name": model_name}, (3, crop, crop), 10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(x, y):
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--train-steps", type=int, default=10, help="batches per training measurement")
    parser.add_argument("--epochs", type=int, default=2, help="loader-only epochs after the first, per loader")
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "dlcli_bench_images"))
    parser.add_argument("--budget-gb", type=float, default=4.0, help="data.memory_budget_gb (under it: device path)")
    args = parser.parse_args()
    device, cores = torch.device(args.device), len(os.sched_getaffinity(0))
    root = Path(args.data)
    make_folder(root, args.images)
    cache = Path(tempfile.mkdtemp(prefix="dlcli_bench_cache_"))
    print(f"{args.images} JPEGs in {root}; crop {args.crop}, batch {args.batch}, device {device}, {cores} cores, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")

    reference = reference_loader(root, args.crop, args.batch, cores, device)
    import torchvision.transforms.v2.functional  # noqa: F401  (imports are not data work: paid before both clocks)
    started = time.perf_counter()
    epoch_rate(reference, device)
    first_a_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ours = dlcli_batches(root, args.crop, args.batch, device, cache, args.budget_gb)
    epoch_rate(ours, device)
    first_b_seconds = time.perf_counter() - started
    print(f"first epoch: (a) {first_a_seconds:.1f} s (workers start, decode); (b) {first_b_seconds:.1f} s "
          f"(decode + write the cache, then one epoch from it): {first_b_seconds / first_a_seconds:.2f}x (a)")

    rates: dict[str, list[float]] = {"a": [], "b": []}
    for _ in range(args.epochs):  # interleaved, so load that comes and goes hits both
        rates["a"].append(epoch_rate(reference, device))
        rates["b"].append(epoch_rate(ours, device))
    a, b = (float(np.median(r)) for r in (rates["a"], rates["b"]))
    print(f"loader only, epochs after the first: (a) {a:,.0f} images/s, (b) {b:,.0f} images/s: {b / a:.2f}x (a)  "
          f"[{type(ours).__name__}]")

    step = training_step(args.model, args.crop, device)
    fixed = (torch.randn(args.batch, 3, args.crop, args.crop, device=device),
             torch.randint(0, 10, (args.batch,), device=device))
    alone = [fixed] * args.train_steps
    epoch_rate(alone[:2], device, step=step)  # warm-up
    train = {"a": [], "b": [], "alone": []}
    for _ in range(2):
        train["alone"].append(epoch_rate(alone, device, step=step))
        train["a"].append(epoch_rate(reference, device, args.train_steps, step))
        train["b"].append(epoch_rate(ours, device, args.train_steps, step))
    t = {key: float(np.median(v)) for key, v in train.items()}
    print(f"training {args.model}, {args.train_steps} batches: model alone {t['alone']:,.1f} images/s; "
          f"(a) {t['a']:,.1f} ({t['a'] / t['alone']:.3f}x alone); (b) {t['b']:,.1f} ({t['b'] / t['alone']:.3f}x alone)")
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
