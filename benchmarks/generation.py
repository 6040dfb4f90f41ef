"""Generation speed: tokens/s sampling 500 tokens from a transformer language model with the KV
cache (each new token costs one position) and without it (each token re-runs the window), side by
side on the same model, prompt and seed; checks both sample the same tokens. The model is
configs/transformer_chars.yaml's (4 layers, 4 heads, d_model 128) with random weights: speed does
not depend on what it learnt. Not a test: `python benchmarks/generation.py [--context 64,256]`.
"""

import argparse
import statistics
import time

import torch

from dlcli.components.models import MODELS
from dlcli.tasks.generation import _sample, sample_tokens

VOCAB = 65  # tiny-shakespeare's characters


def tokens_per_s(model, prompt, length: int, context: int, cache: bool, seed: int):
    generator = torch.Generator().manual_seed(seed)
    pick = lambda logits: _sample(logits, 0.8, 40, None, generator)
    start = time.perf_counter()
    with torch.inference_mode():
        out = sample_tokens(model, prompt, length, pick, context, cache)
    return length / (time.perf_counter() - start), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--context", default="64,256", help="context lengths (seq_len) to measure")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.length} tokens, batch 1")
    for context in map(int, args.context.split(",")):
        torch.manual_seed(0)
        spec = {"name": "transformer", "d_model": 128, "n_heads": 4, "n_layers": 4, "dropout": 0.0,
                "tie_weights": True, "bias": False}
        model = MODELS.build(spec, (context,), VOCAB, VOCAB, "per_step").eval()
        prompt = torch.randint(2, VOCAB, (1, 8), generator=torch.Generator().manual_seed(1))
        tokens_per_s(model, prompt, 20, context, True, 0)  # warm-up
        cached, uncached = [], []
        for round_ in range(args.rounds):  # interleaved so machine noise hits both alike
            rate_c, out_c = tokens_per_s(model, prompt, args.length, context, True, round_)
            rate_u, out_u = tokens_per_s(model, prompt, args.length, context, False, round_)
            cached.append(rate_c)
            uncached.append(rate_u)
            same = torch.equal(out_c, out_u)
        a, b = statistics.median(cached), statistics.median(uncached)
        print(f"context {context:4d}  no cache {b:8.0f} tokens/s  KV cache {a:8.0f} tokens/s  speed-up {a / b:.2f}x  "
              f"same tokens: {same}", flush=True)


if __name__ == "__main__":
    main()
