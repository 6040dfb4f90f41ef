"""What each task means at config time (no torch here): which datasets feed it, which metrics it
produces, its default loss. The torch-side task objects live in classify.py, language_model.py
and forecast.py and are built by `build.build_task`."""

TASKS = ("classification", "language_model", "forecasting")

# Datasets whose samples only make sense for one task; every other dataset is for classification.
DATASET_TASK = {"text": "language_model", "timeseries": "forecasting", "sine": "forecasting"}
# Datasets that yield token ids: only a recurrent model with an embedding can read them.
TOKEN_DATASETS = {"text", "text_classification"}
RECURRENT_MODELS = {"lstm", "gru", "rnn"}

DEFAULT_LOSS = {"classification": "cross_entropy", "language_model": "cross_entropy", "forecasting": "mse"}
ALLOWED_LOSSES = {"language_model": {"cross_entropy", "nll"}, "forecasting": {"mse", "l1", "huber"}}


def task_for_dataset(dataset_name) -> str:
    return DATASET_TASK.get(dataset_name, "classification")


def known_metrics(task: str, has_val: bool, num_classes: int | None = None) -> list[str]:
    """Metric names a run of `task` produces (val/top5 only with more than 5 classes, unknown
    until the data is read)."""
    if task == "language_model":
        train, val = ["train/loss", "train/acc", "train/perplexity"], ["val/loss", "val/acc", "val/perplexity"]
    elif task == "forecasting":
        train, val = ["train/loss"], ["val/loss", "val/mae", "val/rmse", "val/naive_mae"]
    else:
        train = ["train/loss", "train/acc"]
        val = ["val/loss", "val/acc", "val/f1"] + (["val/top5"] if num_classes is None or num_classes > 5 else [])
    return train + (val if has_val else []) + ["lr"]
