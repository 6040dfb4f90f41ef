"""Verified checkpoints: the digest (every flipped bit is caught, files without one still load),
non-finite weights, errors of an embedded config that name the checkpoint, and a resume that checks
every section against the trainer before it changes anything in the run directory.

CLI cases that are about what a real process does (exit code, one line, files untouched) run
`python -m dlcli` through `run_cli`; the rest run in process.
"""

import io
import math
import os
import random
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.errors import CheckpointError, ConfigError
from dlcli.training import checkpoint, digest
from tests.conftest import REPO, tiny_digits_config

DIGIT_PNG = REPO / "examples" / "digits" / "digit_0.png"
# a scheduler and a callback, so their sections are checked too; a checkpoint every 5 steps
CONFIG = tiny_digits_config(train={"epochs": 2, "device": "cpu", "log_interval": 5,
                                   "checkpoint_every": {"steps": 5}, "keep_last": 20},
                            scheduler={"name": "step", "step_size": 1, "gamma": 0.5},
                            callbacks=[{"name": "early_stopping", "patience": 5}])
BOUNDARY, MID_EPOCH = "step-000000018.pt", "step-000000025.pt"  # the end of epoch 1; batch 7 of epoch 2


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real two-epoch run (checkpoints at steps 5, 10, 15, 18, 20, ..., 36): its run directory."""
    from dlcli.training.session import train

    config = validate(CONFIG)
    summary = train(config, str(tmp_path_factory.mktemp("integrity") / "runs"), None,
                    Progress(config.train.epochs, quiet=True, stream=io.StringIO()))
    return Path(summary["run_dir"])


@pytest.fixture(scope="module")
def trainer():
    from dlcli.training.build import build_trainer

    return build_trainer(validate(CONFIG))[0]


def raw(path: Path) -> dict:
    """A checkpoint as torch reads it, without dlcli's checks (and without its digest)."""
    import torch

    payload = torch.load(path, weights_only=True)
    payload.pop("digest", None)
    return payload


def write_raw(payload: dict, path: Path) -> None:
    """torch.save to a new file renamed over `path` (never through a hard link to a sibling)."""
    import torch

    tmp = path.with_name(path.name + ".new")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a run directory but its lock file (which names the last process that held it)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def one_error_line(proc, code: int = 4) -> str:
    """A real process: its exit code, one `error:` line (plus hints), no traceback; returns the line."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), proc.stderr
    assert all(line.startswith("hint: ") for line in lines[1:]), proc.stderr
    return lines[0]


def invoke(*args):
    from dlcli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert isinstance(result.exception, (SystemExit, type(None))), repr(result.exception)
    return result


def error_line(result, code: int = 4) -> str:
    assert result.exit_code == code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def record_data(path: Path) -> dict[str, tuple[int, int]]:
    """Each record of torch's zip file -> (offset of its bytes in the file, their length)."""
    with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
        out = {}
        for info in archive.infolist():
            handle.seek(info.header_offset)
            name_len, extra_len = struct.unpack("<HH", handle.read(30)[26:30])
            out[info.filename] = (info.header_offset + 30 + name_len + extra_len, info.file_size)
    return out


def flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- the digest


def test_save_stores_a_digest_of_every_section_that_load_verifies_and_takes_out(run, tmp_path):
    import torch

    path = run / "checkpoints" / "last.pt"
    stored = torch.load(path, weights_only=True)["digest"]
    payload = checkpoint.load(path)
    assert "digest" not in payload
    assert stored["algorithm"] == digest.ALGORITHM and list(stored["sections"]) == list(payload)
    assert all(len(value) == 32 for value in stored["sections"].values())  # 128-bit hex digests
    assert digest.section_digests(payload, payload) == stored["sections"]
    checkpoint.save(payload, tmp_path / "again.pt")  # what load returns saves (and verifies) again
    assert checkpoint.load(tmp_path / "again.pt")["state"] == payload["state"]
    checkpoint.save(torch.load(path, weights_only=True), tmp_path / "stale.pt")  # an old digest is replaced
    assert checkpoint.load(tmp_path / "stale.pt")["state"] == payload["state"]


def test_a_section_the_digest_does_not_cover_is_a_mismatch_and_one_taken_out_is_left_to_the_section_checks(
        run, tmp_path):
    import torch

    full = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    write_raw({**full, "extra": 1}, tmp_path / "more.pt")
    with pytest.raises(CheckpointError, match=r"is corrupted \(digest mismatch\)"):
        checkpoint.load(tmp_path / "more.pt")
    write_raw({k: v for k, v in full.items() if k != "metrics"}, tmp_path / "fewer.pt")
    assert "metrics" not in checkpoint.load(tmp_path / "fewer.pt")  # what is left still verifies
    write_raw({k: v for k, v in full.items() if k != "model"}, tmp_path / "no_model.pt")
    with pytest.raises(CheckpointError, match=r"incomplete dlcli checkpoint \(missing model"):
        checkpoint.load(tmp_path / "no_model.pt")


def test_eval_verifies_what_it_reads_and_resume_verifies_the_training_state_too(run, tmp_path):
    """A flip in Adam's moments: eval (which never reads them) works; a resume refuses the file."""
    import torch

    copy = tmp_path / "runs" / "tiny" / "v1"
    shutil.copytree(run, copy)
    last = copy / "checkpoints" / "last.pt"
    offset, size = record_data(last)[next(n for n in record_data(last) if n.endswith("/data/5"))]
    flip_bit(last, offset + size // 2)
    flipped, good = torch.load(last, weights_only=True), torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert not torch.equal(flipped["optimizer"]["state"][0]["exp_avg"], good["optimizer"]["state"][0]["exp_avg"])
    assert all(torch.equal(flipped["model"][k], good["model"][k]) for k in good["model"])
    assert invoke("eval", last, "--split", "val").exit_code == 0
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    before = snapshot(copy)
    line = error_line(invoke("train", cfg, "--resume", copy, "-q"))
    assert line == f"error: checkpoint {last} is corrupted (digest mismatch)"
    assert snapshot(copy) == before


def test_a_flipped_bit_in_any_tensor_is_a_digest_mismatch(run, tmp_path):
    good = run / "checkpoints" / "last.pt"
    records = {name: where for name, where in record_data(good).items() if "/data/" in name and where[1]}
    assert len(records) >= 10  # weights, Adam's moments, RNG states, ...
    for name, (offset, size) in records.items():
        path = tmp_path / "flipped.pt"
        shutil.copyfile(good, path)
        flip_bit(path, offset + size // 2, bit=3)
        with pytest.raises(CheckpointError) as caught:
            checkpoint.load(path)
        assert str(caught.value) == f"checkpoint {path} is corrupted (digest mismatch)", name


def test_without_a_digest_the_same_flip_goes_unnoticed(run, tmp_path):
    """Why the digest is there: torch itself reads flipped tensor bytes without a word."""
    import torch

    payload = checkpoint.load(run / "checkpoints" / "last.pt")
    path = tmp_path / "legacy.pt"
    checkpoint.save(payload, path, with_digest=False)
    weight = next(name for name in record_data(path) if name.endswith("/data/0"))
    offset, size = record_data(path)[weight]
    flip_bit(path, offset + size // 2, bit=6)
    loaded = checkpoint.load(path)
    assert any(not torch.equal(loaded["model"][k], payload["model"][k]) for k in payload["model"])


def test_a_flipped_bit_in_the_embedded_config_is_exit_4_naming_the_checkpoint(run, tmp_path):
    """The issue's case: `stratify` read back as `stratafy` was a config error (exit 2) that did not
    name the checkpoint."""
    path = tmp_path / "config-flip.pt"
    data = (run / "checkpoints" / "last.pt").read_bytes()
    assert data.count(b"stratify") == 1
    path.write_bytes(data.replace(b"stratify", b"stratafy"))  # 'i' ^ 'a' is 8: one bit
    line = error_line(invoke("eval", path, "--split", "val"))
    assert line == f"error: checkpoint {path} is corrupted (digest mismatch)"


def test_eval_of_a_bit_flipped_checkpoint_is_exit_4_in_a_real_process(run, tmp_path, run_cli):
    path = tmp_path / "flipped.pt"
    shutil.copyfile(run / "checkpoints" / "last.pt", path)
    offset, size = record_data(path)[next(n for n in record_data(path) if n.endswith("/data/0"))]
    flip_bit(path, offset + size // 2, bit=6)  # an exponent bit: eval printed NaN or huge losses
    line = one_error_line(run_cli("eval", path, "--split", "val"))
    assert line == f"error: checkpoint {path} is corrupted (digest mismatch)"


def test_checkpoints_written_before_digests_load_and_evaluate_silently(run, tmp_path):
    import torch

    path = tmp_path / "old.pt"
    checkpoint.save(checkpoint.load(run / "checkpoints" / "last.pt"), path, with_digest=False)
    assert "digest" not in torch.load(path, weights_only=True)
    assert checkpoint.load(path)["state"]["step"] == 36
    result = invoke("eval", path, "--split", "val", "--json")
    assert result.exit_code == 0, result.stderr
    assert "digest" not in result.stderr.lower() and "warning" not in result.stderr.lower(), result.stderr


def test_an_unknown_digest_algorithm_is_exit_4(run, tmp_path):
    payload = raw(run / "checkpoints" / "last.pt")
    path = tmp_path / "future.pt"
    write_raw({**payload, "digest": {"algorithm": "sha3-512", "value": "00"}}, path)
    with pytest.raises(CheckpointError, match=r"unknown digest algorithm 'sha3-512'"):
        checkpoint.load(path)


def test_the_digest_covers_values_types_shapes_and_dtypes():
    import torch

    base = {"config": {"lr": 0.1, "name": "a", "n": 3, "flags": [True, None]}, "w": torch.arange(6.0),
            "ints": torch.zeros(4, dtype=torch.int32), "betas": (0.9, 0.999)}
    variants = [
        {**base, "config": {**base["config"], "lr": 0.1000001}},
        {**base, "config": {**base["config"], "name": "b"}},
        {**base, "config": {**base["config"], "n": 4}},
        {**base, "config": {**base["config"], "flags": [False, None]}},
        {**base, "config": {**base["config"], "n": 3.0}},  # same number, another type
        {**base, "w": torch.arange(6.0).reshape(2, 3)},  # same bytes, another shape
        {**base, "ints": torch.zeros(4, dtype=torch.float32)},  # same bytes, another dtype
        {**base, "betas": [0.9, 0.999]},  # a list is not a tuple
        {**base, "w": torch.arange(6.0) + torch.tensor([0, 0, 0, 1e-6, 0, 0])},
    ]
    digests = {digest.compute(value) for value in variants}
    assert digest.compute(base) == digest.compute({**base}) and digest.compute(base) not in digests
    assert len(digests) == len(variants)


def test_large_tensors_are_hashed_in_segments_in_parallel_alike(monkeypatch):
    import torch

    monkeypatch.setattr(digest, "SEGMENT", 1000)  # 4 KB tensors cross several segments
    tensors = [torch.randn(1000), torch.randn(3), torch.randn(0), torch.randn(250, 4)]
    views = [digest._raw_bytes(t) for t in tensors]
    segments = digest._segments(views)
    assert [sum(len(v) for v in s) for s in segments] == [1000] * 8 + [12]
    assert b"".join(bytes(v) for s in segments for v in s) == b"".join(bytes(v) for v in views)
    value = digest.compute({"t": tensors})
    changed = [t.clone() for t in tensors]
    changed[3][-1, -1] += 1
    assert digest.compute({"t": [t.clone() for t in tensors]}) == value != digest.compute({"t": changed})


# ---------------------------------------------------------------- non-finite weights


@pytest.fixture(scope="module")
def nan_checkpoint(run, tmp_path_factory) -> Path:
    """A genuine (digest-verified) checkpoint whose second layer diverged."""
    payload = checkpoint.load(run / "checkpoints" / "last.pt")
    payload["model"]["3.weight"][2, 5] = math.nan
    path = tmp_path_factory.mktemp("nan") / "nan.pt"
    checkpoint.save(payload, path)
    return path


def test_eval_of_nan_weights_is_exit_4_naming_the_layer_in_a_real_process(nan_checkpoint, run_cli):
    line = one_error_line(run_cli("eval", nan_checkpoint, "--split", "val"))
    assert line == f"error: checkpoint {nan_checkpoint} holds non-finite weights in 3.weight"


def test_infer_and_export_of_nan_weights_are_exit_4(nan_checkpoint, tmp_path):
    expected = f"error: checkpoint {nan_checkpoint} holds non-finite weights in 3.weight"
    assert error_line(invoke("infer", nan_checkpoint, DIGIT_PNG)) == expected
    out = tmp_path / "model.safetensors"
    assert error_line(invoke("export", nan_checkpoint, "--format", "safetensors", "--output", out)) == expected
    assert not out.exists()


def test_a_buffer_that_is_not_finite_by_construction_is_no_finding():
    import torch

    from dlcli.training.verify import non_finite

    model = torch.nn.Linear(2, 2)
    model.register_buffer("mask", torch.tensor([0.0, -math.inf]))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert non_finite(state, model) == []
    state["bias"][0], state["weight"][1, 1] = math.inf, math.nan
    assert non_finite(state, model) == ["weight", "bias"]


# ---------------------------------------------------------------- the embedded config names the checkpoint


def test_problems_of_the_embedded_config_name_the_checkpoint(run, tmp_path):
    good = run / "checkpoints" / "last.pt"
    line = error_line(invoke("eval", good, "data.batch_size=0", "--split", "val"), code=2)
    assert line.startswith(f"error: checkpoint {good}: data.batch_size:") and "command-line override" in line, line
    line = error_line(invoke("eval", good, "model.hidden=[8]", "--split", "val"))
    assert line.startswith(f"error: {good}: checkpoint weights do not fit the model its config builds: "), line

    payload = checkpoint.load(good)
    payload["config"]["data"]["stratafy"] = payload["config"]["data"].pop("stratify")
    older = tmp_path / "older.pt"
    checkpoint.save(payload, older, with_digest=False)  # e.g. written by a dlcli with another schema
    line = error_line(invoke("eval", older, "--split", "val"))
    assert line.startswith(f"error: checkpoint {older}: its embedded config does not validate: "
                           "data.stratafy: unknown key"), line

    payload = checkpoint.load(good)
    payload["meta"]["colour"] = "blue"
    checkpoint.save(payload, older)
    assert error_line(invoke("infer", older, DIGIT_PNG)).startswith(f"error: {older}: section meta: ")


def test_naming_checkpoint_prefixes_every_problem_and_keeps_the_hint():
    from dlcli.training.verify import naming_checkpoint

    with pytest.raises(ConfigError) as caught, naming_checkpoint("c.pt"):
        raise ConfigError(["model: does not fit input shape [1]", "loss.x: bad"], hint="h")
    assert caught.value.problems == ["checkpoint c.pt: model: does not fit input shape [1]",
                                     "checkpoint c.pt: loss.x: bad"]
    assert caught.value.hint == "h" and caught.value.exit_code == 2


# ---------------------------------------------------------------- resume checks every section first


def doctor_no_optimizer(p):
    del p["optimizer"]


def doctor_bad_state(p):
    p["state"]["step"] = "18"


def doctor_bad_rng(p):
    import torch

    p["rng"]["torch"] = torch.zeros(16, dtype=torch.uint8)


def doctor_wrong_shape_weight(p):
    import torch

    p["model"]["1.weight"] = torch.zeros(16, 64)


def doctor_nan_weight(p):
    p["model"]["1.bias"][3] = math.nan


RESUME_CASES = {  # doctoring -> how the error line goes on after "PATH"
    "no optimizer": (doctor_no_optimizer, ": cannot resume: section optimizer: missing"),
    "bad state": (doctor_bad_state, ": cannot resume: section state: step is not a count (got '18')"),
    "bad rng": (doctor_bad_rng, ": cannot resume: section rng: cannot be restored (RuntimeError: "),
    "wrong-shape weight": (doctor_wrong_shape_weight,
                           ": cannot resume: section model: 1.weight has shape [16, 64], the model's is [32, 64]"),
}


def doctored_run(run: Path, tmp_path: Path, doctor) -> tuple[Path, Path, Path]:
    """A copy of the run whose last.pt is the end of epoch 1, doctored (metrics.jsonl goes on to
    step 36, so a resume that truncated it would show): (run dir, last.pt, config file)."""
    copy = tmp_path / "runs" / "tiny" / "v1"
    shutil.copytree(run, copy)
    payload = raw(copy / "checkpoints" / BOUNDARY)
    doctor(payload)
    write_raw(payload, copy / "checkpoints" / "last.pt")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    return copy, copy / "checkpoints" / "last.pt", cfg


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_from_a_doctored_checkpoint_is_exit_4_and_changes_nothing(run, tmp_path, run_cli, case):
    doctor, rest = RESUME_CASES[case]
    copy, last, cfg = doctored_run(run, tmp_path, doctor)
    before = snapshot(copy)
    line = one_error_line(run_cli("train", cfg, "--resume", copy, "-q"))
    assert line.startswith(f"error: {last}{rest}"), line
    assert snapshot(copy) == before  # metrics.jsonl, config.yaml, checkpoints: byte for byte
    assert sorted(p.name for p in (tmp_path / "runs" / "tiny").iterdir()) == ["v1"]


def test_resume_from_nan_weights_is_exit_4_and_changes_nothing(run, tmp_path):
    copy, last, cfg = doctored_run(run, tmp_path, doctor_nan_weight)
    before = snapshot(copy)
    line = error_line(invoke("train", cfg, "--resume", copy, "-q"))
    assert line == f"error: checkpoint {last} holds non-finite weights in 1.bias"
    assert snapshot(copy) == before


def state_of(_trainer):
    import numpy as np
    import torch

    return random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state().tolist()


def _groups(p, n):
    p["optimizer"]["param_groups"] = p["optimizer"]["param_groups"] * n


SECTION_CASES = {  # name -> (checkpoint, doctoring, section, phrase)
    "optimizer moment shape": (BOUNDARY, lambda p: p["optimizer"]["state"][0].update(
        exp_avg=p["optimizer"]["state"][0]["exp_avg"][:3]), "optimizer", "state.0.exp_avg has shape [3, 64]"),
    "optimizer groups": (BOUNDARY, lambda p: _groups(p, 2), "optimizer", "holds 2 parameter groups"),
    "optimizer lr": (BOUNDARY, lambda p: p["optimizer"]["param_groups"][0].update(lr="fast"), "optimizer",
                     "param_groups.0.lr is not a number"),
    "optimizer not a state": (BOUNDARY, lambda p: p.update(optimizer=[1, 2]), "optimizer",
                              "is not an optimizer state"),
    "scheduler garbage": (BOUNDARY, lambda p: p["scheduler"]["per_step"].update(last_epoch="x"), "scheduler",
                          "per_step.last_epoch is not an integer"),
    "scheduler not a mapping": (BOUNDARY, lambda p: p.update(scheduler=3), "scheduler", "is not a mapping"),
    "callbacks count": (BOUNDARY, lambda p: p.update(callbacks=[]), "callbacks", "is not a list of 1"),
    "callback state": (BOUNDARY, lambda p: p["callbacks"][0].pop("wait"), "callbacks", "KeyError"),
    "scaler": (BOUNDARY, lambda p: p.update(scaler=None), "scaler", "is not a mapping"),
    "state best": (BOUNDARY, lambda p: p["state"].update(best="low"), "state", "best is not a number"),
    "state missing best_epoch": (BOUNDARY, lambda p: p["state"].pop("best_epoch"), "state", "best_epoch is missing"),
    "position": (BOUNDARY, lambda p: p.update(position=None), "position", "is not a mapping"),
    "mid-epoch shuffle": (MID_EPOCH, lambda p: p["position"].update(epoch_shuffle_state=None), "position",
                          "epoch_shuffle_state is not a random generator's state"),
    "mid-epoch running": (MID_EPOCH, lambda p: p["position"]["running"].update(count="7"), "position",
                          "running.count is not an integer"),
    "mid-epoch running shape": (MID_EPOCH, lambda p: p["position"]["running"].update(
        confusion=p["position"]["running"]["confusion"][:3]), "position", "cannot be restored (RuntimeError"),
    "rng python": (BOUNDARY, lambda p: p["rng"].update(python=(3, (1, 2), None)), "rng", "cannot be restored"),
    "rng shuffle": (BOUNDARY, lambda p: p["rng"].pop("shuffle"), "rng", "shuffle missing"),
    "weights missing": (BOUNDARY, lambda p: p["model"].pop("3.bias"), "model", "missing 3.bias"),
}


@pytest.mark.parametrize("case", list(SECTION_CASES))
def test_every_section_is_checked_against_the_trainer_without_changing_it(run, trainer, case):
    from dlcli.training.resume_checks import check_resumable

    name, doctor, section, phrase = SECTION_CASES[case]
    payload = raw(run / "checkpoints" / name)
    check_resumable(payload, trainer, "ck.pt")  # the checkpoint as written fits
    before = state_of(trainer), {k: v.clone() for k, v in trainer.model.state_dict().items()}
    doctor(payload)
    with pytest.raises(CheckpointError) as caught:
        check_resumable(payload, trainer, "ck.pt")
    message = str(caught.value)
    assert message.startswith(f"ck.pt: cannot resume: section {section}: ") and phrase in message, message
    assert "\n" not in message
    after = state_of(trainer), trainer.model.state_dict()
    assert before[0] == after[0]  # the RNG trial put every generator back
    assert all(v.equal(after[1][k]) for k, v in before[1].items())
    assert trainer.optimizer.state_dict()["state"] == {}  # nothing was loaded into the trainer


def test_a_section_taken_out_of_a_checkpoint_with_its_digest_is_named_missing_not_corrupted(run, tmp_path, run_cli):
    """What a user doing `del ck["optimizer"]; torch.save(ck, ...)` gets: the digest still covers
    every section left, so the missing one is named (found by a new-user review)."""
    import torch

    copy, last, cfg = doctored_run(run, tmp_path, lambda payload: None)
    payload = torch.load(run / "checkpoints" / BOUNDARY, weights_only=True)
    del payload["optimizer"]
    write_raw(payload, last)  # the original digest kept
    before = snapshot(copy)
    line = one_error_line(run_cli("train", cfg, "--resume", copy, "-q"))
    assert line.startswith(f"error: {last}: cannot resume: section optimizer: missing"), line
    assert snapshot(copy) == before
