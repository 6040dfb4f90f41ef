"""Start-up time of `dlcli --help` and `dlcli validate` (the paths that must not import torch).

Runs each command several times in fresh processes and prints the median and range of the wall
time, next to two floors: the bare interpreter, and the least any pydantic-validated command can
cost (import pydantic, build one model, validate one value). Not a test: machines here are shared
and noisy.  Usage: python benchmarks/startup.py [--runs 9]
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
    "pydantic floor (one model validated)": "pydantic",
}
# What `validate` cannot go below: pydantic (which checks the config) imported and one model built.
PYDANTIC_FLOOR = ("import os; os.environ['PYDANTIC_DISABLE_PLUGINS'] = '__all__'\n"
                  "from pydantic import BaseModel\n"
                  "class M(BaseModel):\n    x: int\n"
                  "M(x=1)")


def timed(args: list[str] | str | None) -> float:
    if args is None:
        command = [sys.executable, "-c", "pass"]
    elif args == "pydantic":
        command = [sys.executable, "-c", PYDANTIC_FLOOR]
    else:
        command = [sys.executable, "-m", "dlcli", *args]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    runs = parser.parse_args().runs
    # An installed package has its bytecode compiled by pip; compile this checkout's too, or every run
    # recompiles changed modules where PYTHONDONTWRITEBYTECODE is set.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "dlcli")], check=True)
    for label, args in COMMANDS.items():
        timed(args)  # warm the file cache
        times = sorted(timed(args) for _ in range(runs))
        print(f"{label:42s} median {statistics.median(times):.3f} s  (min {times[0]:.3f}, max {times[-1]:.3f})")


if __name__ == "__main__":
    main()
