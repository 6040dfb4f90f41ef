"""Recurrent models (lstm, gru, rnn) built through the MODELS registry: token and feature inputs,
pooled and per-step heads, padding invariance with packed sequences (issue #4), tied weights and
hidden state carried across calls (truncated BPTT)."""

import itertools

import pytest
import torch
from torch import nn

from dlcli.components.models import MODELS
from dlcli.data.loading import Batch, trimmed

CELLS = ["lstm", "gru", "rnn"]
VOCAB = 20


def build(spec: dict, input_shape, num_outputs: int, vocab_size=None, head: str = "pooled"):
    """Validate the spec as a config would, then build it as build.build_model does."""
    model = MODELS.build(MODELS.validate(spec, "model"), tuple(input_shape), num_outputs, vocab_size, head)
    return model.eval()


def small(cell: str, **params) -> dict:
    return {"name": cell, "embedding_dim": 6, "hidden_size": 5, **params}


def padded_tokens(lengths, seed: int = 0, pad_value: int = 0):
    """Token ids in [2, VOCAB) for each length, padded with pad_value to the longest; (x, lengths)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    x = torch.full((len(lengths), int(lengths.max())), pad_value, dtype=torch.long)
    for row, n in enumerate(lengths.tolist()):
        x[row, :n] = torch.randint(2, VOCAB, (n,), generator=g)
    return x, lengths


# ---------------------------------------------------------------- building and shapes


@pytest.mark.parametrize("cell", CELLS)
def test_registered_with_documented_parameters(cell):
    assert cell in MODELS.names()
    spec = MODELS.validate({"name": cell}, "model")
    assert spec == {"name": cell, "embedding_dim": 64, "hidden_size": 128, "num_layers": 1, "bidirectional": False,
                    "dropout": 0.0, "pooling": "last", "tie_weights": False, "init": "default", "init_mean": 0.0,
                    "init_std": 0.1, "zero_bias": True}


@pytest.mark.parametrize("tie", [False, True])
def test_uniform_init_is_the_word_language_model_recipe(tie):
    """init: uniform draws the embedding and the output layer from +-init_std with a zero output bias
    (the PyTorch example's init_weights); the recurrent weights keep torch's own init."""
    torch.manual_seed(0)
    net = MODELS.build({"name": "lstm", "init": "uniform", "init_std": 0.1, "embedding_dim": 32, "hidden_size": 32,
                        "tie_weights": tie}, (16,), 50, 50, "per_step")
    torch.manual_seed(0)
    plain = MODELS.build({"name": "lstm", "embedding_dim": 32, "hidden_size": 32, "tie_weights": tie},
                         (16,), 50, 50, "per_step")
    for weight in (net.embed.weight[1:].detach(), net.fc.weight.detach()):
        assert float(weight.abs().max()) <= 0.1 and float(weight.std()) > 0.05  # uniform(-0.1, 0.1): std 0.058
    assert float(net.embed.weight[0].abs().max()) == 0.0  # <pad> stays zero
    assert float(net.fc.bias.abs().max()) == 0.0
    assert (net.fc.weight is net.embed.weight) is tie
    assert torch.equal(net.rnn.weight_hh_l0, plain.rnn.weight_hh_l0)  # the recurrence is not re-drawn


@pytest.mark.parametrize("cell", CELLS)
def test_bad_parameters_are_config_errors(cell):
    from dlcli.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        MODELS.validate({"name": cell, "pooling": "sum", "hidden_size": 0}, "model")
    keys = {p.split(":")[0] for p in info.value.problems}
    assert keys == {"model.pooling", "model.hidden_size"}


@pytest.mark.parametrize("cell, bidirectional", list(itertools.product(CELLS, [False, True])))
def test_token_input_pooled_and_per_step_shapes(cell, bidirectional):
    x, lengths = padded_tokens([5, 3, 7])
    pooled = build(small(cell, bidirectional=bidirectional, num_layers=2), (7,), 4, VOCAB, "pooled")
    assert isinstance(pooled.embed, nn.Embedding) and pooled.embed.num_embeddings == VOCAB
    assert pooled.embed.padding_idx == 0
    assert isinstance(pooled.rnn, getattr(nn, {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[cell]))
    assert pooled.fc.in_features == 5 * (2 if bidirectional else 1)
    assert pooled(x).shape == (3, 4)
    assert pooled(x, lengths).shape == (3, 4)
    per_step = build(small(cell, bidirectional=bidirectional), (7,), VOCAB, VOCAB, "per_step")
    assert per_step(x).shape == (3, 7, VOCAB)
    assert per_step(x, lengths).shape == (3, 7, VOCAB)


@pytest.mark.parametrize("cell", CELLS)
def test_feature_input_pooled_and_per_step_shapes(cell):
    x = torch.randn(4, 8, 3, generator=torch.Generator().manual_seed(0))  # [B, T, F]
    pooled = build(small(cell), (8, 3), 10)
    assert isinstance(pooled.embed, nn.Linear) and pooled.embed.in_features == 3
    out = pooled(x)
    assert out.shape == (4, 10) and out.dtype == torch.float32
    per_step = build(small(cell), (8, 3), 2, None, "per_step")
    assert per_step(x).shape == (4, 8, 2)


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_pooling_modes_give_different_outputs_on_features(pooling):
    x = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = build(small("gru", pooling=pooling), (6, 3), 3)
    torch.manual_seed(0)
    last = build(small("gru", pooling="last"), (6, 3), 3)
    with torch.no_grad():
        same = torch.allclose(model(x), last(x))
    assert same == (pooling == "last")  # same weights: only the pooling differs


def test_build_model_picks_head_and_vocabulary_from_the_task():
    from dlcli.config import validate
    from dlcli.data.pipeline import DataMeta
    from dlcli.training.build import build_model

    base = {"name": "t", "train": {"device": "cpu", "monitor": "train/loss"}, "data": {"val_split": 0.0}}
    lm = validate({**base, "data": {"dataset": {"name": "text", "path": "c.txt", "seq_len": 5}, "val_split": 0.0},
                   "model": small("lstm")})
    vocab = ["<pad>", "<unk>"] + list("abcdefgh")
    meta = DataMeta([], [5], "tokens", vocab=vocab, sequence={"seq_len": 5})
    model = build_model(lm, meta, torch.device("cpu"))
    assert model.head == "per_step" and model.embed.num_embeddings == len(vocab)
    assert model(torch.randint(0, 10, (2, 5))).shape == (2, 5, len(vocab))

    fc = validate({**base, "data": {"dataset": {"name": "sine"}, "val_split": 0.0}, "model": small("gru")})
    meta = DataMeta([], [16, 1], "series", ["value"], sequence={"horizon": 3, "target_index": [0]})
    model = build_model(fc, meta, torch.device("cpu"))
    assert model.head == "pooled" and isinstance(model.embed, nn.Linear)
    assert model(torch.randn(2, 16, 1)).shape == (2, 3)  # horizon x targets


# ---------------------------------------------------------------- padding invariance


@pytest.mark.parametrize("cell, pooling, bidirectional",
                         list(itertools.product(["lstm", "gru"], ["last", "mean", "max"], [False, True])))
def test_padded_batch_equals_each_sequence_alone(cell, pooling, bidirectional):
    torch.manual_seed(0)
    model = build(small(cell, pooling=pooling, bidirectional=bidirectional, num_layers=2), (9,), 3, VOCAB)
    x, lengths = padded_tokens([5, 2, 9, 1, 4])
    with torch.no_grad():
        batched = model(x, lengths)
        alone = torch.cat([model(x[i:i + 1, :n]) for i, n in enumerate(lengths.tolist())])
        # the padding never enters the recurrence: other values in the padded slots change nothing
        noisy, _ = padded_tokens(lengths.tolist(), pad_value=7)
        batched_noisy = model(noisy, lengths)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(batched_noisy, alone, atol=1e-5, rtol=0)
    # and without lengths the padding would have mattered: the check has teeth
    with torch.no_grad():
        unmasked = model(x)
    assert not torch.allclose(unmasked, alone, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_padding_invariance_for_per_step_outputs(cell):
    torch.manual_seed(0)
    model = build(small(cell), (6,), VOCAB, VOCAB, "per_step")
    x, lengths = padded_tokens([6, 3, 1])
    with torch.no_grad():
        batched = model(x, lengths)
        for i, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(batched[i, :n], model(x[i:i + 1, :n])[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell, pooling", list(itertools.product(["lstm", "gru"], ["last", "mean", "max"])))
def test_classification_loss_of_a_padded_batch_equals_one_sequence_at_a_time(cell, pooling):
    import torch.nn.functional as F

    from dlcli.components.losses import LOSSES
    from dlcli.tasks.classify import ClassificationTask

    torch.manual_seed(0)
    model = build(small(cell, pooling=pooling, bidirectional=True), (8,), 3, VOCAB)
    x, lengths = padded_tokens([3, 8, 1, 5], seed=2)
    x = torch.cat([x, torch.zeros(4, 4, dtype=torch.long)], 1)  # extra padding, as a split padded to a longer text
    y = torch.tensor([0, 2, 1, 2])
    task = ClassificationTask(LOSSES.build({"name": "cross_entropy"}), 3)
    batch = trimmed(x, y, None, lengths)
    assert batch.x.shape == (4, 8)
    with torch.no_grad():
        loss, logits = task.loss(model, batch)
        singles = [task.loss(model, Batch(x[i:i + 1, :n], y[i:i + 1], None, lengths[i:i + 1]))
                   for i, n in enumerate(lengths.tolist())]
        unpadded = [task.loss(model, Batch(x[i:i + 1, :n], y[i:i + 1])) for i, n in enumerate(lengths.tolist())]
    per_sequence = F.cross_entropy(logits, y, reduction="none")
    single_losses = torch.stack([s[0] for s in singles])
    torch.testing.assert_close(per_sequence, single_losses, atol=1e-5, rtol=0)
    torch.testing.assert_close(single_losses, torch.stack([u[0] for u in unpadded]), atol=1e-5, rtol=0)
    torch.testing.assert_close(loss, single_losses.mean(), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, torch.cat([s[1] for s in singles]), atol=1e-5, rtol=0)


def test_classification_loss_with_padding_has_gradients_only_from_valid_tokens():
    from dlcli.components.losses import LOSSES
    from dlcli.tasks.classify import ClassificationTask

    torch.manual_seed(0)
    model = build(small("lstm", pooling="mean"), (6,), 2, VOCAB)
    x, lengths = padded_tokens([6, 2])
    task = ClassificationTask(LOSSES.build({"name": "cross_entropy"}), 2)
    loss, _ = task.loss(model, Batch(x, torch.tensor([1, 0]), None, lengths))
    loss.backward()
    assert torch.isfinite(loss)
    assert model.embed.weight.grad[0].abs().sum() == 0  # <pad> (id 0) never learns
    used = set(x[0].tolist()) | set(x[1, :2].tolist())
    assert all(model.embed.weight.grad[t].abs().sum() > 0 for t in used)


# ---------------------------------------------------------------- tied weights


@pytest.mark.parametrize("cell", CELLS)
def test_tie_weights_shares_the_embedding_and_output_matrix(cell):
    model = build({"name": cell, "embedding_dim": 8, "hidden_size": 8, "tie_weights": True}, (5,), VOCAB, VOCAB,
                  "per_step")
    assert model.fc.weight is model.embed.weight
    assert model.fc.weight.data_ptr() == model.embed.weight.data_ptr()
    untied = build({"name": cell, "embedding_dim": 8, "hidden_size": 8}, (5,), VOCAB, VOCAB, "per_step")
    n_params = (lambda m: sum(p.numel() for p in m.parameters()))
    assert n_params(untied) - n_params(model) == VOCAB * 8  # one matrix fewer
    # a training step moves both views together
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randint(2, VOCAB, (2, 5))
    nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward()
    opt.step()
    assert torch.equal(model.fc.weight, model.embed.weight)
    assert "fc.weight" in model.state_dict() and torch.equal(model.state_dict()["fc.weight"],
                                                             model.state_dict()["embed.weight"])


# ---------------------------------------------------------------- carried state


@pytest.mark.parametrize("cell, tokens", list(itertools.product(CELLS, [True, False])))
def test_keep_state_continues_the_sequence(cell, tokens):
    torch.manual_seed(0)
    if tokens:
        model = build(small(cell, num_layers=2), (12,), VOCAB, VOCAB, "per_step")
        x = torch.randint(1, VOCAB, (3, 12), generator=torch.Generator().manual_seed(1))
    else:
        model = build(small(cell, num_layers=2), (12, 2), 2, None, "per_step")
        x = torch.randn(3, 12, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = model(x)
        first, state = model(x[:, :5], keep_state=True)
        second, state2 = model(x[:, 5:], state=state, keep_state=True)
        fresh = model(x[:, 5:])
    if cell == "lstm":
        assert isinstance(state, tuple) and len(state) == 2 and state[0].shape == (2, 3, 5)
    else:
        assert state.shape == (2, 3, 5)  # [layers, B, H]
    torch.testing.assert_close(first, whole[:, :5], atol=1e-5, rtol=0)
    torch.testing.assert_close(second, whole[:, 5:], atol=1e-5, rtol=0)
    assert not torch.allclose(fresh, whole[:, 5:], atol=1e-5)  # without the state it would differ
    assert model(x[:, :5]).shape == first.shape  # keep_state=False returns the outputs alone


def test_language_model_task_with_tbptt_carries_a_detached_state():
    from dlcli.components.losses import LOSSES
    from dlcli.tasks.language_model import LanguageModelTask

    torch.manual_seed(0)
    model = build(small("lstm"), (10,), VOCAB, VOCAB, "per_step")
    ids = torch.randint(2, VOCAB, (2, 11), generator=torch.Generator().manual_seed(3))
    x, y = ids[:, :-1], ids[:, 1:]
    task = LanguageModelTask(LOSSES.build({"name": "cross_entropy"}), VOCAB, tbptt=True)
    _, first = task.loss(model, Batch(x[:, :5], y[:, :5]))
    assert task.state is not None and not any(s.requires_grad for s in task.state)
    _, second = task.loss(model, Batch(x[:, 5:], y[:, 5:]))
    with torch.no_grad():
        whole = model(x)
    torch.testing.assert_close(torch.cat([first, second], 1).detach(), whole, atol=1e-5, rtol=0)
    task.reset()
    assert task.state is None
