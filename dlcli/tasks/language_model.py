"""Language modelling: a prediction at every step, loss = per-token cross-entropy; metrics are
per token (loss, accuracy, perplexity = exp(loss)). With train.tbptt the hidden state is carried
(detached) from one batch of windows to the next, which continue each other in the text."""

from dlcli.errors import ConfigError
from dlcli.tasks.base import Task
from dlcli.tasks.registry import register_task


class TokenMetrics:
    """Running per-token sums on the device; synced only in compute()."""

    MIN = frozenset({"loss", "perplexity", "bpc"})
    SHOWN = ("loss", "acc", "perplexity")

    @staticmethod
    def names(split: str, config=None, num_classes: int | None = None) -> list[str]:
        return ["loss", "acc", "perplexity"] + (["bpc"] if config is not None and per_character(config) else [])

    def __init__(self, device, bpc: bool = False):
        import torch

        self.bpc = bpc  # character tokens: bits per character = loss / ln 2
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.count = 0  # tokens

    def update(self, loss, logits, batch) -> None:
        n = batch.y.numel()
        self.count += n
        self.loss_sum += loss.detach().float() * n
        self.correct += (logits.detach().argmax(-1) == batch.y).sum()

    def compute(self, prefix: str) -> dict:
        import math

        if self.count == 0:
            return {}
        loss = float(self.loss_sum) / self.count
        out = {f"{prefix}/loss": loss, f"{prefix}/acc": float(self.correct) / self.count,
               f"{prefix}/perplexity": math.exp(min(loss, 700.0))}  # exp overflows past ~709
        if self.bpc:
            out[f"{prefix}/bpc"] = loss / math.log(2)
        return out

    def state_dict(self) -> dict:
        return {"loss_sum": self.loss_sum, "correct": self.correct, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.loss_sum.copy_(state["loss_sum"])
        self.correct.copy_(state["correct"])
        self.count = state["count"]


@register_task
class LanguageModelTask(Task):
    name = "language_model"
    summary = "next-token prediction over a text (dataset text)"
    default_loss = "cross_entropy"
    losses = ("cross_entropy", "nll")
    reads = ("token_stream",)
    metrics_class = TokenMetrics
    recurrent_head = "per_step"
    eval_unit = "tokens"

    def __init__(self, loss_fn, vocab_size: int, tbptt: bool = False, bpc: bool = False):
        self.loss_fn, self.vocab_size, self.tbptt, self.bpc = loss_fn, vocab_size, tbptt, bpc
        self.state = None  # hidden state carried across batches (tbptt only)

    @classmethod
    def create(cls, config, meta, loss_fn):
        return cls(loss_fn, len(meta.vocab), config.train.tbptt, per_character(config))

    @staticmethod
    def num_outputs(meta) -> int:
        return len(meta.vocab)

    @staticmethod
    def counted(batch) -> int:
        return batch.y.numel()  # tokens: every window position is a prediction

    @staticmethod
    def describe_outputs(meta) -> str:
        return f"vocabulary {len(meta.vocab)}"

    @staticmethod
    def infer_options(meta) -> set[str]:
        return {"prompt", "seed", "length", "temperature", "top_k", "top_p", "num"}

    def infer(self, model, config, meta, inputs, options, device, precision):
        if inputs:
            raise ConfigError("a language model takes no input files; give --prompt TEXT")
        from dlcli.tasks.generation import generate

        return "generation", generate(model, meta, device, precision, options.get("prompt") or "",
                                      options.get("length") or 200, _or(options.get("temperature"), 1.0),
                                      options.get("top_k"), options.get("seed"), options.get("top_p"),
                                      options.get("num") or 1)

    def reset(self) -> None:
        """Start of an epoch or an evaluation: the streams start again from their beginnings."""
        self.state = None

    def loss(self, model, batch):
        if self.tbptt:
            state = self.state
            if state is not None and _rows(state) > batch.x.shape[0]:  # eval's last row continues the last stream
                state = tuple(s[:, -batch.x.shape[0]:] for s in state) if isinstance(state, tuple) \
                    else state[:, -batch.x.shape[0]:]
            logits, state = model(batch.x, state=state, keep_state=True)
            self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        else:
            logits = model(batch.x)
        return self.loss_fn(logits.flatten(0, 1), batch.y.flatten(), None), logits

    def metrics(self, device, full: bool = True):
        return TokenMetrics(device, self.bpc)

    def state_dict(self) -> dict:
        """The carried hidden state, so a mid-epoch resume continues the streams exactly."""
        return {"state": self.state}

    def load_state_dict(self, state: dict) -> None:
        self.state = state.get("state")


def per_character(config) -> bool:
    """Whether the tokens are characters (the text dataset's default level)."""
    dataset = config.data.dataset
    return isinstance(dataset, dict) and dataset.get("level", "char") == "char"


def _or(value, default):
    return default if value is None else value


def _rows(state) -> int:
    """The batch rows of a recurrent state ([layers, B, H], or a tuple of them for an LSTM)."""
    return (state[0] if isinstance(state, tuple) else state).shape[1]
