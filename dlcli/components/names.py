"""Parameter-name patterns (train.freeze, optimizer.param_groups): regular expressions matched at the
start of a parameter's name (re.match), as `model.named_parameters()` spells it (`layer4.1.conv2.weight`)."""

import re

from dlcli.errors import ConfigError


def match_groups(named: list[tuple[str, object]], patterns: list[str], key: str) -> tuple[list[list], list]:
    """(the parameters each pattern picks, the rest): a parameter goes to the first pattern that
    matches its name. A pattern that matches no parameter is a ConfigError naming `key`.N."""
    picked: list[list] = [[] for _ in patterns]
    rest: list = []
    compiled = [re.compile(pattern) for pattern in patterns]
    for name, param in named:
        index = next((i for i, regex in enumerate(compiled) if regex.match(name)), None)
        (rest if index is None else picked[index]).append(param)
    unmatched = [i for i, params in enumerate(picked) if not params and not _matches_any(compiled[i], named)]
    if unmatched:
        examples = ", ".join(name for name, _ in named[:3])
        raise ConfigError([f"{key}.{i}: {patterns[i]!r} matches no parameter of the model (names look like "
                           f"{examples}, ...; patterns match at the start of a name)" for i in unmatched])
    return picked, rest


def _matches_any(regex, named) -> bool:
    """True when the pattern matches a name an earlier pattern already took (it is not wrong, only
    shadowed)."""
    return any(regex.match(name) for name, _ in named)


def matching_names(names: list[str], patterns: list[str]) -> list[str]:
    """The names any pattern matches."""
    compiled = [re.compile(pattern) for pattern in patterns]
    return [name for name in names if any(regex.match(name) for regex in compiled)]
