"""Adversarial training on the shared engine: the GAN task brings its own step (a discriminator
step, and every `n_critic` of them a generator step) built from the engine's backward/apply_step,
so mixed precision, clipping, schedules, checkpoints and resume work as for classifiers.

Real images arrive in [0, 1] and are mapped to [-1, 1], the generator's tanh range."""

import contextlib
from typing import Any

from dlcli.errors import ConfigError
from dlcli.registry import did_you_mean
from dlcli.tasks.base import Task
from dlcli.tasks.gan.metrics import QUALITY, GANMetrics
from dlcli.tasks.registry import register_task

# The DCGAN recipe: Adam with beta1 = 0.5, for both networks.
GAN_OPTIMIZER = {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999]}
GAN_NETS = ("generator", "discriminator")


class Pair:
    """Generator and discriminator objects (optimizers, schedules, scalers) behind the single-object
    interface the trainer and checkpoints use."""

    def __init__(self, generator, discriminator):
        self.generator, self.discriminator = generator, discriminator

    def state_dict(self) -> dict:
        return {name: part.state_dict() if part is not None else None for name, part in self._parts()}

    def load_state_dict(self, state: dict) -> None:
        for name, part in self._parts():
            if part is not None:
                part.load_state_dict(state[name])

    def after_epoch(self, metrics: dict) -> None:  # schedules: plateau decay, per-epoch bookkeeping
        for _, part in self._parts():
            if part is not None:
                part.after_epoch(metrics)

    @property
    def param_groups(self):  # the logged `lr` is the generator's
        return self.generator.param_groups

    def _parts(self):
        return (("generator", self.generator), ("discriminator", self.discriminator))


@register_task
class GANTask(Task):
    name = "gan"
    summary = "image generation: a generator and a discriminator (model gan, image datasets)"
    default_loss = "gan_bce"
    losses = ("gan_bce", "gan_hinge", "wgan_gp")
    reads = ("image",)
    models = ("gan",)
    metrics_class = GANMetrics
    own_step = True
    networks = GAN_NETS
    eval_options = frozenset({"features"})

    def __init__(self, adversarial, conditional: bool, gan_eval=None):
        self.adv, self.conditional, self.gan_eval = adversarial, conditional, gan_eval
        self.features = None  # gan_eval's classifier, (path, config, meta, model), set by the trainer's builder
        # Discriminator steps over the whole run (saved in checkpoints): the generator steps on every
        # n_critic-th, counted across epoch boundaries so no generator step is lost to a short epoch.
        self.d_steps = 0

    @classmethod
    def default_optimizer(cls) -> dict:
        return {net: GAN_OPTIMIZER for net in GAN_NETS}

    @classmethod
    def default_monitor(cls, config) -> str:
        """val/fd with gan_eval; else no metric (best.pt is the last epoch): the losses of a GAN
        are a two-player game's, and a lower one says little about the images."""
        return "val/fd" if config.gan_eval is not None else "last"

    @classmethod
    def dataset_mismatch(cls, dataset: str) -> str | None:
        return (f"data.dataset.name: a GAN generates images; {dataset!r} is not an image dataset "
                f"(use one of {', '.join(cls.datasets())})")

    @classmethod
    def problems(cls, config) -> list[str]:
        from dlcli.data.transforms import normalizers

        problems = []
        if config.train.accumulate != 1:
            problems.append("train.accumulate: gradient accumulation is not supported for GANs; set 1")
        if config.train.l1:
            problems.append("train.l1: the L1 penalty is not supported for GANs; set 0")
        if config.gan_eval is not None and config.data.val_split == 0:
            problems.append("gan_eval: measures generated images against held-out ones; set data.val_split > 0")
        for section in ("train_transforms", "eval_transforms"):
            if normalizers(getattr(config.data, section)):
                problems.append(f"data.{section}: a GAN sees images in [-1, 1] (dlcli maps [0, 1] there itself); "
                                f"remove normalize")
        return problems

    @staticmethod
    def section_problems(key: str, spec: dict) -> list[str]:
        """A GAN's optimizer (and scheduler) is one spec for both networks, or one per network."""
        problems = [f"{key}.{extra}: unknown key{did_you_mean(extra, GAN_NETS)}; a GAN takes "
                    f"{key}.generator and {key}.discriminator, or one {key} for both"
                    for extra in sorted(set(spec) - set(GAN_NETS))]
        if key == "optimizer":
            problems += [f"optimizer.{net}: required key is missing" for net in GAN_NETS if spec.get(net) is None]
        return problems

    @classmethod
    def create(cls, config, meta, loss_fn):
        return cls(loss_fn, config.model["conditional"], config.gan_eval)

    def build_optimization(self, config, model, batches: int, device, precision: str):
        """One optimizer, schedule and GradScaler per network (the generator steps every n_critic batches)."""
        import torch

        from dlcli.components.optim.optimizers import OPTIMIZERS
        from dlcli.components.optim.schedulers import SCHEDULERS

        parts = {}
        # The generator steps on every n_critic-th batch of the whole run: batches / n_critic per epoch.
        for net, steps in (("generator", batches / self.adv.n_critic), ("discriminator", batches)):
            optimizer = OPTIMIZERS.build(config.optimizer[net], getattr(model, net))
            spec = (config.scheduler or {}).get(net)
            schedule = (SCHEDULERS.build(self.resolve_mode(spec), optimizer, steps, config.train.epochs)
                        if spec else None)
            parts[net] = (optimizer, schedule, torch.amp.GradScaler(device.type, enabled=precision == "fp16"))
        g, d = parts["generator"], parts["discriminator"]
        schedule = Pair(g[1], d[1]) if g[1] or d[1] else None
        return Pair(g[0], d[0]), schedule, Pair(g[2], d[2])

    @staticmethod
    def infer_options(meta) -> set[str]:
        return {"seed", "label", "num", "output_dir"}

    def infer(self, model, config, meta, inputs, options, device, precision):
        from dlcli.tasks.gan.quality import sample_images, write_samples

        if inputs:
            raise ConfigError("a GAN takes no input files; use --num, --seed, --class and --output grid.png")
        images, labels = sample_images(model, options.get("num") or 64, options.get("seed"), options.get("label"),
                                       meta.class_names, device)
        files = write_samples(images, options.get("output"), options.get("output_dir"))
        return "images", {"images": len(images), "files": files, "seed": options.get("seed"),
                          "classes": None if labels is None else [meta.class_names[i] for i in labels.tolist()]}

    def eval_report(self, metrics, meta, context: dict) -> dict:
        """A sample grid next to the run's other samples; with --features, FD / IS / coverage."""
        from pathlib import Path

        from dlcli.tasks.gan.images import save_grid
        from dlcli.tasks.gan.quality import quality, sample_images

        model, split, device = context["model"], context["split"], context["device"]
        folder = Path(context["path"]).resolve()
        folder = folder if folder.is_dir() else folder.parent  # a run directory, or a checkpoint inside one
        folder = folder / "checkpoints" if (folder / "checkpoints").is_dir() else folder
        folder = folder.parent / "samples" if folder.name == "checkpoints" else folder
        grid = folder / f"eval_{split}.png"
        images, _ = sample_images(model, 64, 0, None, meta.class_names, device)
        save_grid(images, grid)
        out: dict[str, Any] = {"samples_grid": str(grid)}
        if context.get("features"):  # reported with the losses, under metrics
            out["metrics"] = quality(model, context["config"], meta, context["features"], split, device, type(self))
        return out

    def epoch_metrics(self, trainer, epoch: int) -> dict:
        """gan_eval: FD, IS and class coverage of a fixed noise batch against the first `samples`
        validation images, every `every` epochs and at the last; NaN in between (never a best)."""
        if self.gan_eval is None:
            return {}
        if epoch % self.gan_eval.every and epoch != trainer.config.train.epochs:
            return {f"val/{name}": float("nan") for name in QUALITY}
        from dlcli.tasks.gan.quality import measure

        values = measure(trainer.model, trainer.val_batches, self.features, self.gan_eval.samples, trainer.device)
        return {f"val/{name}": values[name] for name in QUALITY}

    @staticmethod
    def export_input(meta, model, generator):
        """The generator is what a GAN exports: noise in, images out."""
        import torch

        if model.num_classes:
            raise ConfigError("export: conditional GAN generators (noise + label inputs) are not supported yet")
        return torch.randn(4, model.latent_dim, generator=generator)

    def state_dict(self) -> dict:
        return {"d_steps": self.d_steps}

    def load_state_dict(self, state: dict) -> None:
        self.d_steps = state.get("d_steps", 0)

    def metrics(self, device, full: bool = True):
        return GANMetrics(device)

    def _inputs(self, model, batch):
        real = batch.x * 2 - 1
        labels = batch.y if self.conditional else None
        z = _noise(real.shape[0], model.latent_dim, real.device)
        return real, labels, z

    def loss(self, model, batch):
        """Evaluation: both losses on real images and fresh noise (no gradient penalty, no updates)."""
        real, labels, z = self._inputs(model, batch)
        real_s, fake_s = model.discriminator(real, labels), model.discriminator(model.generator(z, labels), labels)
        d_loss, g_loss = self.adv.discriminator(real_s, fake_s), self.adv.generator(fake_s)
        return d_loss + g_loss, self._outputs(d_loss, g_loss, real_s, fake_s)

    def train_step(self, trainer, batch, metrics) -> bool:
        """One discriminator step; every n_critic-th also a generator step."""
        import torch

        from dlcli.compute import autocast
        from dlcli.ranks import is_distributed

        model, opt, scaler, sched = trainer.model, trainer.optimizer, trainer.scaler, trainer.schedule
        nets = trainer.forward_model or model  # DDP wrappers and/or compiled networks, or the model
        shared = not is_distributed()  # one process: the generator step reuses the discriminator step's fakes
        reused = shared and (self.d_steps + 1) % self.adv.n_critic == 0  # a generator step follows this one
        real, labels, z = self._inputs(model, batch)
        with autocast(trainer.device, trainer.precision):
            with torch.no_grad() if not reused else contextlib.nullcontext():  # no graph nobody backpropagates
                fake = (nets if shared else model).generator(z, labels)
            real_s, fake_s = nets.discriminator(real, labels), nets.discriminator(fake.detach(), labels)
            d_loss = self.adv.discriminator(real_s, fake_s)
            d_total = d_loss + self.adv.gradient_penalty(model.discriminator, real, fake, labels)
        if trainer.skip_bad_batch(d_total):
            trainer.state.skipped_batches += 1
            return False
        trainer.backward(d_total, scaler.discriminator)
        trainer.apply_step(opt.discriminator, scaler.discriminator, sched and sched.discriminator,
                           model.discriminator.parameters())
        self.d_steps += 1
        g_loss = None
        if self.d_steps % self.adv.n_critic == 0:
            with autocast(trainer.device, trainer.precision):
                if not shared:  # under DDP the generator's forward must run through its wrapper
                    fake = nets.generator(z, labels)
                g_loss = self.adv.generator(nets.discriminator(fake, labels))
            trainer.backward(g_loss, scaler.generator)
            trainer.apply_step(opt.generator, scaler.generator, sched and sched.generator,
                               model.generator.parameters())
            opt.discriminator.zero_grad(set_to_none=True)  # the generator's backward reached D's weights
        metrics.update(d_total, self._outputs(d_loss, g_loss, real_s, fake_s), batch)
        trainer.state.step += 1
        return True

    def _outputs(self, d_loss, g_loss, real_s, fake_s) -> dict:
        return {"d_loss": d_loss.detach(), "g_loss": None if g_loss is None else g_loss.detach(),
                "d_real": self.adv.probability(real_s.detach().float()).mean(),
                "d_fake": self.adv.probability(fake_s.detach().float()).mean()}

    def epoch_artifacts(self, model, run_path, epoch: int, train_batches=None) -> dict:
        """The fixed-noise sample grid of this epoch (and, once, a grid of real training images)."""
        from dlcli.tasks.gan.images import first_images, generate, save_grid

        folder = run_path / "samples"
        real = first_images(train_batches) if not (folder / "real.png").exists() else None
        if real is not None:
            save_grid(real, folder / "real.png")
        path = folder / f"epoch_{epoch:03d}.png"
        labels = model.fixed_labels if self.conditional else None
        save_grid(generate(model, model.fixed_noise, labels), path)
        return {"samples": str(path)}


def _noise(n: int, latent_dim: int, device):
    import torch

    return torch.randn(n, latent_dim, device=device)

