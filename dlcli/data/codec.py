"""Text <-> ids as a checkpoint's data description says: characters, words or whitespace tokens
through the vocabulary, or subwords through the BPE tokenizer kept in the checkpoint."""

from dlcli.data import subwords
from dlcli.data.text import detokenize, encode, tokenize


def text_ids(text: str, sequence: dict, vocab: list[str]) -> tuple[list[int], list[str]]:
    """(ids, tokens read as <unk>) of a text, encoded as the training data was (`sequence`: the
    checkpoint's tokenising settings, with the BPE tokenizer's JSON for level bpe)."""
    if sequence["level"] == "bpe":
        return subwords.encode(sequence["tokenizer"], text), []
    tokens = tokenize(text, sequence["level"], sequence.get("lowercase", False))
    ids = encode(tokens, {t: i for i, t in enumerate(vocab)})
    return ids, sorted({t for t, i in zip(tokens, ids) if i == 1})


def ids_text(ids: list[int], sequence: dict, vocab: list[str]) -> str:
    """The text of token ids (the inverse of text_ids, up to whitespace for word levels)."""
    if sequence["level"] == "bpe":
        return subwords.decode(sequence["tokenizer"], ids)
    return detokenize([vocab[i] for i in ids], sequence["level"])
