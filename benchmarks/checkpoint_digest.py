"""What the checkpoint digest costs: saving and loading a ~100 MB checkpoint with and without it.

The checkpoint is an MLP's weights (2 x 2048x2048 layers) with Adam's two moments, about 100 MB,
like a real `last.pt`. Rows, each the median of --runs interleaved repetitions:

  save              checkpoint.save: torch.save to a temp file, fsync, rename (+ the digest)
  load, eval path   checkpoint.load_for_inference (mmap; the training state not verified) + the
                    weights copied into the model, as eval/infer/export do
  load, resume path checkpoint.load(mmap=False) + weights and optimizer state loaded, as --resume does
  previous load     what checkpoint.load did before digests (torch.load into memory) + the weights

"without" loads a file written without a digest (which loads unverified, like files from before
the change). Files are read from the page cache (just written), which is the worst case for the
ratio: from a cold disk the reads take longer and the digest the same. Not a test: machines here are
shared and noisy.  Usage: python benchmarks/checkpoint_digest.py [--runs 7] [--dir DIR]
"""

import argparse
import hashlib
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import xxhash


def make_payload(width: int = 2048, layers: int = 2):
    import torch

    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, width)).square().mean().backward()
    optimizer.step()  # fills exp_avg and exp_avg_sq
    payload = {"config": {"name": "bench", "model": {"name": "mlp", "hidden": [width] * layers}},
               "meta": {"class_names": [], "input_shape": [width], "kind": "tabular"},
               "model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": {"epoch": 1, "step": 1}}
    return payload, model, optimizer


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    import torch

    from dlcli.training import checkpoint, digest

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--dir", default=None, help="where to write the files (default: a temp folder)")
    args = parser.parse_args()
    payload, model, optimizer = make_payload()
    size = sum(t.numel() * t.element_size() for t in payload["model"].values())
    size += sum(t.numel() * t.element_size() for s in payload["optimizer"]["state"].values() for t in s.values())

    def eval_load(path):
        model.load_state_dict(checkpoint.load_for_inference(path)[0]["model"])

    def resume_load(path):
        loaded = checkpoint.load(path, mmap=False)
        model.load_state_dict(loaded["model"])
        optimizer.load_state_dict(loaded["optimizer"])

    def previous_load(path):
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        plain, verified = Path(folder) / "plain.pt", Path(folder) / "verified.pt"
        rows = {
            "save": (lambda: checkpoint.save(payload, plain, with_digest=False),
                     lambda: checkpoint.save(payload, verified)),
            "load, eval path": (lambda: eval_load(plain), lambda: eval_load(verified)),
            "load, resume path": (lambda: resume_load(plain), lambda: resume_load(verified)),
            "previous load -> eval path": (lambda: previous_load(plain), lambda: eval_load(verified)),
        }
        times: dict = {label: ([], []) for label in rows}
        for without, with_digest in rows.values():  # warm-up: writes both files, fills caches
            without(), with_digest()
        for _ in range(args.runs):
            for label, (without, with_digest) in rows.items():
                times[label][0].append(timed(without))
                times[label][1].append(timed(with_digest))
        hashing = sorted(timed(lambda: digest.compute(payload)) for _ in range(args.runs))
    print(f"checkpoint: {size / 1e6:.0f} MB of tensors; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'':28s} {'without':>10s} {'with digest':>12s} {'ratio':>7s}")
    for label, (without, with_digest) in times.items():
        a, b = statistics.median(without), statistics.median(with_digest)
        print(f"{label:28s} {a * 1000:8.1f} ms {b * 1000:9.1f} ms {b / a:7.2f}")
    median = statistics.median(hashing)
    print(f"the digest alone: {median * 1000:.1f} ms, {size / median / 1e9:.2f} GB/s ({digest.ALGORITHM})")
    data = payload["model"]["0.weight"].numpy().tobytes()  # why XXH3: the hashes on one thread, 16 MB
    hashes = {"xxh3_128": lambda: xxhash.xxh3_128(data).digest(), "crc32": lambda: zlib.crc32(data),
              "sha256": lambda: hashlib.sha256(data).digest(), "blake2b": lambda: hashlib.blake2b(data).digest()}
    for name, run in hashes.items():
        seconds = statistics.median(timed(run) for _ in range(args.runs))
        print(f"{name}: {len(data) / seconds / 1e9:.2f} GB/s on one thread")


if __name__ == "__main__":
    main()
