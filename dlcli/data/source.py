"""What a dataset builder returns: in-memory tensors or a file-backed torch Dataset."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Source:
    """One split of a dataset.

    In-memory sources hold `x` and `y`; file-backed ones hold `dataset`, a torch Dataset yielding
    (float CHW image, label). Positional data (a text, a time series) arrives as a `stream` and
    text documents as `texts`: both are split and encoded into `x`/`y` by the pipeline, because
    the vocabulary and normalisation must come from the training split alone.
    """

    y: Any  # int64 class indices; LM: int64 next tokens; forecasting/regression: float values; multilabel: 0/1 floats
    class_names: list[str]
    # What `x` holds once prepared: "image" uint8/float [N, C, H, W]; "tabular" float features [N, F];
    # "sequence" float vectors per step [N, T, F]; "tokens" LM windows [N, seq_len]; "text" padded ids
    # [N, L] with lengths; "series" input windows [N, window, F] (y: the next `horizon` values).
    kind: str
    x: Any = None
    dataset: Any = None
    weights: Any = None  # float tensor of per-sample weights, or None
    feature_names: list[str] = field(default_factory=list)
    lengths: Any = None  # int64 valid lengths of padded token sequences ("text")
    stream: Any = None  # list of tokens ("tokens") or float tensor [L, F] ("series"), before windowing
    segments: Any = None  # "series" with an id column: the rows of each series, one after another (lengths)
    texts: Any = None  # list of token lists ("text"), before encoding
    options: dict = field(default_factory=dict)  # windowing/tokenising settings from the dataset config
    table: Any = None  # tabular: categorical column -> its values (strings), before encoding
    unknown: Any = None  # tabular, once encoded: column -> values the training split did not have
    stored: Any = None  # images read from the image cache: how they were stored (image_store.store_spec)
    skipped: list = field(default_factory=list)  # cached images left out as unreadable (data.skip_bad_images)

    def __len__(self) -> int:
        if self.stream is not None:
            return len(self.stream)
        return len(self.y)

    @property
    def in_memory(self) -> bool:
        return self.x is not None
