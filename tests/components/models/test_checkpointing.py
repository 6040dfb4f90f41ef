"""Activation checkpointing: the same outputs, gradients and batch-norm statistics as without it,
the same state_dict keys, and a config error for models that are not a sequence of layers."""

import pytest
import torch

from dlcli.components.models import MODELS
from dlcli.components.models.checkpointing import checkpointed
from dlcli.config import validate
from dlcli.errors import ConfigError
from tests.conftest import tiny_digits_config, train_then_resume


@pytest.mark.parametrize("spec", [
    {"name": "cnn", "channels": [8, 16, 16], "convs_per_block": 2, "dropout": 0.2, "head": [32]},
    {"name": "mlp", "hidden": [64, 64, 32], "batch_norm": True, "dropout": 0.1},
], ids=["cnn", "mlp"])
def test_gradients_and_statistics_match_the_plain_model(spec):
    torch.manual_seed(0)
    plain = MODELS.build(spec, (3, 16, 16), 10)
    recomputing = checkpointed(MODELS.build(spec, (3, 16, 16), 10))
    recomputing.load_state_dict(plain.state_dict())
    assert list(recomputing.state_dict()) == list(plain.state_dict())
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    outputs = []
    for model in (plain, recomputing):
        torch.manual_seed(1)  # the same dropout masks
        out = model(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        outputs.append(out)
    assert torch.allclose(outputs[0], outputs[1], atol=1e-6)
    for (name, a), b in zip(plain.named_parameters(), recomputing.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6, rtol=1e-5), name
    for (name, a), b in zip(plain.named_buffers(), recomputing.buffers()):
        assert torch.equal(a, b), name  # running statistics moved once, not twice
    recomputing.eval()
    with torch.no_grad():
        assert torch.allclose(recomputing(x), plain.eval()(x), atol=1e-6)


def test_a_run_with_activation_checkpointing_trains_the_same_weights(tmp_path):
    import io

    from dlcli.cli.progress import Progress
    from dlcli.training.session import train

    weights = []
    for on in (False, True):
        config = validate(tiny_digits_config(model={"name": "cnn", "channels": [8, 8], "head": [16]},
                                             train={"epochs": 1, "device": "cpu", "activation_checkpointing": on}))
        run = train(config, str(tmp_path / str(on)), None, Progress(1, quiet=True, stream=io.StringIO()))
        from dlcli.training import checkpoint

        weights.append(checkpoint.load(run["checkpoints"]["last"])["model"])
    assert all(torch.allclose(weights[0][k].float(), weights[1][k].float(), atol=1e-5) for k in weights[0])


def test_models_that_are_not_a_layer_sequence_are_refused():
    config = tiny_digits_config(data={"dataset": {"name": "digits_rows"}, "batch_size": 32},
                                model={"name": "lstm"}, train={"activation_checkpointing": True})
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert any(p.startswith("train.activation_checkpointing: model 'lstm' has no layers or blocks")
               for p in err.value.problems), err.value.problems


def test_transformer_blocks_recompute_to_the_same_gradients():
    torch.manual_seed(0)
    spec = {"name": "transformer", "d_model": 32, "n_heads": 4, "n_layers": 3, "dropout": 0.1}
    plain = MODELS.build(spec, (16,), 50, 50, "per_step")
    recomputing = checkpointed(MODELS.build(spec, (16,), 50, 50, "per_step"))
    recomputing.load_state_dict(plain.state_dict())
    x = torch.randint(2, 50, (4, 16))
    grads = []
    for model in (plain, recomputing):
        torch.manual_seed(1)
        model(x).float().logsumexp(-1).mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert recomputing.checkpoint_blocks and not plain.checkpoint_blocks
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], atol=1e-6, rtol=1e-5), name


def test_a_mid_epoch_resume_with_a_policy_and_checkpointing_is_bitwise_exact(tmp_path, write_config, run_cli):
    config = tiny_digits_config(model={"name": "cnn", "channels": [8], "head": [16]},
                                train={"epochs": 2, "device": "cpu", "checkpoint_every": {"steps": 5},
                                       "keep_last": 100, "log_interval": 100, "activation_checkpointing": True})
    config["data"]["train_transforms"] = [{"trivial_augment": {}}, {"normalize": "digits"}]
    full, resumed = train_then_resume(run_cli, write_config(config), tmp_path, "tiny", 5)
    a, b = full["model"], resumed["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
