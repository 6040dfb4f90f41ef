"""Peak memory (max RSS) of `dlcli train configs/quickstart.yaml` against a hand-written PyTorch
script doing the same work (load the digits, split, train the same MLP with Adam and warmup+cosine,
evaluate each epoch, save the best weights), each in a fresh process. Prints both and the ratio;
the target is dlcli <= 1.2x. Not a test: `python benchmarks/memory.py [--runs 3]`."""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

HAND_WRITTEN = r'''
import math, sys
import torch
from torch import nn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

torch.manual_seed(0)
torch.set_num_threads(int(sys.argv[2]))
digits = load_digits()
x = torch.tensor(digits.images / 16.0, dtype=torch.float32).flatten(1)
y = torch.tensor(digits.target)
train, val = train_test_split(range(len(y)), test_size=0.15, random_state=0, stratify=digits.target)
xt, yt, xv, yv = x[train], y[train], x[val], y[val]
mean, std = xt.mean(), xt.std()
xt, xv = (xt - mean) / std, (xv - mean) / std
model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 64), nn.ReLU(),
                      nn.Dropout(0.1), nn.Linear(64, 10))
opt = torch.optim.Adam(model.parameters(), lr=0.003)
epochs, batch = 15, 64
steps = epochs * math.ceil(len(yt) / batch)
warm = math.ceil(len(yt) / batch)
sched = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (steps - warm))))
best = 0.0
for epoch in range(epochs):
    model.train()
    for i in torch.randperm(len(yt)).split(batch):
        loss = nn.functional.cross_entropy(model(xt[i]), yt[i])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
    model.eval()
    with torch.inference_mode():
        acc = (model(xv).argmax(1) == yv).float().mean().item()
    print(f"epoch {epoch + 1} val/acc {acc:.4f}")
    if acc > best:
        best = acc
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, sys.argv[1] + "/best.pt")
'''


def peak_rss_mb(cmd: list[str], env: dict) -> float:
    """Max resident set size of the process tree's main process, from wait4's rusage."""
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}")
    return usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    ours, theirs = [], []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as out:
            ours.append(peak_rss_mb([sys.executable, "-m", "dlcli", "train", str(REPO / "configs" / "quickstart.yaml"),
                                     "--output-dir", out, "-q"], env))
            theirs.append(peak_rss_mb([sys.executable, "-c", HAND_WRITTEN, out, str(args.threads)], env))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"quickstart peak RSS: hand-written {b:.0f} MiB  dlcli {a:.0f} MiB  ratio {a / b:.2f}  "
          f"(median of {args.runs}; runs: dlcli {[round(v) for v in ours]}, hand-written {[round(v) for v in theirs]})")


if __name__ == "__main__":
    main()
