"""Annotated types shared by config sections and registry builders (no torch here)."""

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
TestFraction = Annotated[float, Field(gt=0, le=0.9)]  # a held-out test share that leaves every class trainable
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # what numpy's and torch's seeding accept
Probability = Annotated[float, Field(ge=0, le=1)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Betas = tuple[Probability, Probability]

Activation = Literal["relu", "leaky_relu", "gelu", "sigmoid", "tanh", "softmax", "identity"]
Init = Literal["default", "normal", "uniform", "xavier", "kaiming"]
Pooling = Literal["max", "avg", "none"]


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as err:
        raise ValueError(f"not a valid regular expression ({err})") from None
    return pattern


# A parameter-name pattern (train.freeze, optimizer.param_groups), matched at the start of the name.
NamePattern = Annotated[str, Field(min_length=1), AfterValidator(_regex)]


class ParamGroup(BaseModel):
    """optimizer.param_groups item: the parameters whose names match `params` get their own lr and
    weight decay (unset: the optimizer's)."""

    model_config = ConfigDict(extra="forbid")
    params: NamePattern
    lr: PositiveFloat | None = None
    weight_decay: NonNegativeFloat | None = None
