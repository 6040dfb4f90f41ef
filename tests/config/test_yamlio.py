"""Hostile config files and values (dlcli/config/yamlio.py): integers of any length are config errors
naming their key, and a config file is checked (regular file, size) before any of it is read."""

import os
import subprocess
import sys

import pytest

from dlcli.config import load
from dlcli.config.yamlio import MAX_YAML_BYTES
from dlcli.errors import ConfigError
from tests.conftest import REPO

DIGITS = "9" * 5000  # Python refuses to convert more than 4300 decimal digits to an int
MINIMAL = "data:\n  dataset: {name: digits}\nmodel: {name: mlp}\n"


def problems(path, overrides=()) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(str(path), list(overrides))
    assert info.value.exit_code == 2
    return info.value.problems


def test_a_5000_digit_seed_in_the_file_names_the_key_and_line(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(f"seed: {DIGITS}\n{MINIMAL}")
    assert problems(path) == [f"seed: integer out of range (5000 digits); integers lie within +-(2**63 - 1)  [{path}:1]"]


@pytest.mark.parametrize("key", ["seed", "data.batch_size", "train.log_interval", "model.hidden.0"])
def test_a_huge_integer_override_names_the_key(tmp_path, key):
    path = tmp_path / "exp.yaml"
    path.write_text(MINIMAL)
    value = f"[{DIGITS}]" if key == "model.hidden.0" else DIGITS
    override = "model.hidden" if key == "model.hidden.0" else key
    assert problems(path, [f"{override}={value}"]) == [
        f"{key}: integer out of range (5000 digits); integers lie within +-(2**63 - 1)  [command-line override]"]


def test_integers_past_int64_are_refused_and_in_range_ones_meet_the_schema(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(MINIMAL)
    # log_interval has no upper bound of its own: 2**63 would overflow torch later
    assert problems(path, [f"train.log_interval={2**63}"]) == [
        f"train.log_interval: integer out of range ({2**63}); integers lie within +-(2**63 - 1)  [command-line override]"]
    assert problems(path, [f"seed={2**63 - 1}"]) == [
        "seed: Input should be less than or equal to 4294967295 (got 9223372036854775807)  [command-line override]"]
    assert load(str(path), [f"train.log_interval={2**63 - 1}"]).train.log_interval == 2**63 - 1


def test_an_explicit_int_tag_on_text_is_a_config_error(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(f"seed: !!int abc\n{MINIMAL}")
    assert problems(path) == [f"seed: not an integer: 'abc'  [{path}:1]"]


@pytest.mark.parametrize("via_extends", [False, True])
def test_a_huge_sparse_config_is_refused_before_it_is_read(tmp_path, via_extends):
    """A 2 GiB file (sparse: no disk) used to be read whole, 3 GB of memory, before it was refused."""
    big = tmp_path / "big.yaml"
    with open(big, "wb") as handle:
        handle.write(b"seed: 1\n")
        handle.truncate(2 * 1024**3)
    path = big
    if via_extends:
        path = tmp_path / "child.yaml"
        path.write_text("extends: big.yaml\n")
    assert problems(path) == [f"{big if via_extends else path}: file larger than {MAX_YAML_BYTES} bytes "
                              f"({2 * 1024**3} bytes)"]


def test_a_fifo_config_or_base_is_refused_without_waiting_for_a_writer(tmp_path):
    """Real processes with a timeout: opening a FIFO for reading blocks until a writer comes."""
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    child = tmp_path / "child.yaml"
    child.write_text("extends: pipe.yaml\n")
    for config in (fifo, child):
        result = subprocess.run([sys.executable, "-m", "dlcli", "validate", str(config)], capture_output=True,
                                text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == f"error: {fifo}: a FIFO (named pipe), not a regular file"
