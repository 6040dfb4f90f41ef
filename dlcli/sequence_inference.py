"""`dlcli infer` for sequence checkpoints: text generation, text classification, forecasting."""

from dlcli.engine import autocast
from dlcli.errors import ConfigError, DataError


def generate(model, meta, device, precision, prompt: str, length: int, temperature: float,
             top_k: int | None, seed: int | None) -> dict:
    """Continue `prompt` by `length` tokens, sampling one at a time (temperature 0: greedy).
    The same seed gives the same text."""
    import torch

    from dlcli.data.text import detokenize, encode, tokenize

    level, lowercase = meta.sequence["level"], meta.sequence.get("lowercase", False)
    tokens = tokenize(prompt, level, lowercase)
    if not tokens:
        raise ConfigError("--prompt: a language model continues a prompt; give at least one token of text")
    ids = encode(tokens, {t: i for i, t in enumerate(meta.vocab)})
    unknown = sorted({t for t, i in zip(tokens, ids) if i == 1})
    generator = torch.Generator(device=device)
    generator.manual_seed(seed) if seed is not None else generator.seed()
    model.eval()
    out = []
    with torch.inference_mode(), autocast(device, precision):
        logits, state = model(torch.tensor([ids], device=device), keep_state=True)
        for _ in range(length):
            next_id = _sample(logits[0, -1].float(), temperature, top_k, generator)
            out.append(next_id)
            logits, state = model(torch.tensor([[next_id]], device=device), state=state, keep_state=True)
    text = detokenize([meta.vocab[i] for i in out], level)
    joined = prompt + ("" if level == "char" else " ") + text
    return {"prompt": prompt, "generated": text, "text": joined, "tokens": length, "seed": seed,
            "unknown_prompt_tokens": unknown}


def _sample(logits, temperature: float, top_k: int | None, generator) -> int:
    import torch

    logits[:2] = float("-inf")  # never emit <pad> or <unk>
    if temperature == 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k is not None and top_k < logits.numel():
        threshold = logits.topk(top_k).values[-1]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    return int(torch.multinomial(logits.softmax(0), 1, generator=generator))


def text_inputs(files, texts: list[str], meta):
    """(ids [N, L], lengths, names) from --text strings and CSV/JSONL files with the text column."""
    from dlcli.data.sequences import read_labelled_texts
    from dlcli.data.text import tokenize
    from dlcli.data.windows import pad_texts

    names, raw = [], []
    for i, text in enumerate(texts):
        names.append(f"--text {i + 1}")
        raw.append(text)
    for file in files:
        if file.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
            raise DataError(f"{file}: this model classifies texts: give .csv/.jsonl files with a "
                            f"{meta.sequence['text_column']!r} column, or --text")
        found, _ = read_labelled_texts(str(file), meta.sequence["text_column"], None)
        names += [f"{file}:{i + 1}" for i in range(len(found))]
        raw += found
    if not raw:
        raise ConfigError("no inputs: give text files or --text \"...\"")
    tokens = [tokenize(t, meta.sequence["level"], meta.sequence["lowercase"]) for t in raw]
    x, lengths = pad_texts(tokens, meta.vocab, meta.sequence["max_len"])
    return x, lengths, names


def classify_texts(model, task, x, lengths, device, precision, batch_size: int = 512):
    import torch

    model.eval()
    outputs = []
    with torch.inference_mode(), autocast(device, precision):
        for start in range(0, len(x), batch_size):
            sl = slice(start, start + batch_size)
            longest = int(lengths[sl].max())
            logits = model(x[sl, :longest].to(device), lengths[sl].to(device))
            outputs.append(task.predict(logits).cpu())
    return torch.cat(outputs)


def forecast(model, task, meta, device, precision, file: str, steps: int | None) -> list[dict]:
    """The next `steps` values after the last window of a CSV; past the model's horizon the forecasts
    are fed back as inputs (only when the model forecasts every input column)."""
    import torch

    from dlcli.data.sequences import read_series
    from dlcli.data.windows import normalize

    window, horizon = meta.sequence["window"], meta.sequence["horizon"]
    target_index = meta.sequence["target_index"]
    steps = steps or horizon
    if steps > horizon and sorted(target_index) != list(range(len(meta.feature_names))):
        raise ConfigError(f"--steps: at most {horizon} (the model's horizon), since it does not forecast every "
                          f"input column and cannot feed its forecasts back")
    _, rows = read_series(file, meta.feature_names)
    if len(rows) < window:
        raise DataError(f"{file}: {len(rows)} rows; the model needs the last {window} (its window)")
    values = normalize(torch.tensor(rows[-window:], dtype=torch.float32), meta).to(device)
    predicted: list[torch.Tensor] = []
    model.eval()
    with torch.inference_mode(), autocast(device, precision):
        while len(predicted) < steps:
            out = model(values[None, -window:]).float().view(horizon, len(target_index))
            predicted += list(out)
            if steps > horizon:  # feed the forecasts back, each value into its own column
                fed_back = torch.empty(horizon, values.shape[1], device=values.device)
                fed_back[:, target_index] = out
                values = torch.cat([values, fed_back])
    names = [meta.feature_names[i] for i in target_index]
    result = task.denormalize(torch.stack(predicted[:steps])).cpu().tolist()
    return [{"step": i + 1, **{n: round(v, 6) for n, v in zip(names, row)}} for i, row in enumerate(result)]
