"""The transformer model on its own: causality, KV-cache generation equal to re-running the window,
padding invariance of the encoder, GPT-2 init, weight decay on matrices only, and config errors
(cross-parameter checks at validate time, naming the key)."""

import math

import pytest
import torch

from dlcli.components.models import MODELS
from dlcli.components.optim.optimizers import param_groups
from dlcli.config import validate
from dlcli.errors import ConfigError
from dlcli.tasks.generation import _sample, sample_tokens

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is fastest on a busy CPU

VOCAB, CONTEXT = 13, 16
POSITIONS = ["learned", "sinusoidal", "rope"]


def lm(positions="learned", **params):
    torch.manual_seed(0)
    spec = {"name": "transformer", "d_model": 32, "n_heads": 4, "n_layers": 2, "dropout": 0.0,
            "positions": positions, **params}
    return MODELS.build(spec, (CONTEXT,), VOCAB, VOCAB, "per_step").eval()


def encoder(pooling, positions="learned", outputs=3):
    torch.manual_seed(0)
    spec = {"name": "transformer", "d_model": 32, "n_heads": 4, "n_layers": 2, "dropout": 0.0,
            "positions": positions, "pooling": pooling}
    return MODELS.build(spec, (CONTEXT,), outputs, VOCAB, "pooled").eval()


@pytest.mark.parametrize("positions", POSITIONS)
def test_changing_token_t_never_changes_outputs_before_t(positions):
    model = lm(positions, tie_weights=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(2, VOCAB, (2, CONTEXT), generator=g)
    with torch.no_grad():
        base = model(x)
        for t in (0, 5, CONTEXT - 1):
            changed = x.clone()
            changed[:, t] = (changed[:, t] - 2 + 1) % (VOCAB - 2) + 2  # another real token
            out = model(changed)
            assert torch.equal(out[:, :t], base[:, :t]), f"outputs before {t} moved"
            assert not torch.allclose(out[:, t], base[:, t]), f"output at {t} ignores its own token"


@pytest.mark.parametrize("positions", POSITIONS)
def test_kv_cache_gives_the_logits_of_the_full_window(positions):
    model = lm(positions)
    x = torch.randint(2, VOCAB, (3, CONTEXT), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(x)
        first, state = model(x[:, :7], keep_state=True)
        steps = [first]
        for t in range(7, CONTEXT):
            out, state = model(x[:, t:t + 1], state=state, keep_state=True)
            steps.append(out)
        two, _ = model(x[:, 7:9], state=model(x[:, :7], keep_state=True)[1], keep_state=True)  # 2 at once
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    assert torch.allclose(two, full[:, 7:9], atol=1e-5)
    assert state["length"] == CONTEXT


@pytest.mark.parametrize("positions", POSITIONS)
def test_cached_generation_samples_the_tokens_of_uncached_generation(positions):
    """Past the context the window restarts from its last half in both modes: 60 tokens after a
    5-token prompt cross it several times."""
    model = lm(positions)
    prompt = torch.randint(2, VOCAB, (2, 5), generator=torch.Generator().manual_seed(3))

    def run(cache: bool, seed: int = 7):
        g = torch.Generator().manual_seed(seed)
        with torch.inference_mode():
            return sample_tokens(model, prompt, 60, lambda l: _sample(l, 1.0, None, 0.95, g), CONTEXT, cache)

    cached, uncached = run(True), run(False)
    assert cached.shape == (2, 60)
    assert torch.equal(cached, uncached)
    assert not torch.equal(cached, run(True, seed=8))  # the draws do depend on the seed
    assert int(cached.min()) >= 2  # never <pad> or <unk>


def test_top_k_and_top_p_keep_only_the_likeliest_tokens():
    logits = torch.log(torch.tensor([[0.0, 0.0, 0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    draws = lambda **kw: {int(_sample(logits.clone(), 1.0, generator=g, **kw)) for _ in range(300)}
    assert draws(top_k=2, top_p=None) == {2, 3}
    assert draws(top_k=None, top_p=0.7) == {2, 3}  # 0.5 + 0.3 reaches 0.7
    assert draws(top_k=None, top_p=0.4) == {2}
    assert draws(top_k=None, top_p=None) == {2, 3, 4, 5}
    assert int(_sample(logits.clone(), 0.0, None, None, g)) == 2  # greedy


@pytest.mark.parametrize("pooling", ["cls", "mean", "last"])
def test_encoder_outputs_do_not_depend_on_padding(pooling):
    model = encoder(pooling, positions="rope")
    g = torch.Generator().manual_seed(4)
    x = torch.randint(2, VOCAB, (3, CONTEXT), generator=g)
    lengths = torch.tensor([5, CONTEXT, 9])
    with torch.no_grad():
        out = model(x, lengths)
        garbage = x.clone()
        for row, n in enumerate(lengths.tolist()):
            garbage[row, n:] = torch.randint(2, VOCAB, (CONTEXT - n,), generator=g)
        assert torch.allclose(model(garbage, lengths), out, atol=1e-5)
        alone = model(x[:1, :5], torch.tensor([5]))  # the short text on its own, no padding at all
        assert torch.allclose(alone, out[:1], atol=1e-5)
        assert not torch.allclose(model(garbage, torch.full((3,), CONTEXT)), out, atol=1e-3)  # control


def test_forecasting_encoder_projects_feature_vectors():
    torch.manual_seed(0)
    model = MODELS.build({"name": "transformer", "d_model": 16, "n_heads": 2, "n_layers": 1}, (24, 3), 8)
    assert model(torch.randn(5, 24, 3)).shape == (5, 8)


def test_gpt2_init_scales_the_residual_projections_and_weight_decay_skips_vectors():
    model = lm(n_layers=4)  # rebuilt with 4 layers: residual std 0.02 / sqrt(8)
    std = lambda name: float(dict(model.named_parameters())[name].detach().std())
    assert std("blocks.0.proj.weight") == pytest.approx(0.02 / math.sqrt(8), rel=0.15)
    assert std("blocks.0.ff.2.weight") == pytest.approx(0.02 / math.sqrt(8), rel=0.15)
    assert std("blocks.0.qkv.weight") == pytest.approx(0.02, rel=0.15)
    assert float(model.blocks[0].qkv.bias.detach().abs().sum()) == 0.0
    decay, no_decay = param_groups(model, 0.1, False)
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    ids = {id(p) for p in no_decay["params"]}
    assert id(model.blocks[0].ln1.weight) in ids and id(model.blocks[0].qkv.bias) in ids
    assert id(model.blocks[0].qkv.weight) not in ids
    assert not any(n.endswith("bias") for n, _ in lm(bias=False).named_parameters())


def text_config(model: dict, task="language_model") -> dict:
    dataset = ({"name": "text", "path": "x.txt", "seq_len": 16} if task == "language_model"
               else {"name": "text_classification", "path": "x.csv"})
    return {"name": "t", "task": task, "data": {"dataset": dataset}, "model": {"name": "transformer", **model}}


@pytest.mark.parametrize("model, task, needle", [
    ({"d_model": 30, "n_heads": 4}, "language_model", "model.d_model: 30 must be divisible by model.n_heads (4)"),
    ({"d_model": 36, "n_heads": 4, "positions": "rope"}, "language_model", "model.positions: rope needs an even"),
    ({"tie_weights": True}, "classification", "model.tie_weights: only for language models"),
    ({"pooling": "cls"}, "language_model", "model.pooling"),
    ({"n_head": 4}, "language_model", "did you mean 'n_heads'"),
])
def test_inconsistent_parameters_are_config_errors_naming_the_key(model, task, needle):
    with pytest.raises(ConfigError) as err:
        validate(text_config(model, task))
    assert needle in str(err.value)


def test_tbptt_is_refused_for_the_transformer_and_vocab_size_needs_bpe():
    config = text_config({})
    config["train"] = {"tbptt": True}
    with pytest.raises(ConfigError, match="train.tbptt: needs a recurrent model"):
        validate(config)
    config = text_config({})
    config["data"]["dataset"]["vocab_size"] = 500
    with pytest.raises(ConfigError, match="data.dataset.vocab_size: only for level bpe"):
        validate(config)


def test_every_parameter_is_listed():
    rows = {name: default for name, _, default in MODELS.describe("transformer")}
    assert set(rows) == {"d_model", "n_heads", "n_layers", "ff_mult", "dropout", "positions", "tie_weights",
                         "bias", "pooling"}
    assert "reads_tokens" in MODELS.tags("transformer")


def test_the_kv_cache_takes_the_autocast_dtype():
    model = lm()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits, state = model(torch.randint(2, VOCAB, (1, 4)), keep_state=True)
        logits, state = model(torch.randint(2, VOCAB, (1, 1)), state=state, keep_state=True)
    assert state["layers"][0][0].dtype == torch.bfloat16 and state["length"] == 5
    assert logits.shape == (1, 1, VOCAB) and torch.isfinite(logits.float()).all()
