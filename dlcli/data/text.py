"""Text -> tokens -> ids. The vocabulary comes from the training split only and is saved in the
checkpoint, so eval/infer encode new text exactly as training did; unseen tokens become <unk>."""

import re
from collections import Counter
from pathlib import Path

from dlcli.errors import DataError

PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1 in every vocabulary
_WORD = re.compile(r"\w+|[^\w\s]")  # words and single punctuation marks


def tokenize(text: str, level: str, lowercase: bool = False) -> list[str]:
    if lowercase:
        text = text.lower()
    return list(text) if level == "char" else _WORD.findall(text)


def detokenize(tokens: list[str], level: str) -> str:
    return "".join(tokens) if level == "char" else " ".join(tokens)


def build_vocab(documents, min_freq: int = 1, max_size: int | None = None) -> list[str]:
    """<pad>, <unk>, then tokens by falling frequency (ties in first-seen order, so it is repeatable)."""
    counts: Counter[str] = Counter()
    for tokens in documents:
        counts.update(tokens)
    kept = [t for t, c in counts.most_common() if c >= min_freq and t not in (PAD, UNK)]
    return [PAD, UNK] + kept[:max_size]


def encode(tokens: list[str], index: dict[str, int]) -> list[int]:
    return [index.get(t, 1) for t in tokens]


def decoded_text(path, encoding: str = "utf-8", hint: str = "save the file as UTF-8",
                 newline: str | None = None) -> str:
    """A file's whole text; a file that cannot be read or decoded is a DataError naming it."""
    try:
        with open(path, encoding=encoding, newline=newline) as handle:
            return handle.read()
    except UnicodeDecodeError as err:
        name = "UTF-8" if encoding.lower().startswith("utf-8") else encoding
        raise DataError(f"{path}: not valid {name} text (byte {err.start}); {hint}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the file: {err.strerror or err}") from None


def read_text(path: str, encoding: str = "utf-8") -> str:
    """The whole file; clear errors for a missing, unreadable or empty file."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"text file not found: {file.resolve()}")
    text = decoded_text(file, encoding, hint="set data.dataset.encoding to the file's encoding")
    if not text.strip():
        raise DataError(f"{path}: the text file is empty")
    return text
