"""Recurrent networks (lstm, gru, rnn) on torch's fused nn.LSTM/GRU/RNN (cuDNN on CUDA): no Python
loop over time steps in training. Token ids enter through an embedding, feature vectors through a
linear projection. The head follows the task: one output per sequence (classification,
forecasting: last state, or mean/max over the valid steps) or one per step (language modelling)."""

from typing import Literal

from dlcli.components.models.registry import MODELS
from dlcli.types import Fraction, Init, NonNegativeFloat, PositiveInt

CELLS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def _recurrent_net():
    """The nn.Module class, defined on first use so importing this file needs no torch."""
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class RecurrentNet(nn.Module):
        def __init__(self, cell, input_size, vocab_size, num_outputs, head, embedding_dim, hidden_size,
                     num_layers, bidirectional, dropout, pooling, tie_weights):
            super().__init__()
            self.head, self.pooling, self.cell = head, pooling, cell
            self.embed = (nn.Embedding(vocab_size, embedding_dim, padding_idx=0) if vocab_size
                          else nn.Linear(input_size, embedding_dim))
            self.rnn = getattr(nn, CELLS[cell])(embedding_dim, hidden_size, num_layers, batch_first=True,
                                                dropout=dropout if num_layers > 1 else 0.0,
                                                bidirectional=bidirectional)
            self.drop = nn.Dropout(dropout)
            self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), num_outputs)
            if tie_weights:  # input and output embeddings share one matrix (fewer parameters, better LMs)
                self.fc.weight = self.embed.weight

        def init_ends(self, scheme: str, mean: float, std: float, zero_bias: bool) -> None:
            """The word-language-model example's init: the input embedding (or projection) and the output
            layer drawn by `scheme`, output bias zero; the recurrent weights keep torch's own init."""
            from dlcli.components.models.layers import init_tensor

            with torch.no_grad():
                for layer in dict.fromkeys([self.embed, self.fc]):
                    init_tensor(layer.weight, scheme, mean, std)
                    if getattr(layer, "bias", None) is not None and zero_bias:
                        layer.bias.zero_()
                if isinstance(self.embed, nn.Embedding):
                    self.embed.weight[0].zero_()  # <pad> stays the zero vector, as nn.Embedding makes it

        def forward(self, x, lengths=None, state=None, keep_state: bool = False):
            """Outputs [B, outputs] or per step [B, T, outputs]; with keep_state also the final state."""
            h = self.drop(self.embed(x))
            if lengths is not None:  # packed: padding never enters the recurrence or the final state
                packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
                out, final = self.rnn(packed, state)
                out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            else:
                out, final = self.rnn(h, state)
            features = out if self.head == "per_step" else self._pool(out, final, lengths)
            y = self.fc(self.drop(features))
            return (y, final) if keep_state else y

        def _pool(self, out, final, lengths):
            if self.pooling == "last":
                h_n = final[0] if self.cell == "lstm" else final  # [layers * dirs, B, H]
                dirs = 2 if self.rnn.bidirectional else 1
                return torch.cat(list(h_n[-dirs:]), dim=1)  # last layer, both directions
            if lengths is None:
                return out.mean(1) if self.pooling == "mean" else out.amax(1)
            steps = torch.arange(out.shape[1], device=out.device)
            valid = (steps[None, :] < lengths.to(out.device)[:, None])[..., None]
            if self.pooling == "mean":
                return (out * valid).sum(1) / valid.sum(1)
            return out.masked_fill(~valid, float("-inf")).amax(1)

    return RecurrentNet


def _register(cell: str, summary: str) -> None:
    def build(input_shape, num_outputs, vocab_size=None, head="pooled", *,
              embedding_dim: PositiveInt = 64, hidden_size: PositiveInt = 128, num_layers: PositiveInt = 1,
              bidirectional: bool = False, dropout: Fraction = 0.0,
              pooling: Literal["last", "mean", "max"] = "last", tie_weights: bool = False,
              init: Init = "default", init_mean: float = 0.0, init_std: NonNegativeFloat = 0.1,
              zero_bias: bool = True):
        # vocab_size and head are injected by dlcli from the data and the task, not read from YAML.
        net = _recurrent_net()(cell, input_shape[-1], vocab_size, num_outputs, head, embedding_dim,
                               hidden_size, num_layers, bidirectional, dropout, pooling, tie_weights)
        if init != "default":
            net.init_ends(init, init_mean, init_std, zero_bias)
        return net

    build.__doc__ = summary
    build.__name__ = cell
    MODELS.register(cell, tags=("recurrent", "reads_tokens"))(build)


_register("lstm", "LSTM over token ids (embedding) or feature vectors (projection); head follows the task.")
_register("gru", "GRU, as lstm (same parameters).")
_register("rnn", "Elman RNN with tanh, as lstm (same parameters).")
