"""Search spaces written as overrides: `optimizer.lr=loguniform(1e-4,1e-1)`, `model.dropout=uniform(0,0.5)`,
`train.accumulate=int(1,4)`, `model.hidden=choice([128],[256,128])`, a plain list `a,b,c` (a grid axis),
or one `key=value` fixed for every trial. Parsed and checked here without Optuna or torch; the config is
validated at every axis's bounds before anything runs."""

import itertools
import math
import re
from dataclasses import dataclass

from dlcli.errors import ConfigError

KINDS = ("loguniform", "uniform", "int", "choice")
_CALL = re.compile(r"([a-z_]+)\((.*)\)", re.DOTALL)
# Edge points validated before a sweep: their product while small, else one axis at a time.
_MAX_PRODUCT = 256


@dataclass(frozen=True)
class Axis:
    """One swept key: `kind` is 'grid' (a plain list), 'choice', 'uniform', 'loguniform' or 'int';
    `values` the choices' override texts, or (low, high) for the ranges."""

    key: str
    kind: str
    values: tuple

    @property
    def finite(self) -> bool:
        return self.kind in ("grid", "choice")

    def edges(self) -> list:
        """The values the config must accept: every choice, or a range's two ends."""
        return list(self.values)

    def text(self, value) -> str:
        """The override for one sampled value (floats keep full precision: repr round-trips)."""
        if self.kind == "int":
            return f"{self.key}={int(value)}"
        if self.kind in ("uniform", "loguniform"):
            return f"{self.key}={float(value)!r}"
        return f"{self.key}={value}"

    def describe(self) -> str:
        if self.finite:
            return f"{self.kind}({', '.join(self.values)})" if self.kind == "choice" else ",".join(self.values)
        return f"{self.kind}({self.values[0]}, {self.values[1]})"


def split_values(text: str) -> list[str]:
    """'0.1,0.01' -> ['0.1', '0.01']; commas inside [], {} or quotes don't split: '[128],[256,128]'."""
    values, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(current)
            current = ""
            continue
        current += ch
    return values + [current]


def parse_space(words: list[str], seeds: int | None = None) -> tuple[list[Axis], list[str]]:
    """(swept axes, fixed overrides) from the command line's `key=...` words; every bad word is
    reported at once, naming its key. `seeds` K adds the grid axis seed=0..K-1."""
    axes: list[Axis] = []
    fixed: list[str] = []
    problems: list[str] = []
    keys: set[str] = set()
    for word in words:
        key, sep, text = word.partition("=")
        if not sep or not key:
            problems.append(f"sweep axis {word!r}: expected key=v1,v2,... or key=uniform(a,b) (see README, sweep)")
            continue
        if key in keys or (key == "seed" and seeds):
            problems.append(f"sweep axis {word!r}: {key} is already swept" + (" by --seeds" if key == "seed" else ""))
            continue
        keys.add(key)
        try:
            axis = _parse_axis(key, text.strip())
        except ValueError as err:
            problems.append(f"{key}: {err}")
            continue
        if axis is None:
            fixed.append(word)
        else:
            axes.append(axis)
    if seeds:
        axes.append(Axis("seed", "grid", tuple(str(s) for s in range(seeds))))
    if problems:
        raise ConfigError(problems)
    return axes, fixed


def _parse_axis(key: str, text: str) -> Axis | None:
    """The axis one `key=text` describes, or None for a single fixed value; ValueError says why not."""
    call = _CALL.fullmatch(text)
    if call and call.group(1) not in KINDS:
        raise ValueError(f"unknown search space {call.group(1)}(...); use one of {', '.join(KINDS)}(...) "
                         f"or a plain list a,b,c")
    if call is None:
        values = split_values(text)
        if any(not v.strip() for v in values):
            raise ValueError(f"empty value in the list {text!r}")
        return Axis(key, "grid", tuple(values)) if len(values) > 1 else None
    kind, inner = call.groups()
    args = [a.strip() for a in split_values(inner)]
    if kind == "choice":
        if any(not a for a in args):
            raise ValueError(f"choice({inner}): empty choice")
        if len(set(args)) != len(args):
            raise ValueError(f"choice({inner}): a choice is repeated")
        return Axis(key, "choice", tuple(args))
    if len(args) != 2:
        raise ValueError(f"{kind}({inner}): expected two bounds, {kind}(low,high)")
    low, high = (_number(a, kind) for a in args)
    if not low < high:
        raise ValueError(f"{kind}({inner}): the low bound must be below the high one")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"loguniform({inner}): bounds must be above 0")
    return Axis(key, kind, (int(low), int(high)) if kind == "int" else (low, high))


def _number(text: str, kind: str) -> float:
    try:
        value = int(text) if kind == "int" else float(text)
    except ValueError:
        raise ValueError(f"{kind}(...): {text!r} is not {'an integer' if kind == 'int' else 'a number'}") from None
    if not math.isfinite(value):
        raise ValueError(f"{kind}(...): {text!r} is not a finite number")
    return value


def grid_points(axes: list[Axis]) -> list[list[str]]:
    """Every combination of the (finite) axes, as override lists, in a fixed order."""
    return [list(p) for p in itertools.product(*[[a.text(v) for v in a.values] for a in axes])]


def edge_points(axes: list[Axis]) -> list[list[str]]:
    """Override lists that put every axis at each of its edges: the full product of the edges while it
    is small (settings that only clash together are caught too), else each axis in turn, the others at
    their first edge."""
    edges = [[a.text(v) for v in a.edges()] for a in axes]
    if math.prod(len(e) for e in edges) <= _MAX_PRODUCT:
        return [list(p) for p in itertools.product(*edges)]
    base = [e[0] for e in edges]
    return [base] + [base[:i] + [v] + base[i + 1:] for i, e in enumerate(edges) for v in e[1:]]


def validate_points(config_path: str, fixed: list[str], points: list[list[str]]) -> list:
    """Every point's config (fixed overrides first), or one ConfigError listing each point's problems."""
    from dlcli.config import load

    configs, problems = [], []
    for overrides in points:
        try:
            configs.append(load(config_path, fixed + overrides))
        except ConfigError as err:
            problems += [f"[{' '.join(overrides)}] {p}" if overrides else p for p in err.problems]
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return configs
