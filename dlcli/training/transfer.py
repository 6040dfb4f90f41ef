"""Transfer learning at train time: the weights' own preprocessing, `init_from`, and `train.freeze`.

Frozen parameters stay in the optimizer (built over every parameter) but get no gradient
(requires_grad False), so torch's optimizers skip them; when `train.unfreeze_at_epoch` comes they
get gradients and start training with fresh optimizer state. Which parameters are frozen is a
function of the epoch alone, so a resume (even mid-epoch) re-derives it exactly; the checkpoint
also records the frozen names (position.frozen) for inspection.
"""

from dataclasses import dataclass, field

from dlcli.components.models.notes import note
from dlcli.errors import ConfigError


def follow_weights_preprocessing(config) -> None:
    """With torchvision weight names and no data.eval_transforms, eval (and, when it has none, training)
    preprocesses as the weights were trained: resize, centre crop, their normalization. Written into
    the config, so the run's config.yaml and its checkpoints carry it to eval, infer and export."""
    from dlcli.components.models import MODELS
    from dlcli.components.models.pretrained import preprocessing
    from dlcli.data.transforms import TRANSFORMS

    weights = config.model.get("weights")
    if not weights or not MODELS.has_tag(config.model["name"], "torchvision") or config.data.eval_transforms:
        return
    found = preprocessing(config.model["name"], weights)
    if found is None:
        return
    from dlcli.data.transforms import NORMALIZE_PRESETS, normalizers

    resize, crop, mean, std = found
    normalize = {"preset": "imagenet"} if (mean, std) == NORMALIZE_PRESETS["imagenet"] else {"mean": mean, "std": std}
    specs = [TRANSFORMS.validate(spec, "data.eval_transforms") for spec in
             ({"name": "resize", "size": resize}, {"name": "center_crop", "size": crop},
              {"name": "normalize", **normalize})]
    if config.data.train_transforms and normalizers(config.data.train_transforms) != normalizers(specs):
        raise ConfigError(f"data.eval_transforms: not given, so eval would follow the preprocessing of the "
                          f"{weights} weights (normalize {_normalize_text(specs[-1])}), which data.train_transforms "
                          f"does not use; give data.eval_transforms too, with the training normalize")
    config.data.eval_transforms = specs
    if not config.data.train_transforms:
        config.data.train_transforms = [dict(spec) for spec in specs]
    note(f"data.eval_transforms follow the preprocessing of {config.model['name']} weights {weights}: "
         f"resize {specs[0]['size']}, center_crop {specs[1]['size']}, normalize")


def _normalize_text(spec: dict) -> str:
    return spec["preset"] or f"mean {spec['mean']} std {spec['std']}"


def init_from(model, config, num_classes: int) -> None:
    """`init_from: CKPT`: start from another dlcli checkpoint's weights (the classifier head is
    re-created when the class count differs)."""
    from dlcli.components.models.pretrained import load_into
    from dlcli.training.checkpoint import load_for_inference

    payload, path = load_for_inference(config.init_from)
    load_into(model, payload["model"], num_classes, f"init_from {path}")
    note(f"init_from: weights from {path}")


@dataclass
class Freeze:
    """train.freeze: the names of the parameters the patterns match, frozen until `until` (an epoch)."""

    names: frozenset[str]
    until: int | None = None
    frozen: frozenset[str] = field(default_factory=frozenset)  # what is frozen now

    @classmethod
    def from_config(cls, config, model) -> "Freeze | None":
        """None without train.freeze; a pattern that matches nothing is a ConfigError."""
        from dlcli.components.names import match_groups

        patterns = config.train.freeze
        if not patterns:
            return None
        named = list(model.named_parameters())
        picked, _ = match_groups(named, patterns, "train.freeze")
        ids = {id(p) for params in picked for p in params}
        names = frozenset(name for name, p in named if id(p) in ids)
        for pattern, params in zip(patterns, picked):
            note(f"train.freeze {pattern!r}: {len(params)} parameter tensors ({sum(p.numel() for p in params):,} "
                 f"values)")
        if len(names) == len(named):
            raise ConfigError(f"train.freeze: the patterns freeze every parameter ({len(named)} of {len(named)}); "
                              f"nothing would train (leave the head out, e.g. '(?!fc\\.)')")
        until = config.train.unfreeze_at_epoch
        note(f"train.freeze: {len(names)} of {len(named)} parameter tensors frozen"
             + (f" until epoch {until}" if until else ""))
        return cls(names, until)

    def frozen_at(self, epoch: int) -> frozenset[str]:
        return self.names if self.until is None or epoch < self.until else frozenset()

    def apply(self, model, epoch: int) -> bool:
        """Set gradients on or off for `epoch` and put frozen batch norms in eval mode (call after
        model.train()); True when the frozen set changed."""
        wanted = self.frozen_at(epoch)
        for name, param in model.named_parameters():
            param.requires_grad_(name not in wanted)
        if wanted:
            _frozen_norms_eval(model)
        changed = wanted != self.frozen
        self.frozen = wanted
        return changed


def _frozen_norms_eval(model) -> None:
    """Batch norms whose parameters are all frozen keep their running statistics (eval mode)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if isinstance(module, _BatchNorm) and params and not any(p.requires_grad for p in params):
            module.eval()


