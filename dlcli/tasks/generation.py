"""Sampling text from a language model, one token at a time, for `dlcli infer --prompt`.

Recurrent models carry their hidden state; a transformer carries a KV cache, so each new token costs
one position instead of a re-run of the window. A transformer reads at most its context (seq_len)
tokens: a longer prompt is cut to its last seq_len tokens, and once generation fills the window, the
window restarts from its last half (one re-run of seq_len/2 positions), so on average a token still
costs about one position. Without the cache (cache=False) every token re-runs the same window: the
same logits up to float rounding, so the same tokens for the same seed (a test holds both to that)."""

from dlcli.compute import autocast
from dlcli.errors import ConfigError


def generate(model, meta, device, precision, prompt: str, length: int, temperature: float = 1.0,
             top_k: int | None = None, seed: int | None = None, top_p: float | None = None, num: int = 1,
             cache: bool = True) -> dict:
    """Continue `prompt` by `length` tokens, `num` samples drawn side by side (temperature 0: greedy).
    The same seed gives the same text."""
    import torch

    from dlcli.data.codec import ids_text, text_ids

    ids, unknown = text_ids(prompt, meta.sequence, meta.vocab)
    if not ids:
        raise ConfigError("--prompt: a language model continues a prompt; give at least one token of text")
    context = getattr(model, "context", None)  # None: a recurrent model reads any length
    cut = max(0, len(ids) - context) if context else 0
    generator = torch.Generator(device=device)
    generator.manual_seed(seed) if seed is not None else generator.seed()
    model.eval()
    with torch.inference_mode(), autocast(device, precision):
        tokens = torch.tensor([ids[cut:]] * num, device=device)
        new = sample_tokens(model, tokens, length, lambda logits: _sample(logits, temperature, top_k, top_p, generator),
                            context, cache)
    texts = [ids_text(row, meta.sequence, meta.vocab) for row in new.tolist()]
    joiner = "" if meta.sequence["level"] in ("char", "bpe") else ("\n" if prompt.endswith("\n") else " ")
    samples = [{"generated": text, "text": prompt + joiner + text} for text in texts]
    result: dict = {"prompt": prompt, **samples[0], "tokens": length, "seed": seed, "unknown_prompt_tokens": unknown,
                    "prompt_ids": ids[cut:]}  # what the model read: the checkpoint's tokenizer's ids
    if cut:
        result["prompt_cut"] = cut  # tokens dropped from the prompt's start (reported as a note)
    if num > 1:
        result["samples"] = samples
    return result


def sample_tokens(model, tokens, length: int, pick, context: int | None, cache: bool = True):
    """`length` new token ids [N, length] after `tokens` [N, T]; `pick(logits [N, V]) -> ids [N]`."""
    import torch

    start, state, logits = 0, None, None
    for _ in range(length):
        if context and tokens.shape[1] - start > context:  # the window is full: keep its last half
            start, state = tokens.shape[1] - max(1, context // 2), None
        if not cache:
            logits = model(tokens[:, start:])
        elif state is None:
            logits, state = model(tokens[:, start:], keep_state=True)
        else:
            logits, state = model(tokens[:, -1:], state=state, keep_state=True)
        tokens = torch.cat([tokens, pick(logits[:, -1].float())[:, None]], dim=1)
    return tokens[:, tokens.shape[1] - length:]


def _sample(logits, temperature: float, top_k: int | None, top_p: float | None, generator):
    """One id per row: never <pad> or <unk>; temperature 0 takes the likeliest; top_k keeps the k
    likeliest, top_p the smallest set whose probability reaches p (nucleus sampling)."""
    import torch

    logits[:, :2] = float("-inf")
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        threshold = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    if top_p is not None and top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        probs = ordered.softmax(-1)
        beyond = probs.cumsum(-1) - probs >= top_p  # the likeliest token always stays
        logits = logits.scatter(-1, order, ordered.masked_fill(beyond, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
