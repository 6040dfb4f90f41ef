"""Positional split, vocabulary/statistics from the training split, and windowing.

Text and time series are split by position (train first, validation after), never at random:
overlapping windows on both sides of a random split would leak the validation data into training.
"""

from dlcli.data.differencing import change_scale, lag_polynomial
from dlcli.data.source import Source
from dlcli.data.text import build_vocab, encode
from dlcli.errors import DataError

BPE_VOCAB = 1000  # data.dataset.vocab_size when level bpe leaves it out


def split_positional(pool: Source, val_split: float) -> tuple[Source, Source | None]:
    """The stream's first (1 - val_split) for training, the rest for validation; several series
    (`segments`) are each split so."""
    if pool.segments is not None:
        return _split_segments(pool, val_split)
    n = len(pool.stream)
    cut = n - round(n * val_split) if val_split else n
    parts = [pool.stream[:cut]] + ([pool.stream[cut:]] if val_split else [])
    sources = [Source(y=None, class_names=pool.class_names, kind=pool.kind, stream=part,
                      feature_names=pool.feature_names, options=pool.options) for part in parts]
    return sources[0], (sources[1] if val_split else None)


def _split_segments(pool: Source, val_split: float) -> tuple[Source, Source | None]:
    import torch

    train, val = [], []
    for part in pool.stream.split(pool.segments):
        cut = len(part) - round(len(part) * val_split) if val_split else len(part)
        train.append(part[:cut])
        val.append(part[cut:])

    def joined(parts):
        return Source(y=None, class_names=pool.class_names, kind=pool.kind, stream=torch.cat(parts),
                      feature_names=pool.feature_names, options=pool.options, segments=[len(p) for p in parts])

    return joined(train), (joined(val) if val_split else None)


def describe_sequences(train: Source, meta) -> None:
    """Fill meta with what eval/infer need to encode new data: vocabulary, statistics, shapes."""
    opts = train.options
    meta.sequence = {k: v for k, v in opts.items() if k != "file"}
    if opts.get("level") == "bpe":  # learnt from the training split, kept in the checkpoint as its JSON
        from dlcli.data import subwords

        documents = [train.stream] if train.kind == "tokens" else train.texts
        spec = subwords.train_bpe(documents, opts.get("vocab_size") or BPE_VOCAB, opts["lowercase"], opts["min_freq"])
        meta.sequence["tokenizer"] = spec
        meta.vocab = subwords.vocabulary(spec)
        meta.input_shape = [opts["seq_len"] if train.kind == "tokens" else opts["max_len"]]
    elif train.kind == "tokens":
        meta.vocab = build_vocab([train.stream], opts["min_freq"], opts["max_vocab"])
        meta.input_shape = [opts["seq_len"]]
    elif train.kind == "text":
        meta.vocab = build_vocab(train.texts, opts["min_freq"], opts["max_vocab"])
        meta.input_shape = [opts["max_len"]]
    elif train.kind == "series":
        # statistics from the training part only (no peeking at validation values)
        meta.feature_mean = train.stream.mean(0).tolist()
        meta.feature_std = train.stream.std(0).nan_to_num(1.0).clamp_min(1e-8).tolist()
        meta.sequence["target_index"] = [train.feature_names.index(t) for t in opts["targets"]]
        lags = lag_polynomial(opts.get("difference", 0), opts.get("seasonal_difference", 0))
        if opts["window"] < len(lags):  # checked here, not in the config: older checkpoints' configs still load
            raise DataError(f"data.dataset.window: {opts['window']} rows leave nothing once differenced (difference + "
                            f"seasonal_difference = {len(lags) - 1}); use a window of at least {len(lags)}")
        if len(lags) > 1:  # the model reads the window's changes, in units of their training std
            meta.sequence["change_std"] = change_scale(normalize(train.stream, meta), train.segments, lags)
        meta.input_shape = [opts["window"] - (len(lags) - 1), len(train.feature_names)]
    else:  # "sequence": image rows, already tensors
        meta.input_shape = list(train.x.shape[1:])


def prepare(source: Source | None, meta, part: str = "training") -> Source | None:
    """Encode tokens / window streams into x, y (and lengths) with the training split's meta."""
    if source is None or source.kind in ("image", "tabular", "sequence"):
        return source
    bpe = meta.sequence.get("level") == "bpe"
    if source.kind == "tokens":
        ids = (subword_ids(meta, [source.stream])[0] if bpe
               else encode(source.stream, {t: i for i, t in enumerate(meta.vocab)}))
        source.x, source.y = lm_windows(ids, meta.sequence["seq_len"], meta.sequence["stride"], part)
    elif source.kind == "text" and bpe:
        source.x, source.lengths = pad_ids(subword_ids(meta, source.texts), meta.sequence["max_len"])
    elif source.kind == "text":
        source.x, source.lengths = pad_texts(source.texts, meta.vocab, meta.sequence["max_len"])
    elif source.kind == "series":
        source.x, source.y = series_windows(normalize(source.stream, meta), meta.sequence, part, source.segments)
    source.stream = source.texts = source.segments = None
    return source


def lm_windows(ids: list[int], seq_len: int, stride: int, part: str):
    """(inputs, next-token targets), each [N, seq_len]."""
    import torch

    if len(ids) < seq_len + 1:
        raise DataError(f"data.dataset.seq_len: {seq_len} (+1 for the target) is longer than the {part} text "
                        f"({len(ids)} tokens); lower seq_len" + (" or data.val_split" if part == "validation" else ""))
    t = torch.tensor(ids, dtype=torch.long)
    return t[:-1].unfold(0, seq_len, stride).contiguous(), t[1:].unfold(0, seq_len, stride).contiguous()


def subword_ids(meta, texts: list[str]) -> list[list[int]]:
    from dlcli.data import subwords

    return subwords.encode_many(meta.sequence["tokenizer"], texts)


def pad_texts(texts: list[list[str]], vocab: list[str], max_len: int):
    """Token ids padded with 0 to the longest text (at most max_len: longer texts are cut), and lengths."""
    index = {t: i for i, t in enumerate(vocab)}
    return pad_ids([encode(tokens[:max_len], index) for tokens in texts], max_len)


def pad_ids(encoded: list[list[int]], max_len: int):
    """Id lists padded with 0 to the longest (at most max_len: longer ones are cut), and lengths. An
    empty text becomes one <unk> so every sequence has at least one step."""
    import torch

    encoded = [ids[:max_len] or [1] for ids in encoded]
    lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)
    x = torch.zeros(len(encoded), int(lengths.max()), dtype=torch.long)
    for row, ids in enumerate(encoded):
        x[row, :len(ids)] = torch.tensor(ids)
    return x, lengths


def normalize(values, meta):
    import torch

    return (values - torch.tensor(meta.feature_mean)) / torch.tensor(meta.feature_std)


def series_windows(values, sequence: dict, part: str, segments: list[int] | None = None):
    """(input windows [N, window, F], next values of the targets [N, horizon, T]); with several
    series (`segments`), each is windowed on its own, so no window spans two of them, and a series
    shorter than one window + horizon gives none."""
    import torch

    window, horizon = sequence["window"], sequence["horizon"]
    span = window + horizon
    parts = [p for p in values.split(segments or [len(values)]) if len(p) >= span]
    if not parts:
        longest = max(segments or [len(values)])
        raise DataError(f"data.dataset.window: window {window} + horizon {horizon} is longer than the {part} "
                        f"series ({longest} rows{' in the longest' if segments else ''}); lower them"
                        + (" or data.val_split" if part == "validation" else ""))
    spans = torch.cat([p.unfold(0, span, sequence["stride"]).permute(0, 2, 1) for p in parts])  # [N, span, F]
    return spans[:, :window].contiguous(), spans[:, window:, sequence["target_index"]].contiguous()


def stream_order(n: int, batch_size: int):
    """Row order for truncated BPTT: row b of batch i+1 continues row b of batch i in the text.
    The windows are cut into batch_size parallel streams; the remainder that fills no batch is dropped."""
    import torch

    per_stream = n // batch_size
    if per_stream == 0:
        raise DataError(f"train.tbptt: {n} windows cannot fill one batch of {batch_size}; lower data.batch_size")
    return torch.arange(per_stream * batch_size).view(batch_size, per_stream).t().reshape(-1)
