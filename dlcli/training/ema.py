"""Weight EMA (`train.ema`), as timm's ModelEmaV3 and Keras' `use_ema`: a copy of the model whose
weights are an exponential moving average of the trained ones, updated after optimizer steps.
Validation, best.pt and every checkpoint's `model` section (so eval, infer and export) use the
average; a checkpoint keeps the trained weights too (`train_model`), which a resume continues from.

After step t (every `every_n_steps` steps): ema = decay * ema + (1 - decay) * weights; during the
first `warmup_steps` steps the copy follows the weights exactly (early weights are not worth
remembering). Float buffers (batch-norm statistics) are averaged like weights; others are copied."""


class WeightEma:
    def __init__(self, model, decay: float, warmup_steps: int, every_n_steps: int):
        import copy

        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)
        self.decay, self.warmup_steps, self.every_n_steps = decay, warmup_steps, every_n_steps
        self.pairs: tuple | None = None  # (averaged floats, trained floats, [(averaged, trained) others])

    def update(self, model, step: int) -> None:
        """After optimizer step `step` of `model` (the trained one)."""
        import torch

        if step % self.every_n_steps:
            return
        averaged, trained, others = self._pairs(model)
        with torch.no_grad():
            if step <= self.warmup_steps:
                torch._foreach_copy_(averaged, trained)
            else:
                torch._foreach_lerp_(averaged, trained, 1 - self.decay)
            for mine, theirs in others:
                mine.copy_(theirs)

    def _pairs(self, model) -> tuple:
        """The two models' tensors, matched once: state_dict's tensors share the parameters' and
        buffers' storage, which loading and training change in place, never replace."""
        if self.pairs is None:
            averaged, trained = self.model.state_dict(), model.state_dict()
            floats = [name for name, value in averaged.items() if value.is_floating_point()]
            self.pairs = ([averaged[n] for n in floats], [trained[n] for n in floats],
                          [(averaged[n], trained[n]) for n in averaged if n not in set(floats)])
        return self.pairs

    def describe(self) -> dict:
        return {"decay": self.decay, "warmup_steps": self.warmup_steps, "every_n_steps": self.every_n_steps}
