"""Registry mechanics, and every entry of every registry describes and validates itself."""

import pytest

from dlcli.config.load import registries
from dlcli.errors import ConfigError
from dlcli.registry import Registry, did_you_mean, format_value, pydantic_problems

ALL = [(kind, name) for kind, reg in registries().items() for name in reg.names()]


@pytest.fixture
def reg():
    r = Registry("widget")

    @r.register("gear")
    def gear(size_hint, *, teeth: int = 12, ratio: float = 1.5, label: str):
        """A gear.

        More text that is not the summary."""
        return {"size_hint": size_hint, "teeth": teeth, "ratio": ratio, "label": label}

    @r.register("axle")
    def axle(*, length: float = 1.0):
        return ("axle", length)

    return r


def test_names_are_sorted(reg):
    assert reg.names() == ["axle", "gear"]


def test_validate_fills_defaults_and_accepts_a_bare_name(reg):
    assert reg.validate({"name": "gear", "label": "x"}, "part") == {"name": "gear", "teeth": 12, "ratio": 1.5,
                                                                    "label": "x"}
    assert reg.validate("axle", "part") == {"name": "axle", "length": 1.0}


def test_validate_reports_every_problem_with_dotted_keys(reg):
    with pytest.raises(ConfigError) as info:
        reg.validate({"name": "gear", "teth": 3, "ratio": "big"}, "part")
    problems = info.value.problems
    assert any(p.startswith("part.teth: unknown key (did you mean 'teeth'?)") for p in problems), problems
    assert any(p.startswith("part.ratio:") and "'big'" in p for p in problems), problems
    assert "part.label: required key is missing" in problems
    assert len(problems) == 3


def test_unknown_name_did_you_mean(reg):
    with pytest.raises(ConfigError) as info:
        reg.validate({"name": "gaer"}, "part")
    assert info.value.problems == ["part.name: unknown widget 'gaer' (did you mean 'gear'?); available: axle, gear"]


@pytest.mark.parametrize("spec", [5, None, [1, 2], {"teeth": 3}])
def test_spec_must_be_a_mapping_with_a_name(reg, spec):
    with pytest.raises(ConfigError, match=r"^part: expected a mapping with a 'name' key"):
        reg.validate(spec, "part")


@pytest.mark.parametrize("name", [["gear"], {"a": 1}, 3.5, None, True])
def test_non_string_names_are_config_errors(reg, name):
    with pytest.raises(ConfigError, match=r"part\.name: expected a widget name .*available: axle, gear"):
        reg.validate({"name": name}, "part")


def test_build_injects_positional_args(reg):
    spec = reg.validate({"name": "gear", "label": "x", "teeth": 30}, "part")
    assert reg.build(spec, "big") == {"size_hint": "big", "teeth": 30, "ratio": 1.5, "label": "x"}
    assert reg.build({"name": "axle"}) == ("axle", 1.0)


def test_describe_and_summary(reg):
    rows = {row[0]: row for row in reg.describe("gear")}
    assert rows["teeth"] == ("teeth", "int", "12")
    assert rows["label"] == ("label", "str", "required")
    assert "size_hint" not in rows  # positional parameters are injected, not configured
    assert reg.summary("gear") == "A gear."
    assert reg.summary("axle") == ""


def test_params_model_is_built_lazily(reg):
    entry = reg._entries["axle"]
    assert entry._params is None
    assert "length" in entry.params.model_fields
    assert entry._params is entry.params


def test_did_you_mean_and_format_value():
    assert did_you_mean("adamm", ["adam", "sgd"]) == " (did you mean 'adam'?)"
    assert did_you_mean("zzz", ["adam", "sgd"]) == ""
    assert format_value("x" * 100).endswith("...") and len(format_value("x" * 100)) == 60
    assert format_value(3) == "3"


def test_pydantic_problems_prefix():
    from pydantic import BaseModel, ConfigDict, ValidationError

    class M(BaseModel):
        model_config = ConfigDict(extra="forbid")
        a: int

    try:
        M.model_validate({"a": "x", "b": 1})
    except ValidationError as err:
        lines = pydantic_problems(err, "sec", lambda loc: ["a"])
    assert lines[0].startswith("sec.a: ") and "(got 'x')" in lines[0]
    assert lines[1] == "sec.b: unknown key; allowed: a"


@pytest.mark.parametrize("kind,name", ALL, ids=[f"{k}-{n}" for k, n in ALL])
def test_every_entry_describes_itself_and_validates_its_defaults(kind, name):
    reg = registries()[kind]
    rows = reg.describe(name)
    assert reg.summary(name), f"{kind} {name!r} has no docstring summary"
    required = [row[0] for row in rows if row[2] == "required"]
    if not required:
        spec = reg.validate({"name": name}, kind)
        assert spec["name"] == name
        assert set(spec) == {"name", *(row[0] for row in rows)}
    else:
        with pytest.raises(ConfigError) as info:
            reg.validate({"name": name}, kind)
        assert sorted(info.value.problems) == sorted(f"{kind}.{r}: required key is missing" for r in required)


@pytest.mark.parametrize("kind,name", ALL, ids=[f"{k}-{n}" for k, n in ALL])
def test_every_entry_rejects_unknown_keys(kind, name):
    with pytest.raises(ConfigError) as info:
        registries()[kind].validate({"name": name, "no_such_param": 1}, kind)
    assert any(p.startswith(f"{kind}.no_such_param: unknown key") for p in info.value.problems)


def test_expected_registry_contents():
    regs = registries()
    assert {"mlp", "cnn", "sequential"} <= set(regs["models"].names())
    assert {"sgd", "nag", "adam", "adamw", "adamax", "adagrad", "adadelta", "rmsprop"} <= set(regs["optimizers"].names())
    assert {"constant", "step", "multistep", "exponential", "cosine", "onecycle",
            "reduce_on_plateau"} <= set(regs["schedulers"].names())
    assert {"cross_entropy", "nll", "bce", "bce_with_logits", "mse", "l1", "huber",
            "soft_f1"} <= set(regs["losses"].names())
    assert "early_stopping" in regs["callbacks"].names()
    assert "digits" in regs["datasets"].names()
