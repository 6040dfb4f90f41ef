"""What a dataset builder returns: in-memory tensors or a file-backed torch Dataset."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Source:
    """One split of a dataset.

    In-memory sources hold `x` (uint8 images scaled on the fly, or float features) and `y`;
    file-backed ones hold `dataset`, a torch Dataset yielding (float CHW image, label).
    """

    y: Any  # int64 tensor of class indices
    class_names: list[str]
    kind: str  # "image" or "tabular"
    x: Any = None
    dataset: Any = None
    weights: Any = None  # float tensor of per-sample weights, or None
    feature_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def in_memory(self) -> bool:
        return self.x is not None
