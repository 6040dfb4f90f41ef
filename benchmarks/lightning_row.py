"""PyTorch Lightning's figure for an image model, when `lightning` is installed: the same model
(a fresh copy), data, batch, optimizer and precision, fed the way Lightning users do, by a
DataLoader with workers and pinned memory. Imported only when lightning is present."""

import statistics
import time

import torch
import torch.nn.functional as F


def lightning_samples_per_s(model, x, y, batch: int, device, precision: str, epochs: int, workers: int,
                            mean, std) -> float:
    import logging
    import warnings

    import lightning as L

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no banner lines between the rows
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # --workers above the core count

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = model

        def training_step(self, data, _):
            images, labels = data
            return F.cross_entropy(self.net((images.float() / 255 - mean) / std), labels)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3, **({"fused": True} if device.type == "cuda" else {}))

    class EpochTimes(L.Callback):
        def __init__(self):
            self.times, self.start = [], 0.0

        def on_train_epoch_start(self, trainer, module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.start)

    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x.cpu(), y.cpu()), batch_size=batch, shuffle=True, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    timer = EpochTimes()
    trainer = L.Trainer(max_epochs=epochs + 1, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                        precision={"bf16": "bf16-mixed", "fp16": "16-mixed"}.get(precision, "32-true"),
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer])
    trainer.fit(Module(), loader)
    return len(y) / statistics.median(timer.times[1:])  # the first epoch is warm-up
