"""Differencing a series and undoing it: the forecaster reads the window's changes and predicts the
next changes, which are added back onto the window's last values, so a trend never takes the inputs
out of the range training saw, and a model that predicts no change is the naive forecast.

`difference: 1` is (1 - B) z_t = z_t - z_{t-1}; `seasonal_difference: K` is (1 - B^K) z_t =
z_t - z_{t-K}; both together multiply: z_t - z_{t-1} - z_{t-K} + z_{t-K-1}.
"""


def lag_polynomial(difference: int, season: int) -> list[float]:
    """Coefficients p of (1 - B)^difference (1 - B^season): w_t = sum_j p[j] z_{t-j}, p[0] = 1."""
    p = [1.0]
    for lag in ([1] * difference) + ([season] if season else []):
        q = p + [0.0] * lag
        for j, c in enumerate(p):
            q[j + lag] -= c
        p = q
    return p


def differenced(z, p: list[float]):
    """z [B, L, F] -> w [B, L - (len(p) - 1), F]: each row from the len(p) rows ending at it."""
    n, length = len(p) - 1, z.shape[1]
    out = z[:, n:]
    for j, c in enumerate(p[1:], start=1):
        if c:
            out = out + c * z[:, n - j:length - j]
    return out


def integrated(w, history, p: list[float]):
    """Differenced forecasts w [B, H, T] back to levels, step by step from history [B, L, T] (L >=
    len(p) - 1): z_t = w_t - sum_{j>=1} p[j] z_{t-j}, with earlier forecasts standing in for z."""
    import torch

    n = len(p) - 1
    if n == 0:
        return w
    past = list(history[:, history.shape[1] - n:].unbind(1))
    levels = []
    for h in range(w.shape[1]):
        level = w[:, h]
        for j, c in enumerate(p[1:], start=1):
            if c:
                level = level - c * past[-j]
        past.append(level)
        levels.append(level)
    return torch.stack(levels, 1)


def change_scale(stream, segments: list[int] | None, p: list[float]) -> list[float]:
    """Per column, the std of the differenced (normalised) training series, each series differenced
    on its own: the model reads and predicts changes in units of it."""
    import torch

    parts = stream.split(segments or [len(stream)])
    changes = torch.cat([differenced(part[None], p)[0] for part in parts if len(part) >= len(p)])
    if len(changes) < 2:
        return [1.0] * stream.shape[1]
    return changes.std(0).nan_to_num(1.0).clamp_min(1e-8).tolist()
