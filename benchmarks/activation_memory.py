"""Peak memory of a training step with and without activation checkpointing.

Each measurement runs in a fresh process: the bytes autograd keeps for backward after one forward
(counted by saved-tensor hooks: exact, what checkpointing drops), and the step's peak (RSS growth on
CPU, where the allocator keeps freed memory and the figure says little; max_memory_allocated on CUDA):
forward + backward of a deep `cnn` (the default `--blocks 6` blocks of 2 convs at 64 channels, no
pooling until the end) on a batch of CIFAR-shaped images, plain and with the layers recomputed in
backward. Not a test: `python benchmarks/activation_memory.py [--batch 128] [--device cuda]`.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(checkpointing: bool, batch: int, blocks: int, device: str) -> dict:
    import resource
    import time

    import torch

    sys.path.insert(0, str(REPO))
    from dlcli.components.models import MODELS
    from dlcli.components.models.checkpointing import checkpointed

    spec = {"name": "cnn", "channels": [64] * blocks, "convs_per_block": 2, "pooling": "none", "global_pool": True}
    model = MODELS.build(spec, (3, 32, 32), 10)
    model = (checkpointed(model) if checkpointing else model).to(device)
    x, y = torch.rand(batch, 3, 32, 32, device=device), torch.randint(0, 10, (batch,), device=device)
    saved = [0]

    def pack(tensor):  # what autograd keeps for backward: the activations checkpointing drops
        saved[0] += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x)
    before = (torch.cuda.memory_allocated() / 2**20 if device.startswith("cuda")
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    start = time.perf_counter()
    for _ in range(3):
        torch.nn.functional.cross_entropy(model(x), y).backward()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"saved_mib": saved[0] / 2**20, "peak_mib": peak, "step_mib": peak - before,
            "seconds_per_step": (time.perf_counter() - start) / 3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", choices=["plain", "checkpointed"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child == "checkpointed", args.batch, args.blocks, args.device)))
        return
    results = {}
    for kind in ("plain", "checkpointed"):
        out = subprocess.run([sys.executable, __file__, "--child", kind, "--batch", str(args.batch),
                              "--blocks", str(args.blocks), "--device", args.device],
                             capture_output=True, text=True, check=True).stdout
        results[kind] = json.loads(out)
    plain, saved = results["plain"], results["checkpointed"]
    print(f"device {args.device}, batch {args.batch}, {args.blocks} blocks x 2 convs (64 ch, 32x32)")
    for kind, r in results.items():
        print(f"{kind:<13} kept for backward {r['saved_mib']:7.0f} MiB; process peak {r['peak_mib']:6.0f} MiB, "
              f"of which the step {r['step_mib']:6.0f} MiB; {r['seconds_per_step'] * 1000:7.0f} ms/step")
    print(f"checkpointed / plain: kept for backward {saved['saved_mib'] / plain['saved_mib']:.2f}, "
          f"the step's peak {saved['step_mib'] / plain['step_mib']:.2f}, "
          f"time per step {saved['seconds_per_step'] / plain['seconds_per_step']:.2f}")


if __name__ == "__main__":
    main()
