"""What each task means at config time (no torch here): which datasets feed it, which metrics it
produces, its default loss. The torch-side task objects live in classify.py, language_model.py
and forecast.py and are built by `build.build_task`."""

TASKS = ("classification", "language_model", "forecasting", "gan")

# Datasets whose samples only make sense for one task; every other dataset is for classification.
DATASET_TASK = {"text": "language_model", "timeseries": "forecasting", "sine": "forecasting"}
# Datasets that yield token ids: only a recurrent model with an embedding can read them.
TOKEN_DATASETS = {"text", "text_classification"}
RECURRENT_MODELS = {"lstm", "gru", "rnn"}
IMAGE_DATASETS = {"digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder", "synthetic"}
GAN_LOSSES = {"gan_bce", "gan_hinge", "wgan_gp"}

DEFAULT_LOSS = {"classification": "cross_entropy", "language_model": "cross_entropy", "forecasting": "mse",
                "gan": "gan_bce"}
ALLOWED_LOSSES = {"language_model": {"cross_entropy", "nll"}, "forecasting": {"mse", "l1", "huber"},
                  "gan": GAN_LOSSES}
# The DCGAN recipe: Adam with beta1 = 0.5, for both networks.
GAN_OPTIMIZER = {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999]}
GAN_NETS = ("generator", "discriminator")


def task_for_dataset(dataset_name) -> str:
    return DATASET_TASK.get(dataset_name, "classification")


def task_of(data: dict) -> str:
    """The task of a raw (not yet validated) config: given, or the gan model's, or the dataset's."""
    task = data.get("task")
    if isinstance(task, str):
        return task
    model = data.get("model")
    if isinstance(model, dict) and model.get("name") == "gan":
        return "gan"
    dataset = (data.get("data") or {}).get("dataset") if isinstance(data.get("data"), dict) else None
    name = dataset.get("name") if isinstance(dataset, dict) else None
    return task_for_dataset(name if isinstance(name, str) else None)


def known_metrics(task: str, has_val: bool, num_classes: int | None = None) -> list[str]:
    """Metric names a run of `task` produces (val/top5 only with more than 5 classes, unknown
    until the data is read)."""
    if task == "language_model":
        train, val = ["train/loss", "train/acc", "train/perplexity"], ["val/loss", "val/acc", "val/perplexity"]
    elif task == "forecasting":
        train, val = ["train/loss"], ["val/loss", "val/mae", "val/rmse", "val/naive_mae"]
    elif task == "gan":
        names = ["loss", "d_loss", "g_loss", "d_real", "d_fake"]
        train, val = [f"train/{n}" for n in names], [f"val/{n}" for n in names]
    else:
        train = ["train/loss", "train/acc"]
        val = ["val/loss", "val/acc", "val/f1"] + (["val/top5"] if num_classes is None or num_classes > 5 else [])
    return train + (val if has_val else []) + ["lr"]
