"""Quality: dlcli's transformer against a hand-written nanoGPT (the GPT class and training loop of
karpathy/nanoGPT, written out below) on the same character corpus, with the model sizes of
configs/transformer_chars.yaml, the same batch, optimizer, learning rate, clipping and number of
steps; prints both validation losses (nats per character, over the same non-overlapping validation
windows) and their difference. With --lstm, also an
LSTM (configs/lstm_text.yaml's model, truncated BPTT) and the transformer compared at the same wall time.

The corpus is Python's own reference text (pydoc_data.topics, ~465 KB of English prose and code,
shipped with every Python), so it runs offline. The split is dlcli's: the first 90% of the characters
train, the rest validate, in windows of 64. nanoGPT samples random 64-character windows each step;
dlcli walks the shipped config's overlapping windows (stride 8) in shuffled order: the same number of
tokens. Not a test: `python benchmarks/transformer_quality.py [--chars 120000 --epochs 1 --lstm]`.
"""

import argparse
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.training.session import train

REPO = Path(__file__).resolve().parents[1]
SEQ_LEN, BATCH, LR, VAL = 64, 16, 1e-3, 0.1


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.c_attn, self.c_proj = heads, nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2) for z in self.c_attn(x).split(c, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(d, bias=False), Attention(d, heads), nn.LayerNorm(d, bias=False)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d, bias=False), nn.GELU(), nn.Linear(4 * d, d, bias=False))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT's model: learned positions, pre-LN, tied embedding, GPT-2 init, no biases, no dropout."""

    def __init__(self, vocab, d=128, heads=4, layers=4, context=SEQ_LEN):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(context, d)
        self.h = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f, self.lm_head = nn.LayerNorm(d, bias=False), nn.Linear(d, vocab, bias=False)
        self.wte.weight = self.lm_head.weight
        for name, p in self.named_parameters():
            if p.ndim == 2:
                residual = name.endswith(("c_proj.weight", "mlp.2.weight"))
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers) if residual else 0.02)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def hand_written(text: str, steps: int, seed: int) -> float:
    """nanoGPT's loop: random windows, AdamW (decay on matrices), clipping; the validation loss over
    dlcli's validation windows."""
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text])
    cut = len(data) - round(len(data) * VAL)
    train_data, val_data = data[:cut], data[cut:]
    torch.manual_seed(seed)
    model = GPT(len(chars))
    params = [p for p in model.parameters()]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.99))
    model.train()
    for _ in range(steps):
        ix = torch.randint(len(train_data) - SEQ_LEN, (BATCH,))
        x = torch.stack([train_data[i:i + SEQ_LEN] for i in ix])
        y = torch.stack([train_data[i + 1:i + 1 + SEQ_LEN] for i in ix])
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return val_loss(model, val_data)


def val_loss(model, ids) -> float:
    """Mean cross-entropy over the non-overlapping 64-token windows of `ids` (next-token targets)."""
    model.eval()
    x, y = ids[:-1].unfold(0, SEQ_LEN, SEQ_LEN), ids[1:].unfold(0, SEQ_LEN, SEQ_LEN)
    with torch.no_grad():
        return float(F.cross_entropy(model(x).flatten(0, 1), y.flatten()))


def dlcli_val_loss(summary: dict, text: str) -> float:
    """The dlcli model's loss on the windows hand_written scores, encoded with its own vocabulary."""
    from dlcli.training import checkpoint
    from dlcli.training.build import from_checkpoint

    _, meta, model, _, _ = from_checkpoint(checkpoint.load(summary["checkpoints"]["last"]), [], "cpu")
    index = {t: i for i, t in enumerate(meta.vocab)}
    val = text[len(text) - round(len(text) * VAL):]
    return val_loss(model, torch.tensor([index.get(c, 1) for c in val]))


def dlcli_run(path: Path, epochs: int, out: Path, seed: int, model: str = "transformer") -> dict:
    shipped = "transformer_chars.yaml" if model == "transformer" else "lstm_text.yaml"
    config = yaml.safe_load((REPO / "configs" / shipped).read_text())
    config["model"] |= {"dropout": 0.0}
    config.update(seed=seed, scheduler=None, callbacks=[])
    stride = config["data"]["dataset"].get("stride", SEQ_LEN) if model == "transformer" else SEQ_LEN
    config["data"] = {"dataset": {"name": "text", "path": str(path), "level": "char", "seq_len": SEQ_LEN,
                                  "stride": stride}, "val_split": VAL, "batch_size": BATCH}
    config["optimizer"] = {"name": "adamw", "lr": LR if model == "transformer" else 3e-3, "betas": [0.9, 0.99],
                           "weight_decay": 0.1}
    config["train"] = {**config["train"], "epochs": epochs, "device": "cpu", "log_interval": 10**9,
                       "grad_clip": {"max_norm": 1.0}, "monitor": "val/loss"}
    cfg = validate(config)
    summary = train(cfg, str(out), None, Progress(epochs, quiet=True, stream=io.StringIO()))
    curve = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    epochs_ = [r for r in curve if r.get("event") == "epoch"]  # each record's seconds: that epoch's
    summary["curve"] = [(sum(r["seconds"] for r in epochs_[:i + 1]), r["val/loss"]) for i, r in enumerate(epochs_)]
    return summary


def at_time(curve, seconds: float) -> float:
    """The validation loss of the last epoch finished by `seconds`."""
    reached = [loss for t, loss in curve if t <= seconds + 1e-9]
    return reached[-1] if reached else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chars", type=int, default=120_000, help="the corpus's first N characters")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--lstm", action="store_true", help="also an LSTM at the same wall time")
    args = parser.parse_args()
    from pydoc_data.topics import topics

    text = "\n".join(topics[key] for key in sorted(topics))[:args.chars]
    folder = Path(tempfile.mkdtemp())
    path = folder / "corpus.txt"
    path.write_text(text)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; corpus {len(text)} characters", flush=True)
    for seed in map(int, args.seeds.split(",")):
        start = time.perf_counter()
        ours = dlcli_run(path, args.epochs, folder / "runs", seed)
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        theirs = hand_written(text, ours["steps"], seed)
        theirs_s = time.perf_counter() - start
        loss = dlcli_val_loss(ours, text)
        print(f"seed {seed}: {ours['steps']} steps  dlcli val loss {loss:.4f} ({ours_s:.0f} s)  "
              f"hand-written nanoGPT {theirs:.4f} ({theirs_s:.0f} s)  difference {loss - theirs:+.4f} nats", flush=True)
    if args.lstm:
        lstm = dlcli_run(path, args.epochs * 8, folder / "runs", 0, "lstm")
        spent = ours["curve"][-1][0]  # the transformer's training time (epochs with their validation)
        print(f"same wall time ({spent:.0f} s, the transformer's): transformer val loss {ours['curve'][-1][1]:.4f}"
              f"  lstm val loss {at_time(lstm['curve'], spent):.4f} (its last epoch finished by then)")
        print("transformer curve (s, val loss):", [(round(t), round(v, 3)) for t, v in ours["curve"]])
        print("lstm curve (s, val loss):", [(round(t), round(v, 3)) for t, v in lstm["curve"]])


if __name__ == "__main__":
    sys.exit(main())
