"""infer --output: written atomically; a file name that is not UTF-8 is written, never a crash."""

import csv
import io
import json
import os

import pytest

from dlcli.cli.progress import Progress
from dlcli.cli.report import write_predictions
from dlcli.config import validate
from dlcli.training.session import train
from tests.conftest import tiny_digits_config

NAME = b"img_\xff.png"  # not UTF-8: os.fsdecode gives "img_\udcff.png"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A digits classifier, and a folder with one image named in UTF-8 and one not."""
    from PIL import Image

    root = tmp_path_factory.mktemp("infer")
    config = validate(tiny_digits_config(train={"epochs": 1, "device": "cpu"}))
    summary = train(config, str(root / "runs"), None, Progress(1, quiet=True, stream=io.StringIO()))
    folder = root / "images"
    folder.mkdir()
    Image.new("L", (8, 8), 200).save(folder / "a.png")
    Image.new("L", (8, 8), 50).save(os.fsencode(folder) + b"/" + NAME)
    return summary["checkpoints"]["last"], folder


def test_csv_keeps_the_bytes_of_a_non_utf8_name_and_json_escapes_it(run_cli, images, tmp_path):
    checkpoint, folder = images
    result = run_cli("infer", checkpoint, folder, "--output", tmp_path / "preds.csv", "--json")
    assert result.returncode == 0, result.stderr
    assert [os.fsencode(row["input"]) for row in json.loads(result.stdout)] == [
        os.fsencode(folder / "a.png"), os.fsencode(folder) + b"/" + NAME]  # \udcff in JSON: the bytes come back
    with open(tmp_path / "preds.csv", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [os.fsencode(row["input"]) for row in rows] == [os.fsencode(folder / "a.png"),
                                                           os.fsencode(folder) + b"/" + NAME]
    assert b"/" + NAME + b"," in (tmp_path / "preds.csv").read_bytes()  # the name's own bytes


def test_jsonl_and_the_table_show_a_non_utf8_name(run_cli, images, tmp_path):
    checkpoint, folder = images
    jsonl = run_cli("infer", checkpoint, folder, "--output", tmp_path / "preds.jsonl")
    assert jsonl.returncode == 0, jsonl.stderr
    lines = (tmp_path / "preds.jsonl").read_text(encoding="ascii").splitlines()
    assert os.fsencode(json.loads(lines[1])["input"]) == os.fsencode(folder) + b"/" + NAME
    # a strict UTF-8 stdout (PYTHONIOENCODING, or a UTF-8 locale other than C) cannot encode a lone surrogate
    table = run_cli("infer", checkpoint, folder, env={"PYTHONIOENCODING": "utf-8"})
    assert table.returncode == 0, table.stderr
    assert "img_\\xff.png" in table.stdout


def test_a_failure_partway_leaves_an_existing_predictions_file_as_it_was(tmp_path):
    top = [{"class": "cat", "probability": 0.9}]
    rows = [{"input": "a.png", "class": "cat", "probability": 0.9, "top_k": top}, {"input": "b.png"}]
    for name in ("preds.csv", "preds.jsonl"):
        old = tmp_path / name
        old.write_text("from an earlier run\n")
        with pytest.raises((KeyError, TypeError)):
            write_predictions([*rows, {"input": object()}] if name.endswith(".jsonl") else rows, str(old))
        assert old.read_text() == "from an earlier run\n"
    assert sorted(os.listdir(tmp_path)) == ["preds.csv", "preds.jsonl"]  # no temporary left
