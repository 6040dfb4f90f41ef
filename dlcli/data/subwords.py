"""Byte-pair encoding with the Hugging Face `tokenizers` library: trained on the training split only,
offline, and kept in the checkpoint as the tokenizer's own JSON, so eval and infer encode exactly as
training did. Byte-level: every text encodes (no <unk>), and decoding gives the text back."""

from functools import lru_cache

from dlcli.data.text import PAD, UNK
from dlcli.errors import ConfigError


def _library():
    try:
        import tokenizers
    except ImportError:  # pragma: no cover - a core dependency; only a broken install lacks it
        raise ConfigError("data.dataset.level: bpe needs the `tokenizers` package; pip install tokenizers") from None
    return tokenizers


def train_bpe(texts, vocab_size: int, lowercase: bool, min_freq: int) -> str:
    """A byte-level BPE tokenizer learnt from `texts` (an iterable of strings), as its JSON. Ids 0 and
    1 are <pad> and <unk>, as in every dlcli vocabulary."""
    lib = _library()
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = lib.Tokenizer(models.BPE(unk_token=UNK))
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_freq, special_tokens=[PAD, UNK],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer.to_str()


@lru_cache(maxsize=4)
def _tokenizer(spec: str):
    return _library().Tokenizer.from_str(spec)


def vocabulary(spec: str) -> list[str]:
    """id -> token string of the tokenizer."""
    tokenizer = _tokenizer(spec)
    return [tokenizer.id_to_token(i) for i in range(tokenizer.get_vocab_size())]


def encode(spec: str, text: str) -> list[int]:
    return _tokenizer(spec).encode(text).ids


def encode_many(spec: str, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in _tokenizer(spec).encode_batch(texts)]


def decode(spec: str, ids: list[int]) -> str:
    return _tokenizer(spec).decode(ids)
