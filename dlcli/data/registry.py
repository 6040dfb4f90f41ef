"""The dataset registry (datasets.py and sequences.py register into it; datasets.py imports both)."""

from dlcli.registry import Registry

DATASETS = Registry("dataset")
# Tags: the tasks a dataset feeds (the first is its default task), then what its samples are.
IMAGE_TASKS = ("classification", "gan", "image")
