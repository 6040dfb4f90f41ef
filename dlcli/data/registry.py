"""The data registries. Datasets: each registers in the module that reads it (datasets.py: the
bundled and torchvision ones; tabular.py: csv; files.py: image_folder; sequences.py: texts and
series); importing dlcli.data.datasets registers them all."""

from dlcli.registry import Registry

DATASETS = Registry("dataset")
# Tags say what kind of data a dataset holds; a task names the kinds it reads (Task.reads):
# image, tabular (a table), label_sets (several 0/1 labels per sample), sequence (rows read in
# order), token_stream (running text), labelled_texts (texts with a label each), series (time
# series); reads_tokens: its samples are token ids, which only embedding models take.

# Preprocessing and augmentation: transforms.py registers the deterministic and batched ones,
# augment.py the per-image random ones (transforms.py imports it, so importing either registers all).
TRANSFORMS = Registry("transform")
