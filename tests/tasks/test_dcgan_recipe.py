"""The DCGAN recipe (issue 16) on the `gan` model's dcgan networks: weights from N(0, 0.02) with
batch-norm weights from N(1, 0.02) and zero biases (`init: dcgan`, the default for dcgan nets), a
generator that starts from the noise as a 1x1 map through a transposed conv (`stem: conv`), no conv
bias where batch norm follows; configs/dcgan_mnist.yaml is the example's recipe. A GAN checkpoint
written before these options (tests/fixtures/legacy_gan_run, a dcgan on digits made by commit
3f858b6) still rebuilds with its linear stem: eval, infer and export give what that dlcli gave."""

import json
import shutil

import pytest
import torch
from torch import nn

from dlcli.components.models import MODELS
from dlcli.config import load, validate
from dlcli.errors import ConfigError
from tests.conftest import REPO

LEGACY = REPO / "tests" / "fixtures" / "legacy_gan_run"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gan_spec(generator: dict, discriminator: dict | None = None, **extra) -> dict:
    config = validate({"name": "g", "task": "gan", "data": {"dataset": {"name": "digits"}},
                       "model": {"name": "gan", "latent_dim": 16, "generator": generator,
                                 "discriminator": discriminator or {"type": "dcgan", "channels": [16, 8]}, **extra}})
    return config.model


def build(spec: dict, shape=(1, 32, 32)):
    torch.manual_seed(0)
    model = MODELS.build(spec, shape, 10)
    model.requires_grad_(False)  # plain numbers for the statistics below
    return model


def convs(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def test_dcgan_init_draws_weights_from_the_recipe_and_zeroes_biases():
    model = build(gan_spec({"type": "dcgan", "channels": [64, 32, 16]},
                           {"type": "dcgan", "channels": [64, 32, 16], "batch_norm": True}))
    weights = torch.cat([m.weight.flatten() for m in convs(model) + [model.discriminator.head.out]])
    assert weights.mean().abs() < 0.002 and weights.std() == pytest.approx(0.02, rel=0.05)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 5  # generator: stem + 2 upsamplings; discriminator: after its 2nd and 3rd convs
    gammas = torch.cat([m.weight for m in norms])
    assert gammas.mean() == pytest.approx(1.0, abs=0.01) and gammas.std() == pytest.approx(0.02, rel=0.2)
    biases = [m.bias for m in model.modules() if getattr(m, "bias", None) is not None]
    assert biases and all(torch.count_nonzero(b) == 0 for b in biases)


def test_init_default_keeps_torchs_weights_and_mlp_nets_keep_them_unless_asked():
    plain = build(gan_spec({"type": "dcgan", "channels": [64, 32, 16], "init": "default"}))
    recipe = build(gan_spec({"type": "dcgan", "channels": [64, 32, 16]}))
    bound = 1 / (64 * 4 * 4) ** 0.5  # torch's kaiming-uniform bound for this transposed conv's fan-in
    assert plain.generator.project[0].weight.abs().max() <= bound < recipe.generator.project[0].weight.abs().max()
    mlp = build(gan_spec({"type": "mlp", "hidden": [64]}, {"type": "mlp", "hidden": [64]}), (1, 8, 8))
    assert mlp.generator.net[0].bias.abs().sum() > 0  # torch's init: non-zero biases
    asked = build(gan_spec({"type": "mlp", "hidden": [64], "init": "dcgan"}, {"type": "mlp", "hidden": [64]}),
                  (1, 8, 8))
    assert asked.generator.net[0].bias.abs().sum() == 0 and asked.generator.net[0].weight.std() < 0.03


def test_the_conv_stem_turns_1x1_noise_into_the_start_maps_with_a_transposed_conv():
    model = build(gan_spec({"type": "dcgan", "channels": [64, 32, 16]}))  # 32 / 2^3 = 4x4 start
    first = model.generator.project[0]
    assert isinstance(first, nn.ConvTranspose2d) and first.kernel_size == (4, 4) and first.in_channels == 16
    assert not any(isinstance(m, (nn.Linear, nn.BatchNorm1d)) for m in model.generator.modules())
    images = model(torch.randn(5, 16))
    assert images.shape == (5, 1, 32, 32) and images.abs().max() <= 1
    old = build(gan_spec({"type": "dcgan", "channels": [64, 32, 16], "stem": "linear"}))
    assert isinstance(old.generator.project[0], nn.Linear) and isinstance(old.generator.project[1], nn.BatchNorm1d)


def test_a_conditional_generator_with_the_conv_stem_takes_labels():
    model = build(gan_spec({"type": "dcgan", "channels": [32, 16]}, conditional=True), (1, 8, 8))
    images = model(torch.randn(6, 16), torch.arange(6))
    assert images.shape == (6, 1, 8, 8)


def test_convs_followed_by_batch_norm_have_no_bias_and_the_others_keep_theirs():
    model = build(gan_spec({"type": "dcgan", "channels": [64, 32, 16]},
                           {"type": "dcgan", "channels": [64, 32, 16], "batch_norm": True}))
    for net in (model.generator, model.discriminator):
        layers = [m for m in net.modules() if not isinstance(m, (nn.Sequential, type(net)))]
        for layer, after in zip(layers, layers[1:]):
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                assert (layer.bias is None) == isinstance(after, nn.BatchNorm2d), (layer, after)


def test_dcgan_mnist_config_is_the_examples_recipe():
    config = load(str(REPO / "configs" / "dcgan_mnist.yaml"))
    g, d = config.model["generator"], config.model["discriminator"]
    assert config.model["latent_dim"] == 100 and g["channels"] == [512, 256, 128, 64]
    assert d["channels"] == g["channels"] and d["batch_norm"] is True and d["dropout"] == 0
    assert g["stem"] == "conv" and g["init"] == d["init"] == "dcgan"
    assert config.loss == {"name": "gan_bce", "label_smoothing": 0.0, "n_critic": 1}
    for net in ("generator", "discriminator"):
        assert config.optimizer[net]["lr"] == 2e-4 and config.optimizer[net]["betas"] == [0.5, 0.999]
    assert config.data.batch_size == 128
    assert [t["size"] for t in config.data.train_transforms] == [64] == [t["size"] for t in config.data.eval_transforms]
    # Its networks at the example's 64x64: the stem is a 4x4 transposed conv from 1x1 noise (4 -> 64 in four doublings)
    model = MODELS.build(config.model, (1, 64, 64), 10)
    assert model.generator.project[0].kernel_size == (4, 4)
    # The example's netG for one channel has 3,574,656 parameters; dlcli keeps a bias on the output conv
    assert sum(p.numel() for p in model.generator.parameters()) == 3_574_656 + 1


def test_a_bad_stem_or_init_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError) as err:
        gan_spec({"type": "dcgan", "stem": "dense", "init": "xavier"})
    text = "\n".join(err.value.problems)
    assert "model.generator.stem" in text and "model.generator.init" in text


# ---------------------------------------------------------------- checkpoints written before these options


@pytest.fixture
def legacy_gan(tmp_path):
    run = tmp_path / "runs" / "legacy_gan" / "v1"
    shutil.copytree(LEGACY, run)
    return run


def test_a_legacy_gan_checkpoint_rebuilds_its_linear_stem_and_samples_what_it_did(legacy_gan):
    from dlcli.tasks.gan.quality import sample_images
    from dlcli.training import checkpoint
    from dlcli.training.build import from_checkpoint

    expected = json.loads((legacy_gan / "expected.json").read_text())
    payload = checkpoint.load(legacy_gan / "checkpoints" / "last.pt")
    assert "stem" not in payload["config"]["model"]["generator"]  # written before the option existed
    config, meta, model, device, _ = from_checkpoint(payload, [], "cpu")
    assert config.model["generator"]["stem"] == "linear"
    assert isinstance(model.generator.project[0], nn.Linear)
    model.eval()
    images, _ = sample_images(model, 4, 3, None, meta.class_names, device)
    saved = expected["samples_seed3_num4"]
    assert images.double().mean().item() == pytest.approx(saved["mean"], abs=1e-6)
    assert images[0, 0, 0].tolist() == pytest.approx(saved["first_pixels"], abs=1e-6)


def test_a_legacy_gan_checkpoint_evaluates_exports_and_resumes_in_real_processes(legacy_gan, run_cli, tmp_path):
    expected = json.loads((legacy_gan / "expected.json").read_text())["eval_val_metrics"]
    ckpt = legacy_gan / "checkpoints" / "last.pt"
    result = run_cli("eval", ckpt, "--split", "val", "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-6), name
    exported = run_cli("export", ckpt, "--format", "torchscript", "--output", tmp_path / "g.pt")
    assert exported.returncode == 0, exported.stderr
    # Resuming with the run's own config.yaml (no stem key, so today's default) names the difference...
    refused = run_cli("train", legacy_gan / "config.yaml", "--resume", legacy_gan, "train.epochs=2", "-q")
    assert refused.returncode == 2 and "model.generator.stem" in refused.stderr, refused.stderr
    # ...and with the layout it was trained with, it goes on.
    resumed = run_cli("train", legacy_gan / "config.yaml", "--resume", legacy_gan, "train.epochs=2",
                      "model.generator.stem=linear", "-q", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["epochs"] == 2
