"""Start-up time of `dlcli --help` and `dlcli validate` (the paths that must not import torch).

Runs each command several times in fresh processes and prints the median and range of the wall
time. Not a test: machines here are shared and noisy.  Usage: python benchmarks/startup.py [--runs 9]
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "dlcli --help": ["--help"],
    "dlcli validate configs/cnn_cifar.yaml": ["validate", str(REPO / "configs" / "cnn_cifar.yaml")],
    "python -c pass (interpreter floor)": None,
}


def timed(args: list[str] | None) -> float:
    command = [sys.executable, "-c", "pass"] if args is None else [sys.executable, "-m", "dlcli", *args]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    runs = parser.parse_args().runs
    for label, args in COMMANDS.items():
        timed(args)  # warm the file cache
        times = sorted(timed(args) for _ in range(runs))
        print(f"{label:42s} median {statistics.median(times):.3f} s  (min {times[0]:.3f}, max {times[-1]:.3f})")


if __name__ == "__main__":
    main()
