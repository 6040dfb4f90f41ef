"""Config loading: strict YAML, overrides, schema + registry validation, every problem at once."""

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlcli.config import Config, apply_overrides, load, validate
from dlcli.config.load import registries
from dlcli.config.yamlio import MAX_YAML_BYTES, parse_yaml
from dlcli.errors import ConfigError
from tests.conftest import tiny_digits_config

REPO = Path(__file__).resolve().parents[2]


def problems_of(data, overrides=()) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate(data, list(overrides))
    return info.value.problems


def write(tmp_path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------- valid configs


def test_tiny_config_validates_and_fills_defaults():
    config = validate(tiny_digits_config())
    assert isinstance(config, Config)
    assert config.model == {"name": "mlp", "hidden": [32], "activation": "relu", "dropout": 0.0,
                            "batch_norm": False, "init": "default", "init_mean": 0.0, "init_std": 0.1,
                            "zero_bias": True}
    assert config.loss == {"name": "cross_entropy", "label_smoothing": 0.0}
    assert config.optimizer["name"] == "adam" and config.optimizer["lr"] == 0.01
    assert config.optimizer["betas"] == [0.9, 0.999]
    assert config.data.dataset == {"name": "digits", "test_fraction": 0.2}
    assert config.data.train_transforms == [{"name": "normalize", "preset": "digits", "mean": None, "std": None}]
    assert config.train.epochs == 2 and config.train.accumulate == 1 and config.train.grad_clip is None


def test_validate_does_not_mutate_its_input():
    data = tiny_digits_config(callbacks=[{"name": "early_stopping"}])
    before = copy.deepcopy(data)
    validate(data, ["callbacks.0.patience=2", "model.hidden=[4]"])
    assert data == before


def test_repo_configs_load():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        config = load(str(path))
        assert config.name


def test_name_defaults_to_the_file_stem(tmp_path):
    data = tiny_digits_config()
    del data["name"]
    path = tmp_path / "my-exp.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load(str(path)).name == "my-exp"


# ---------------------------------------------------------------- problems, all at once


def test_all_problems_are_reported_at_once_as_dotted_keys():
    data = tiny_digits_config(
        optimiser={"name": "adam"},
        train={"epoch": 3, "device": "tpu", "accumulate": 0},
        model={"name": "mlp", "hiden": [3], "dropout": 1.5},
        optimizer={"name": "adamm"},
        scheduler={"name": "cosine", "min_lr_ratio": -1},
        callbacks=[{"name": "early_stoping"}],
    )
    data["data"]["batch_size"] = 0
    problems = problems_of(data)
    expected_prefixes = ["optimiser: unknown key (did you mean 'optimizer'?)",
                         "train.epoch: unknown key (did you mean 'epochs'?)",
                         "train.device:", "train.accumulate:", "data.batch_size:",
                         "model.hiden: unknown key (did you mean 'hidden'?)", "model.dropout:",
                         "optimizer.name: unknown optimizer 'adamm' (did you mean 'adam'?)",
                         "scheduler.min_lr_ratio:",
                         "callbacks.0.name: unknown callback 'early_stoping' (did you mean 'early_stopping'?)"]
    for prefix in expected_prefixes:
        assert any(p.startswith(prefix) for p in problems), (prefix, problems)
    assert len(problems) == len(expected_prefixes), problems


@pytest.mark.parametrize("section,value,expected", [
    ("model", {"name": "mpl"}, "model.name: unknown model 'mpl' (did you mean 'mlp'?)"),
    ("loss", {"name": "cross_entropi"}, "loss.name: unknown loss 'cross_entropi' (did you mean 'cross_entropy'?)"),
    ("scheduler", {"name": "cosin"}, "scheduler.name: unknown scheduler 'cosin' (did you mean 'cosine'?)"),
    ("optimizer", {"name": "rmsprob"}, "optimizer.name: unknown optimizer 'rmsprob' (did you mean 'rmsprop'?)"),
])
def test_unknown_registry_names_did_you_mean(section, value, expected):
    problems = problems_of(tiny_digits_config(**{section: value}))
    assert len(problems) == 1 and problems[0].startswith(expected), problems
    assert "available:" in problems[0]


def test_unknown_dataset_and_transform_names_did_you_mean():
    data = tiny_digits_config()
    data["data"]["dataset"] = {"name": "digit"}
    data["data"]["train_transforms"] = [{"normalise": "digits"}, "horizontal_flp"]
    problems = problems_of(data)
    assert any(p.startswith("data.dataset.name: unknown dataset 'digit' (did you mean 'digits'?)") for p in problems)
    assert any("'normalise'" in p and "did you mean 'normalize'" in p for p in problems), problems
    assert any(p.startswith("data.train_transforms.1.name:") and "did you mean 'horizontal_flip'" in p
               for p in problems), problems


def test_unknown_component_param_did_you_mean():
    problems = problems_of(tiny_digits_config(optimizer={"name": "sgd", "momentun": 0.9}))
    assert problems[0].startswith("optimizer.momentun: unknown key (did you mean 'momentum'?); allowed: ")


def test_missing_required_sections():
    assert sorted(problems_of({"name": "x"})) == ["data: required key is missing", "model: required key is missing"]


def test_bad_name():
    assert problems_of(tiny_digits_config(name="has space"))[0].startswith("name:")


def test_grad_clip_needs_exactly_one_mode():
    for clip in ({}, {"max_norm": 1.0, "max_value": 1.0}):
        problems = problems_of(tiny_digits_config(train={"grad_clip": clip}))
        assert problems[0].startswith("train.grad_clip:") and "exactly one" in problems[0], problems


def test_problems_carry_file_and_line(tmp_path):
    path = write(tmp_path, """
        name: lines
        data:
          dataset: {name: digits}
          batch_size: -1
        model:
          name: mlp
          hiden: [3]
        train:
          epoch: 3
    """)
    with pytest.raises(ConfigError) as info:
        load(str(path))
    problems = info.value.problems
    assert any(p.startswith("data.batch_size:") and p.endswith(f"[{path}:5]") for p in problems), problems
    assert any(p.startswith("model.hiden:") and p.endswith(f"[{path}:8]") for p in problems), problems
    assert any(p.startswith("train.epoch:") and p.endswith(f"[{path}:10]") for p in problems), problems


def test_problem_inside_a_list_points_at_the_list_item(tmp_path):
    path = write(tmp_path, """
        name: lines
        data:
          dataset: {name: digits}
          train_transforms:
            - {normalize: digits}
            - {random_crop: {size: 0}}
          eval_transforms: [{normalize: digits}]
        model: {name: mlp}
    """)
    with pytest.raises(ConfigError) as info:
        load(str(path))
    problems = info.value.problems
    # the dotted config key, with no pydantic union-member tags such as '.constrained-int' appended
    assert all(p.startswith("data.train_transforms.1.size: ") for p in problems), problems
    assert all(p.endswith(f"[{path}:7]") for p in problems), problems


# ---------------------------------------------------------------- cross-section checks


def test_normalize_mismatch_between_train_and_eval_is_rejected():
    data = tiny_digits_config()
    data["data"]["eval_transforms"] = [{"normalize": "mnist"}]
    problems = problems_of(data)
    assert problems == ["data.eval_transforms: normalize differs from data.train_transforms; "
                        "both lists are complete pipelines, so give both the same normalize"]
    data["data"]["eval_transforms"] = []
    assert problems_of(data)[0].startswith("data.eval_transforms: normalize differs")


def test_augmentation_only_in_train_is_fine_and_normalize_spellings_agree():
    data = tiny_digits_config()
    data["data"]["train_transforms"] = [{"random_crop": {"size": 8, "padding": 1}}, {"normalize": "digits"}]
    data["data"]["eval_transforms"] = [{"normalize": {"preset": "digits"}}]
    validate(data)


@pytest.mark.parametrize("where", ["train", "callback", "scheduler"])
def test_monitor_metric_names_are_checked(where):
    if where == "train":
        data = tiny_digits_config(train={"monitor": "val/accuracy"})
        key = "train.monitor"
    elif where == "callback":
        data = tiny_digits_config(callbacks=[{"name": "early_stopping", "monitor": "val/acc"},
                                             {"name": "early_stopping", "monitor": "valid/loss"}])
        key = "callbacks.1.monitor"
    else:
        data = tiny_digits_config(scheduler={"name": "reduce_on_plateau", "monitor": "val/los"})
        key = "scheduler.monitor"
    problems = problems_of(data)
    assert len(problems) == 1 and problems[0].startswith(f"{key}: unknown metric"), problems
    assert "available: train/loss, train/acc" in problems[0]


@pytest.mark.parametrize("metric", ["train/loss", "train/acc", "val/loss", "val/acc", "val/f1", "val/top5"])
def test_known_monitors_are_accepted(metric):
    validate(tiny_digits_config(train={"monitor": metric},
                                callbacks=[{"name": "early_stopping", "monitor": metric}]))


def test_val_monitor_without_validation_split_is_rejected():
    data = tiny_digits_config(train={"monitor": "val/acc"})
    data["data"]["val_split"] = 0
    problems = problems_of(data)
    assert problems[0].startswith("train.monitor: unknown metric 'val/acc'") and "val_split > 0" in problems[0]
    data["train"]["monitor"] = "train/acc"
    validate(data)


def test_plateau_scheduler_default_monitor_needs_validation():
    data = tiny_digits_config(scheduler={"name": "reduce_on_plateau"}, train={"monitor": "train/loss"})
    data["data"]["val_split"] = 0
    assert problems_of(data)[0].startswith("scheduler.monitor: unknown metric 'val/loss'")


# ---------------------------------------------------------------- overrides


def test_overrides_set_nested_values_lists_and_list_items():
    data = tiny_digits_config(callbacks=[{"name": "early_stopping", "patience": 5}])
    config = validate(data, ["optimizer.lr=0.5", "model.hidden=[256,128]", "callbacks.0.patience=3",
                             "train.epochs=7", "data.train_transforms.0.normalize=digits",
                             "train.grad_clip.max_norm=2"])
    assert config.optimizer["lr"] == 0.5
    assert config.model["hidden"] == [256, 128]
    assert config.callbacks[0]["patience"] == 3
    assert config.train.epochs == 7
    assert config.train.grad_clip.max_norm == 2.0


def test_override_creates_a_missing_section_and_null_removes_one():
    config = validate(tiny_digits_config(), ["scheduler.name=cosine", "scheduler.warmup_epochs=1"])
    assert config.scheduler["name"] == "cosine" and config.scheduler["warmup_epochs"] == 1
    assert validate(tiny_digits_config(scheduler={"name": "step"}), ["scheduler=null"]).scheduler is None


def test_override_values_are_yaml():
    out = apply_overrides({}, ["a=1", "b=1.5", "c=true", "d=null", "e=[1, 2]", "f={x: 1}", "g=text", "h="])
    assert out == {"a": 1, "b": 1.5, "c": True, "d": None, "e": [1, 2], "f": {"x": 1}, "g": "text", "h": None}


def test_later_overrides_win():
    assert validate(tiny_digits_config(), ["optimizer.lr=0.1", "optimizer.lr=0.2"]).optimizer["lr"] == 0.2


def test_override_type_errors_are_validation_problems():
    problems = problems_of(tiny_digits_config(), ["train.epochs=abc", "optimizer.lr=-1"])
    assert any(p.startswith("train.epochs:") for p in problems)
    assert any(p.startswith("optimizer.lr:") for p in problems)


@pytest.mark.parametrize("override,fragment", [
    ("noequals", "expected key.path=value"),
    ("=3", "expected key.path=value"),
    ("a..b=1", "expected key.path=value"),
    ("optimizer.=1", "expected key.path=value"),
    ("optimizer.lr=[", "invalid YAML"),
    ("optimizer.lr=!!python/object/apply:os.system [echo]", "invalid YAML"),
    ("callbacks.1.patience=3", "is not an index of the list"),
    ("callbacks.x.patience=3", "is not an index of the list"),
    ("callbacks.-1.patience=3", "is not an index of the list"),
    ("model.hidden.0.x=1", "is not a mapping"),
])
def test_bad_overrides(override, fragment):
    data = tiny_digits_config(callbacks=[{"name": "early_stopping"}])
    problems = problems_of(data, [override])
    assert fragment in problems[0], problems
    assert problems[0].startswith("override"), problems


def test_override_index_with_a_non_ascii_digit_is_a_config_error():
    # '²' and '①' pass str.isdigit() but int() rejects them
    data = tiny_digits_config(callbacks=[{"name": "early_stopping"}])
    for index in ("²", "①"):
        problems = problems_of(data, [f"callbacks.{index}.patience=3"])
        assert problems[0].startswith("override"), problems


# ---------------------------------------------------------------- strict, safe YAML


def test_duplicate_keys_are_rejected(tmp_path):
    path = write(tmp_path, """
        name: dup
        model: {name: mlp}
        data: {dataset: {name: digits}}
        model: {name: cnn}
    """)
    with pytest.raises(ConfigError, match=r"line 5: duplicate key 'model'"):
        load(str(path))


def test_nested_duplicate_keys_are_rejected():
    with pytest.raises(ConfigError, match="duplicate key 'lr'"):
        parse_yaml("optimizer:\n  lr: 1\n  lr: 2\n")


@pytest.mark.parametrize("text", [
    "!!python/object/apply:os.system ['touch /tmp/dlcli-pwned']\n",
    "name: !!python/object/apply:os.system ['touch /tmp/dlcli-pwned']\n",
    "model: !!python/object:builtins.dict {}\n",
    "x: !!python/name:os.system\n",
])
def test_python_tags_are_rejected(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="invalid YAML"):
        load(str(path))
    assert not Path("/tmp/dlcli-pwned").exists()


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_rejected_quickly(tmp_path):
    path = write(tmp_path, billion_laughs())
    with pytest.raises(ConfigError, match="too large or too deeply nested"):
        load(str(path))


def test_recursive_alias_is_rejected():
    with pytest.raises(ConfigError):
        parse_yaml("a: &a [*a]\n")


def test_moderate_aliases_are_fine():
    data, _ = parse_yaml("base: &b {x: 1}\none: *b\ntwo: *b\n")
    assert data == {"base": {"x": 1}, "one": {"x": 1}, "two": {"x": 1}}


@pytest.mark.parametrize("text", ["[" * 5000, "- " * 5000 + "x", "{a: " * 3000])
def test_deep_nesting_is_rejected(text):
    with pytest.raises(ConfigError):
        parse_yaml(text)


def test_huge_file_is_rejected(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("name: x\n# " + "y" * MAX_YAML_BYTES + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        load(str(path))


@pytest.mark.parametrize("text,kind", [("- a\n- b\n", "list"), ("just a string\n", "str"), ("42\n", "int")])
def test_non_mapping_top_level(tmp_path, text, kind):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=f"the top level must be a mapping of sections \\(got {kind}\\)"):
        load(str(path))


def test_empty_file_reports_missing_sections(tmp_path):
    path = write(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert sorted(p.split(":")[0] for p in info.value.problems) == ["data", "model"]


def test_multiple_documents_are_rejected(tmp_path):
    path = write(tmp_path, "name: a\n---\nname: b\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load(str(path))


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load("/nonexistent/dir/cfg.yaml")


def test_directory_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError):
        load(str(tmp_path))


@pytest.mark.parametrize("payload", [
    bytes(range(256)),  # not UTF-8
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",  # an image
    b"name: x\x00\x00\x00",  # NUL bytes
    b"\x01\x02\x03\x04 garbage \x7f",  # valid UTF-8, but control characters
    b"name: ok\nmodel: \x1b[31mred\x1b[0m\n",  # terminal escape codes
    bytes([0x6E, 0x3A, 0x20, 0xC3, 0x28]),  # invalid UTF-8 sequence
])
def test_binary_garbage_is_a_config_error(tmp_path, payload):
    path = tmp_path / "garbage.yaml"
    path.write_bytes(payload)
    with pytest.raises(ConfigError):
        load(str(path))


def test_unhashable_yaml_keys_are_a_config_error():
    for text in ("? [a, b]\n: 1\n", "? {a: 1}\n: 2\n", "model:\n  ? [x]\n  : 1\n"):
        with pytest.raises(ConfigError):
            parse_yaml(text)


def test_unhashable_component_names_are_config_errors(tmp_path):
    path = write(tmp_path, """
        name: x
        data: {dataset: {name: digits}}
        model: {name: [mlp]}
        optimizer: {name: {adam: 1}}
    """)
    with pytest.raises(ConfigError) as info:
        load(str(path))
    keys = [p.split(":")[0] for p in info.value.problems]
    assert "model.name" in keys and "optimizer.name" in keys, info.value.problems


# ---------------------------------------------------------------- no torch on the validation path


def test_validation_does_not_import_torch(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_digits_config(
        model={"name": "sequential", "layers": ["flatten", {"linear": 16}, "relu", "linear"]},
        scheduler={"name": "onecycle"}, callbacks=[{"name": "early_stopping"}])))
    code = textwrap.dedent(f"""
        import sys
        from dlcli.config import load, validate
        from dlcli.errors import ConfigError
        load({str(path)!r}, ["optimizer.lr=0.1", "model.layers.1.linear=8"])
        try:
            validate({{"name": "x", "model": {{"name": "cnn", "chanels": 3}}}})
        except ConfigError:
            pass
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
        print("HEAVY", heavy)
        sys.exit(1 if heavy else 0)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- property-based: ConfigError or a Config, nothing else

REG_NAMES = sorted({n for reg in registries().values() for n in reg.names()})
KEYS = sorted({"name", "seed", "task", "data", "model", "loss", "optimizer", "scheduler", "train", "callbacks",
               "output", "dataset", "val_split", "batch_size", "train_transforms", "eval_transforms",
               "class_weights", "epochs", "device", "precision", "grad_clip", "max_norm", "max_value",
               "accumulate", "l1", "monitor", "mode", "hidden", "layers", "lr", "patience", "normalize",
               "warmup_epochs", "milestones", "preset", "size", "linear", "flatten"})
TEXTS = REG_NAMES + KEYS + ["val/loss", "val/acc", "train/acc", "auto", "cpu", "cuda", "digits", "num_classes",
                            "balanced", "fp16", "min", "max"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.integers(-(2 ** 70), 2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(TEXTS), st.text(max_size=10),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), inner, max_size=4)),
    max_leaves=10,
)


def paths(node, prefix=()):
    """Every dotted path (tuples) into a nested config."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, (*prefix, i))


def base_config():
    return tiny_digits_config(scheduler={"name": "cosine", "warmup_epochs": 1},
                              callbacks=[{"name": "early_stopping", "monitor": "val/acc"}],
                              model={"name": "sequential", "layers": ["flatten", {"linear": 16}, "relu", "linear"]})


@st.composite
def mutated_configs(draw):
    data = base_config()
    for _ in range(draw(st.integers(1, 4))):
        candidates = [p for p in paths(data) if p]
        path = draw(st.sampled_from(candidates))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(values)
        else:
            parent[path[-1]] = draw(values)
    return data


def validate_or_config_error(data, overrides=(), **kwargs):
    try:
        config = validate(data, list(overrides), **kwargs)
    except ConfigError as err:
        assert err.problems and all(isinstance(p, str) and p for p in err.problems)
        return None
    assert isinstance(config, Config)
    return config


PROPERTY = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY
@given(mutated_configs())
def test_property_mutated_configs_validate_or_raise_config_error(data):
    validate_or_config_error(data)


yaml_tokens = st.sampled_from(
    [":", ": ", "- ", "-", "[", "]", "{", "}", ",", "&a ", "*a", "!!str ", "!!python/object/apply:os.system ",
     "? ", "|", ">", "'", '"', "#", "\n", "\n  ", "\n    ", "\t", "%YAML 1.1\n", "---\n", "...\n", "<<: ", "~",
     "1", "0.5", "-3", ".inf", ".nan", "true", "null", "2020-01-01", "0x1F", "1e400"] + TEXTS
)


@PROPERTY
@given(st.lists(yaml_tokens, max_size=40), st.booleans())
def test_property_yaml_text_parses_and_validates_or_raises_config_error(tokens, prefix_valid):
    text = "".join(tokens)
    if prefix_valid:
        text = yaml.safe_dump(base_config(), sort_keys=False) + text
    try:
        data, lines = parse_yaml(text, "fuzz.yaml")
    except ConfigError:
        return
    validate_or_config_error(data, lines=lines, source="fuzz.yaml")


override_keys = st.lists(st.one_of(st.sampled_from(KEYS), st.sampled_from(["0", "1", "7", "x", ""]),
                                   st.text(max_size=4)), min_size=0, max_size=4).map(".".join)
override_values = st.one_of(st.sampled_from(["", "1", "[1, 2]", "{a: 1}", "[", "]", "null", "digits", "val/acc",
                                             "!!python/object/apply:os.system [x]", "&a [*a]", "cosine", "-1",
                                             "1e9", "{name: adam, lr: 0.1}"]),
                            st.text(max_size=12))


@PROPERTY
@given(st.lists(st.tuples(override_keys, st.sampled_from(["=", "", "==", ":"]), override_values), max_size=4))
def test_property_override_strings_validate_or_raise_config_error(items):
    overrides = [f"{k}{sep}{v}" for k, sep, v in items]
    validate_or_config_error(base_config(), overrides)


@pytest.mark.parametrize("text, key", [
    ("train: {epochs: 1e12}", "train.epochs"),
    ("train: {epochs: 1000000000000}", "train.epochs"),
    ("data: {batch_size: 0}", "data.batch_size"),
    ("optimizer: {name: adam, lr: -1}", "optimizer.lr"),
    ("optimizer: {name: adam, lr: .nan}", "optimizer.lr"),
    ("optimizer: {name: sgd, lr: .inf}", "optimizer.lr"),
    ("train: {accumulate: -3}", "train.accumulate"),
    ("data: {val_split: 1.5}", "data.val_split"),
])
def test_nonsensical_numbers_are_config_errors_naming_the_key(tmp_path, text, key):
    base = {"name": "n", "data": {"dataset": {"name": "digits"}}, "model": {"name": "mlp"}}
    extra = yaml.safe_load(text)
    for section, values in extra.items():
        base[section] = {**base.get(section, {}), **values}
    path = tmp_path / "n.yaml"
    path.write_text(yaml.safe_dump(base))
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert any(line.startswith(f"{key}:") for line in info.value.problems), info.value.problems


@pytest.mark.parametrize("override, key", [
    ("seed=4294967296", "seed"),  # numpy and torch seed with at most 2**32 - 1
    ("data.dataset.test_fraction=0", "data.dataset.test_fraction"),
    ("data.dataset.test_fraction=0.999", "data.dataset.test_fraction"),
])
def test_values_that_would_fail_only_at_run_time_are_config_errors(override, key):
    with pytest.raises(ConfigError) as info:
        validate(tiny_digits_config(), [override])
    assert any(line.startswith(f"{key}:") for line in info.value.problems), info.value.problems


def test_non_string_monitor_is_a_config_error_not_a_crash():
    config = tiny_digits_config(callbacks=[{"name": "early_stopping", "monitor": []}])
    with pytest.raises(ConfigError, match=r"callbacks\.0\.monitor"):
        validate(config)


@pytest.mark.parametrize("train, key", [
    ({"checkpoint_every": {}}, "train.checkpoint_every"),
    ({"checkpoint_every": {"steps": 5, "minutes": 1}}, "train.checkpoint_every"),
    ({"checkpoint_every": {"steps": 0}}, "train.checkpoint_every.steps"),
    ({"checkpoint_every": {"minutes": -1}}, "train.checkpoint_every.minutes"),
    ({"keep_last": 0}, "train.keep_last"),
    ({"on_nan": "ignore"}, "train.on_nan"),
    ({"deterministic": "sometimes"}, "train.deterministic"),
    ({"devices": 0}, "train.devices"),
    ({"devices": "two"}, "train.devices"),
    ({"tbptt": "sometimes"}, "train.tbptt"),
    ({"compile": "sometimes"}, "train.compile"),
])
def test_reliability_options_are_checked(train, key):
    assert_section_value_rejected("train", train, key)


def assert_section_value_rejected(section: str, values: dict, key: str) -> None:
    """Merging `values` into a tiny config's `section` is a config error whose problem names `key`."""
    config = tiny_digits_config()
    config[section] = {**config[section], **values}
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert any(p.startswith(f"{key}:") for p in info.value.problems), info.value.problems


def test_logging_section_is_checked():
    with pytest.raises(ConfigError, match=r"logging\.tensorbord: unknown key \(did you mean 'tensorboard'\?\)"):
        validate({**tiny_digits_config(), "logging": {"tensorbord": True}})


@pytest.mark.parametrize("data, key", [({"loader": "gpu"}, "data.loader"), ({"memory_budget_gb": 0}, "data.memory_budget_gb")])
def test_loader_options_are_checked(data, key):
    assert_section_value_rejected("data", data, key)
