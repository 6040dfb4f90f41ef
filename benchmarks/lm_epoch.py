"""One epoch of configs/lstm_text.yaml on a generated 1 MB text: steps per epoch, seconds, tokens/s
and validation perplexity, as `dlcli train` reports them.

Run: python benchmarks/lm_epoch.py [--epochs 1] [--threads 1] [key=value ...]
Extra arguments are config overrides, e.g. `data.batch_size=4 data.dataset.seq_len=32` for the
config's earlier shape. The text: sentences of made-up words (syllables from a fixed list, word
frequencies following Zipf's law), seeded, so every run reads the same 1,000,000 characters."""

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SYLLABLES = ("th e an re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve co me de hi ri "
             "ro ic ne ea ra ce").split()


def generated_text(size: int = 1_000_000, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.choice([1, 1, 2, 2, 2, 3, 3, 4]))) for _ in range(3000)]
    weights = [1 / (i + 1) for i in range(len(words))]
    parts, length = [], 0
    while length < size:
        sentence = " ".join(rng.choices(words, weights, k=rng.randint(5, 18))).capitalize()
        sentence += rng.choice([".", ".", ",", "?", "!"]) + ("\n" if rng.random() < 0.15 else " ")
        parts.append(sentence)
        length += len(sentence)
    return "".join(parts)[:size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args, overrides = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "text.txt"
        text.write_text(generated_text())
        command = [sys.executable, "-m", "dlcli", "train", str(REPO / "configs" / "lstm_text.yaml"), "--json",
                   "--output-dir", str(Path(tmp) / "runs"), f"data.dataset.path={text}",
                   f"train.epochs={args.epochs}", f"train.threads={args.threads}", *overrides]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        if done.returncode:
            sys.exit(done.stderr)
        summary = json.loads(done.stdout)
        epochs = [line for line in done.stderr.splitlines() if line.startswith("epoch") and "train/loss" in line]
        print(f"overrides: {' '.join(overrides) or '(none)'}; threads {args.threads}")
        print(f"steps per epoch: {summary['steps'] // summary['epochs']}; {summary['seconds']:.1f} s in all")
        print("\n".join(epochs))
        print(f"val perplexity: {summary['final']['val/perplexity']:.4g}")


if __name__ == "__main__":
    main()
