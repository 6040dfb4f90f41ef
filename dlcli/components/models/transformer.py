"""A GPT-style Transformer (pre-LayerNorm blocks, attention through F.scaled_dot_product_attention):
causal with a per-step head for language modelling, an encoder with a padding mask and a pooled head
for classification and forecasting. Token ids enter through an embedding, feature vectors (time
steps, image rows) through a linear projection. The context length is the input's length (seq_len,
max_len or window). Generation passes a KV cache as `state`, so each new token costs one position."""

import math
from typing import Annotated, Literal

from pydantic import Field

from dlcli.components.models.registry import MODELS
from dlcli.types import Fraction, PositiveInt

HeadCount = Annotated[int, Field(gt=0, le=256)]


def _transformer_net():
    """The nn.Module classes, defined on first use so importing this file needs no torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.checkpoint import checkpoint

    def rotate(x, cos, sin):
        """Rotary position embedding on [B, heads, T, head_dim] (pairs of halves rotated by position)."""
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)

    class Block(nn.Module):
        def __init__(self, d_model, n_heads, ff_mult, dropout, bias):
            super().__init__()
            self.n_heads, self.dropout = n_heads, dropout
            self.ln1, self.ln2 = nn.LayerNorm(d_model, bias=bias), nn.LayerNorm(d_model, bias=bias)
            self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
            self.proj = nn.Linear(d_model, d_model, bias=bias)  # residual projections: GPT-2 scales their init
            self.ff = nn.Sequential(nn.Linear(d_model, ff_mult * d_model, bias=bias), nn.GELU(),
                                    nn.Linear(ff_mult * d_model, d_model, bias=bias))
            self.drop = nn.Dropout(dropout)

        def forward(self, x, mask, causal: bool, rope, cache, past: int):
            batch, steps, width = x.shape
            q, k, v = (t.view(batch, steps, self.n_heads, -1).transpose(1, 2)
                       for t in self.qkv(self.ln1(x)).split(width, dim=2))
            if rope is not None:
                q, k = rotate(q, *rope), rotate(k, *rope)
            if cache is not None:  # write this call's keys and values after the cached ones, attend to all
                cache[0][:, :, past:past + steps], cache[1][:, :, past:past + steps] = k, v
                k, v = cache[0][:, :, :past + steps], cache[1][:, :, :past + steps]
            if causal and past and steps > 1:  # new queries see the past and their own prefix
                mask = torch.ones(steps, past + steps, dtype=torch.bool, device=x.device).tril(past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               dropout_p=self.dropout if self.training else 0.0,
                                               # traced (export), steps is a tensor: the window is full
                                               is_causal=causal and mask is None and (torch.jit.is_tracing()
                                                                                      or steps > 1))
            x = x + self.drop(self.proj(y.transpose(1, 2).reshape(batch, steps, width)))
            return x + self.drop(self.ff(self.ln2(x)))

    class TransformerNet(nn.Module):
        exports_lengths = True  # `dlcli export` of a text classifier passes (ids, lengths): a padding mask
        checkpoint_blocks = False  # train.activation_checkpointing (components/models/checkpointing.py)

        def __init__(self, input_size, vocab_size, num_outputs, head, context, d_model, n_heads, n_layers,
                     ff_mult, dropout, positions, tie_weights, bias, pooling):
            super().__init__()
            self.head, self.pooling, self.positions, self.n_heads = head, pooling, positions, n_heads
            self.causal = head == "per_step"
            self.context = context  # the longest input it reads (a prepended CLS token takes one more place)
            places = context + (pooling == "cls")
            self.embed = (nn.Embedding(vocab_size, d_model) if vocab_size else nn.Linear(input_size, d_model))
            self.cls = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "cls" and not self.causal else None
            if positions == "learned":
                self.pos = nn.Embedding(places, d_model)
            elif positions == "sinusoidal":
                self.register_buffer("sinusoid", _sinusoid(places, d_model), persistent=False)
            else:
                half = d_model // n_heads // 2
                angles = torch.outer(torch.arange(places).float(), 10000.0 ** (-torch.arange(half).float() / half))
                self.register_buffer("rope_cos", angles.cos(), persistent=False)
                self.register_buffer("rope_sin", angles.sin(), persistent=False)
            self.drop = nn.Dropout(dropout)
            self.blocks = nn.ModuleList(Block(d_model, n_heads, ff_mult, dropout, bias) for _ in range(n_layers))
            self.ln_f = nn.LayerNorm(d_model, bias=bias)
            self.fc = nn.Linear(d_model, num_outputs, bias=bias)
            self._init(n_layers)
            if tie_weights:  # input and output embeddings share one matrix (after init: one draw for both)
                self.fc.weight = self.embed.weight

        def _init(self, n_layers):
            """GPT-2: N(0, 0.02) weights, zero biases, residual projections scaled by 1/sqrt(2 n_layers)."""
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    nn.init.zeros_(p)
                elif p.ndim >= 2 and name != "cls":
                    residual = name.endswith(("proj.weight", "ff.2.weight"))
                    nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layers) if residual else 0.02)

        def forward(self, x, lengths=None, state=None, keep_state: bool = False):
            """Logits [B, outputs] or per step [B, T, outputs]; with keep_state also the KV cache."""
            past = state["length"] if state is not None else 0
            if keep_state and state is None:  # keys and values in the dtype autocast computes them in
                kind = x.device.type
                dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else self.fc.weight.dtype
                state = self.new_cache(x.shape[0], x.device, dtype)
            h = self.embed(x)
            if self.cls is not None:
                h = torch.cat([self.cls.expand(h.shape[0], -1, -1).to(h.dtype), h], dim=1)
            steps = h.shape[1]
            if past + steps > self.cls_places():
                raise ValueError(f"{past + steps} positions exceed the model's context of {self.context}")
            where = slice(past, past + steps)
            rope = None
            if self.positions == "learned":
                h = h + self.pos.weight[where]
            elif self.positions == "sinusoidal":
                h = h + self.get_buffer("sinusoid")[where].to(h.dtype)
            else:
                rope = (self.get_buffer("rope_cos")[where].to(h.dtype), self.get_buffer("rope_sin")[where].to(h.dtype))
            mask = self._padding_mask(lengths, steps, x.device)
            h = self.drop(h)
            recompute = self.checkpoint_blocks and self.training and torch.is_grad_enabled() and state is None
            for i, block in enumerate(self.blocks):
                if recompute:  # train.activation_checkpointing: the block's activations are redone in backward
                    h = checkpoint(block, h, mask, self.causal, rope, None, past, use_reentrant=False)
                    continue
                h = block(h, mask, self.causal, rope, state["layers"][i] if state is not None else None, past)
            h = self.ln_f(h)
            y = self.fc(h if self.causal else self._pool(h, lengths))
            if state is not None:
                state["length"] = past + steps
            return (y, state) if keep_state else y

        def cls_places(self) -> int:
            return self.context + (self.cls is not None)

        def new_cache(self, batch: int, device, dtype) -> dict:
            """Empty keys and values for every layer, as long as the context, filled as tokens come."""
            head_dim = self.ln_f.normalized_shape[0] // self.n_heads
            shape = (batch, self.n_heads, self.context, head_dim)
            layers = [(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
                      for _ in self.blocks]
            return {"layers": layers, "length": 0}

        def _padding_mask(self, lengths, steps: int, device):
            """[B, 1, 1, T] True where a key is a real token (and the CLS token): padding is never attended."""
            if lengths is None:
                return None
            first = 1 if self.cls is not None else 0
            valid = torch.arange(steps, device=device)[None, :] < (lengths.to(device)[:, None] + first)
            return valid[:, None, None, :]

        def _pool(self, h, lengths):
            if self.pooling == "cls" and self.cls is not None:
                return h[:, 0]
            if self.cls is not None:
                h = h[:, 1:]
            if self.pooling == "last":
                if lengths is None:
                    return h[:, -1]
                return h[torch.arange(h.shape[0], device=h.device), lengths.to(h.device) - 1]
            if lengths is None:
                return h.mean(1)
            valid = (torch.arange(h.shape[1], device=h.device)[None, :] < lengths.to(h.device)[:, None])[..., None]
            return (h * valid).sum(1) / valid.sum(1)

    def _sinusoid(places: int, width: int):
        position = torch.arange(places).float()[:, None]
        rate = torch.exp(torch.arange(0, width, 2).float() * (-math.log(10000.0) / width))
        table = torch.zeros(places, width)
        table[:, 0::2] = torch.sin(position * rate)
        table[:, 1::2] = torch.cos(position * rate)[:, : width // 2]
        return table

    return TransformerNet


@MODELS.register("transformer", tags=("reads_tokens", "attention", "checkpointable"))
def transformer(input_shape, num_outputs, vocab_size=None, head="pooled", *, d_model: PositiveInt = 128,
                n_heads: HeadCount = 4, n_layers: PositiveInt = 4, ff_mult: PositiveInt = 4, dropout: Fraction = 0.1,
                positions: Literal["learned", "sinusoidal", "rope"] = "learned", tie_weights: bool = False,
                bias: bool = True, pooling: Literal["cls", "mean", "last"] = "mean"):
    """Transformer (GPT-style, pre-LayerNorm): causal for language models, an encoder for the rest."""
    # vocab_size and head are injected by dlcli from the data and the task, not read from YAML.
    return _transformer_net()(input_shape[-1], vocab_size, num_outputs, head, input_shape[0], d_model, n_heads,
                              n_layers, ff_mult, dropout, positions, tie_weights, bias, pooling)


def config_problems(params: dict, task) -> list[str]:
    """Checks across the transformer's parameters (config time, no torch); `params` are validated."""
    problems, per_step = [], task.recurrent_head == "per_step"
    d_model, n_heads = params["d_model"], params["n_heads"]
    if d_model % n_heads:
        problems.append(f"model.d_model: {d_model} must be divisible by model.n_heads ({n_heads})")
    elif params["positions"] == "rope" and (d_model // n_heads) % 2:
        problems.append(f"model.positions: rope needs an even head width (d_model / n_heads = {d_model // n_heads})")
    elif params["positions"] == "sinusoidal" and d_model % 2:
        problems.append(f"model.d_model: sinusoidal positions need an even d_model (got {d_model})")
    if params["tie_weights"] and not per_step:
        problems.append("model.tie_weights: only for language models (task: language_model)")
    if per_step and params["pooling"] != "mean":
        problems.append("model.pooling: a language model predicts at every step and pools nothing; leave it out")
    return problems


transformer.config_problems = config_problems
