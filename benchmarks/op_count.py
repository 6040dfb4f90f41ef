"""Operators dispatched per training step: dlcli's engine against the hand-written loop of
throughput.py, same model and data, on CPU. On a GPU each of these is (at most) one kernel launch,
and small models there are launch-bound, so this deterministic count shows per-step overhead that
noisy timings hide. Prints ops/step for both and the operators only dlcli runs.
Usage: python benchmarks/op_count.py [--models mlp,cnn,airbench] [--batch 128] [--steps 32]
"""

import argparse
import collections
import io

import throughput
import torch
from bench_configs import config
from torch.utils._python_dispatch import TorchDispatchMode

from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.training.build import build_trainer

VIEWS = {"detach", "lift_fresh"}  # launch no kernel, like every view op (func.is_view)


class Counter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not func.is_view and name not in VIEWS:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def count(model_name: str, args) -> None:
    cfg = validate(config(model_name, "cpu", args.batch, args.batch * args.steps, "fp32"))
    trainer, _ = build_trainer(cfg)
    reference, _ = build_trainer(cfg)
    args.compile = False
    hand = throughput.hand_written(model_name, reference.model, reference.train_batches.x,
                                   reference.train_batches.y, args, torch.device("cpu"), None)
    epoch = lambda: trainer.train_epoch(Progress(1, quiet=True, stream=io.StringIO()))  # noqa: E731
    epoch(), hand()  # warm-up: lazy state (optimizer moments) is created in the first steps
    with Counter() as ours:
        epoch()
    with Counter() as theirs:
        hand()
    per = lambda c: sum(c.values()) / args.steps  # noqa: E731
    extra = {k: round(v / args.steps, 2) for k, v in (ours.ops - theirs.ops).most_common(8)}
    print(f"{model_name:8s} ops/step: hand-written {per(theirs.ops):6.1f}  dlcli {per(ours.ops):6.1f}  "
          f"only in dlcli: {extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="mlp,cnn,airbench")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=32, help="steps per epoch (per-epoch work is spread over them)")
    args = parser.parse_args()
    for name in args.models.split(","):
        count(name, args)


if __name__ == "__main__":
    main()
