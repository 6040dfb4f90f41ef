"""GAN checkpoints: sample images (`dlcli infer`) and measure them offline (`dlcli eval --features`).

The quality numbers use a classifier trained by dlcli as the feature extractor (no Inception
weights here): the Fréchet distance between real and generated features from its penultimate
layer (FD), a classifier-based inception score (IS) and class coverage."""

from pathlib import Path

from dlcli.errors import ConfigError, DataError


def sample_images(model, num: int, seed: int | None, label: int | None, class_names: list[str], device):
    """num images in [0, 1] (and their labels); the same seed gives the same images."""
    import torch

    from dlcli.tasks.gan.images import generate

    if label is not None and not model.num_classes:
        raise ConfigError("--class: this GAN is not class-conditional (model.conditional: false)")
    if label is not None and not 0 <= label < model.num_classes:
        raise ConfigError(f"--class: expected 0..{model.num_classes - 1} (classes: {', '.join(class_names)})")
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed) if seed is not None else gen.seed()
    noise = torch.randn(num, model.latent_dim, generator=gen).to(device)
    labels = None
    if model.num_classes:
        labels = (torch.full((num,), label) if label is not None else torch.arange(num) % model.num_classes).to(device)
    return generate(model, noise, labels), labels


def penultimate_features(classifier, images, transform, device, batch_size: int = 512):
    """(features entering the classifier's last linear layer, class probabilities) for images in [0, 1]."""
    import torch
    from torch import nn

    from dlcli.compute import batched

    last = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ConfigError("--features: the classifier has no linear output layer to take features from")
    captured = []
    hook = last[-1].register_forward_hook(lambda module, args, out: captured.append(args[0].float().cpu()))

    def probabilities(rows):
        x = images[rows].to(device)
        return classifier(transform(x) if transform else x).float().softmax(1)

    try:
        probs = batched(classifier, probabilities, len(images), device, batch_size=batch_size)
    finally:
        hook.remove()
    return torch.cat(captured).double(), probs.double()


def frechet_distance(a, b) -> float:
    """|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) between two feature sets [N, D]."""
    import warnings

    import numpy as np
    from scipy import linalg

    mu_a, mu_b = a.mean(0).numpy(), b.mean(0).numpy()
    s_a, s_b = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    with warnings.catch_warnings():  # singular covariances (e.g. a collapsed generator) are expected here
        warnings.simplefilter("ignore")
        root, _ = linalg.sqrtm(s_a @ s_b, disp=False)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * root.real))


def inception_score(probs) -> float:
    """exp(E_x KL(p(y|x) || p(y))): high when each image is confidently one class and all classes occur."""
    marginal = probs.mean(0, keepdim=True)
    kl = (probs * ((probs + 1e-12).log() - (marginal + 1e-12).log())).sum(1)
    return float(kl.mean().exp())


def coverage(probs, num_classes: int) -> float:
    """Fraction of classes that at least one image is classified as."""
    return len(set(probs.argmax(1).tolist())) / num_classes


SAME_KIND = "use a classifier trained on images like the GAN's (sizes may differ: samples are resized)"


def fit_to(images, shape, source: str = "--features"):
    """Images [N, C, H, W] resized (bilinear, antialiased) to a classifier's input `shape` [C, H, W]; a
    channel count that differs is a DataError (resizing cannot make grey images colour)."""
    from torchvision.transforms.v2 import functional as TF

    if images.shape[1] != shape[0]:
        raise DataError(f"{source}: the classifier reads {shape[0]}-channel images; this GAN makes "
                        f"{images.shape[1]}-channel ones", hint=SAME_KIND)
    if list(images.shape[2:]) == list(shape[1:]):
        return images
    return TF.resize(images, list(shape[1:]), antialias=True).clamp(0, 1)


def check_features(features, gan_meta, source: str = "--features") -> None:
    """The features checkpoint must be an image classifier with the GAN's channel count."""
    path, clf_config, clf_meta, _ = features
    if clf_config.task != "classification" or len(clf_meta.input_shape) != 3:
        raise DataError(f"{source}: {path} must be an image classifier (it is a {clf_config.task} model "
                        f"for {clf_meta.input_shape} inputs)")
    if clf_meta.input_shape[0] != gan_meta.input_shape[0]:
        raise DataError(f"{source}: {path} reads {clf_meta.input_shape[0]}-channel images; this GAN makes "
                        f"{gan_meta.input_shape[0]}-channel ones", hint=SAME_KIND)


def scores(real, fake, features, device) -> dict:
    """FD, IS and class coverage of `fake` against `real` (images in [0, 1] at the GAN's size), with
    the features of `features` = (path, config, meta, model) of an image classifier; both sets are
    resized to the classifier's input first."""
    from dlcli.data.transforms import compose

    _, clf_config, clf_meta, classifier = features
    shape, transform = clf_meta.input_shape, compose(clf_config.data.eval_transforms)
    real_f, real_p = penultimate_features(classifier, fit_to(real, shape), transform, device)
    fake_f, fake_p = penultimate_features(classifier, fit_to(fake, shape), transform, device)
    half = len(real) // 2
    k = len(clf_meta.class_names)
    return {"fd": frechet_distance(real_f, fake_f),
            "fd_real_halves": frechet_distance(real_f[:half], real_f[half:]),
            "inception_score": inception_score(fake_p), "real_inception_score": inception_score(real_p),
            "class_coverage": coverage(fake_p, k), "real_class_coverage": coverage(real_p, k)}


def quality(model, gan_config, gan_meta, features, split: str, device, task) -> dict:
    """FD, IS and class coverage of generated images against real images of the GAN's dataset;
    `features`: (path, config, meta, model) of the classifier checkpoint, `task` the GAN's task class."""
    import torch

    from dlcli.data.pipeline import split_for_eval

    check_features(features, gan_meta)
    batches = split_for_eval(gan_config, gan_meta, split, torch.device("cpu"), task)
    real = torch.cat([b.x.cpu() for b in batches])
    fake, _ = sample_images(model, len(real), 0, None, gan_meta.class_names, device)
    return scores(real, fake, features, device)


def measure(model, val_batches, features, samples: int, device) -> dict:
    """gan_eval during training: `samples` validation images (the first ones, the same each time)
    against as many images from a fixed noise seed; draws from no global random stream."""
    import torch

    real, count = [], 0
    for batch in val_batches:
        real.append(batch.x.float().cpu())
        count += len(batch.x)
        if count >= samples:
            break
    real_images = torch.cat(real)[:samples]
    fake, _ = sample_images(model, len(real_images), 0, None, [], device)
    return scores(real_images, fake, features, device)


def write_samples(images, output: str | None, output_dir: str | None) -> list[str]:
    from dlcli.tasks.gan.images import save_each, save_grid

    if output_dir:
        return save_each(images, Path(output_dir))
    if not output or not output.lower().endswith(".png"):
        raise ConfigError(f"--output: a GAN writes a .png grid (or use --output-dir) (got {output!r})")
    save_grid(images, Path(output))
    return [output]
