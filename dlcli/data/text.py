"""Text -> tokens -> ids. The vocabulary comes from the training split only and is saved in the
checkpoint, so eval/infer encode new text exactly as training did; unseen tokens become <unk>."""

import re
import sys
from collections import Counter
from contextlib import contextmanager

from dlcli.data.folders import regular_file
from dlcli.errors import DataError

PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1 in every vocabulary
EOS = "<eos>"  # level whitespace: the end of each line, as the PyTorch word_language_model example
_WORD = re.compile(r"\w+|[^\w\s]")  # words and single punctuation marks


def tokenize(text: str, level: str, lowercase: bool = False) -> list[str]:
    """Characters, words (punctuation split off) or whitespace-separated tokens with <eos> at each
    line end. Words are interned: a large corpus repeats a few thousand words millions of times, and
    one shared string per word (8 bytes a token, not ~60) keeps its token lists small."""
    if lowercase:
        text = text.lower()
    if level == "char":
        return list(text)
    if level == "whitespace":
        lines = text.split("\n")
        tokens: list[str] = []
        for i, line in enumerate(lines):
            tokens += map(sys.intern, line.split())
            if i < len(lines) - 1:
                tokens.append(EOS)
        return tokens
    return list(map(sys.intern, _WORD.findall(text)))


def detokenize(tokens: list[str], level: str) -> str:
    if level == "char":
        return "".join(tokens)
    if level == "whitespace":
        lines: list[list[str]] = [[]]
        for token in tokens:
            lines.append([]) if token == EOS else lines[-1].append(token)
        return "\n".join(" ".join(line) for line in lines)
    return " ".join(tokens)


def build_vocab(documents, min_freq: int = 1, max_size: int | None = None) -> list[str]:
    """<pad>, <unk>, then tokens by falling frequency (ties in first-seen order, so it is repeatable)."""
    counts: Counter[str] = Counter()
    for tokens in documents:
        counts.update(tokens)
    kept = [t for t, c in counts.most_common() if c >= min_freq and t not in (PAD, UNK)]
    return [PAD, UNK] + kept[:max_size]


def encode(tokens: list[str], index: dict[str, int]) -> list[int]:
    return [index.get(t, 1) for t in tokens]


@contextmanager
def text_stream(path, encoding: str = "utf-8", hint: str = "save the file as UTF-8", newline: str | None = None):
    """The file opened as a text stream (read it line by line: large files are never held whole); a
    file that cannot be opened, read or decoded, also midway, is a DataError naming it (and the line)."""
    try:
        with open(path, encoding=encoding, newline=newline) as handle:
            yield handle
    except UnicodeDecodeError:
        name = "UTF-8" if encoding.lower().replace("_", "-").startswith("utf-8") else encoding
        line, byte = _first_undecodable(path, encoding)
        raise DataError(f"{path}:{line}: not valid {name} text (byte {byte}); {hint}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the file: {err.strerror or err}") from None


def _first_undecodable(path, encoding: str) -> tuple[int, int]:
    """(line, byte offset) of the first byte `encoding` cannot decode: a stream decodes in chunks, so
    its error's offset is relative to one chunk."""
    import codecs

    # a UTF-8 BOM is valid UTF-8, so plain UTF-8 finds the same offsets as utf-8-sig
    decoder = codecs.getincrementaldecoder("utf-8" if "sig" in encoding.lower() else encoding)()
    offset, lines = 0, 1
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(1 << 20)
            pending = len(decoder.getstate()[0])  # undecoded bytes the decoder carries from the last chunk
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                inside = max(0, err.start - pending)  # the bad byte may be one carried over
                return lines + chunk[:inside].count(b"\n"), offset + err.start - pending
            if not chunk:
                return lines, offset
            offset, lines = offset + len(chunk), lines + chunk.count(b"\n")


def decoded_text(path, encoding: str = "utf-8", hint: str = "save the file as UTF-8") -> str:
    """A file's whole text; a file that cannot be read or decoded is a DataError naming it."""
    with text_stream(path, encoding, hint) as handle:
        return handle.read()


def read_text(path: str, encoding: str = "utf-8") -> str:
    """The whole file; clear errors for a missing, unreadable, non-regular (a FIFO) or empty file."""
    file = regular_file(path, "text file")
    text = decoded_text(file, encoding, hint="set data.dataset.encoding to the file's encoding")
    if not text.strip():
        raise DataError(f"{path}: the text file is empty")
    return text
