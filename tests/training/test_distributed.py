"""DDP through torchrun on CPU (gloo), with real processes: 2 processes with global batch B train
the same weights as 1 process with batch B; their checkpoint evaluates in one process with the
accuracy the run reported; SIGTERM to the launcher leaves a resumable checkpoint."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO, tiny_digits_config

MODELS = {"mlp": {"name": "mlp", "hidden": [32], "dropout": 0.0},
          "cnn": {"name": "cnn", "channels": [8, 16], "batch_norm": False, "head": [16]}}


def dlcli(args, cwd, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "dlcli", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, **kwargs)


def weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_two_processes_match_one_process_with_the_same_global_batch(model, tmp_path, write_config):
    # 1,150 training images in batches of 64: every batch, the last included, splits evenly over 2 ranks.
    config = write_config(tiny_digits_config(model=MODELS[model], optimizer={"name": "sgd", "lr": 0.1},
                                             train={"epochs": 2, "device": "cpu"}))
    one = dlcli(["train", config, "--output-dir", tmp_path, "--run-version", "one", "-q", "--json"], tmp_path)
    two = dlcli(["train", config, "--output-dir", tmp_path, "--run-version", "two", "-q", "--json",
                 "--devices", "2"], tmp_path)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    a, b = weights(tmp_path / "tiny" / "one"), weights(tmp_path / "tiny" / "two")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    # The DDP run's reported validation accuracy is what one process measures on its checkpoint.
    summary = json.loads((tmp_path / "tiny" / "two" / "summary.json").read_text())
    ev = dlcli(["eval", tmp_path / "tiny" / "two" / "checkpoints" / "last.pt", "--split", "val", "--json",
                "--device", "cpu"], tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["metrics"]["acc"] == pytest.approx(summary["final"]["val/acc"], abs=1e-9)


@pytest.mark.parametrize("strategy, checkpoint, sections", [
    ({"ema": {"decay": 0.9}}, "last.pt", ("model", "train_model")),
    ({"swa": {"start_epoch": 2, "lr": 0.05, "anneal_epochs": 1}}, "swa.pt", ("model",)),
], ids=["ema", "swa"])
def test_weight_averages_under_ddp_match_one_process(strategy, checkpoint, sections, tmp_path, write_config):
    config = write_config(tiny_digits_config(model=MODELS["mlp"], optimizer={"name": "sgd", "lr": 0.1},
                                             train={"epochs": 2, "device": "cpu", **strategy}))
    for version, extra in (("one", []), ("two", ["--devices", "2"])):
        result = dlcli(["train", config, "--output-dir", tmp_path, "--run-version", version, "-q", *extra], tmp_path)
        assert result.returncode == 0, result.stderr
    one, two = (torch.load(tmp_path / "tiny" / v / "checkpoints" / checkpoint, weights_only=True) for v in ("one", "two"))
    for section in sections:
        for key in one[section]:
            torch.testing.assert_close(one[section][key], two[section][key], atol=1e-5, rtol=1e-4)


def test_sigterm_to_the_launcher_leaves_a_resumable_checkpoint(tmp_path, write_config):
    config = write_config(tiny_digits_config(train={"epochs": 400, "device": "cpu"}))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen([sys.executable, "-m", "dlcli", "train", str(config), "--output-dir", str(tmp_path),
                                 "--run-version", "r", "-q", "--devices", "2"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "tiny" / "r"
    deadline = time.time() + 120
    while not (run / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.5)  # the first epoch's checkpoint: training is under way on both ranks
    launcher.send_signal(signal.SIGTERM)
    _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 0 < summary["epochs"] < 400
    resumed = dlcli(["train", config, "--output-dir", tmp_path, "-q", "--resume", run, "--devices", "2",
                     f"train.epochs={summary['epochs'] + 1}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {summary['steps']}:" in resumed.stderr  # continues from the saved step (mid-epoch or not)
    final = json.loads((run / "summary.json").read_text())
    assert final["status"] == "finished" and final["epochs"] == summary["epochs"] + 1


def test_resuming_a_mid_epoch_checkpoint_under_ddp_reports_the_epoch_as_if_never_stopped(tmp_path, write_config):
    """The checkpoint holds the epoch's running training metrics summed over both ranks; on resume only
    rank 0 takes them up, so the epoch's train/loss and train/acc count every sample once."""
    import shutil

    config = write_config(tiny_digits_config(
        optimizer={"name": "sgd", "lr": 0.1},
        train={"epochs": 1, "device": "cpu", "checkpoint_every": {"steps": 10}, "keep_last": 100}))
    full = dlcli(["train", config, "--output-dir", tmp_path, "--run-version", "full", "-q", "--devices", "2"], tmp_path)
    assert full.returncode == 0, full.stderr
    run = tmp_path / "tiny" / "part"
    shutil.copytree(tmp_path / "tiny" / "full", run)
    resumed = dlcli(["train", config, "-q", "--devices", "2", "--resume", run / "checkpoints" / "step-000000010.pt"],
                    tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    epoch = [json.loads(line) for line in (tmp_path / "tiny" / "full" / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["event"] == "epoch"]
    again = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["event"] == "epoch"]
    assert again[0]["train/acc"] == pytest.approx(epoch[0]["train/acc"], abs=1e-12)
    assert again[0]["train/loss"] == pytest.approx(epoch[0]["train/loss"], rel=1e-5)
    assert again[0]["val/loss"] == pytest.approx(epoch[0]["val/loss"], rel=1e-5)


def test_batch_that_does_not_split_over_the_processes_is_a_config_error(tmp_path, write_config):
    config = write_config(tiny_digits_config(data={"dataset": {"name": "digits"}, "batch_size": 63}))
    result = dlcli(["train", config, "--output-dir", tmp_path, "--devices", "2"], tmp_path)
    assert result.returncode == 2, result.stderr  # found before anything is launched
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert "data.batch_size: the global batch 63 does not split evenly over 2 processes" in result.stderr
    checked = dlcli(["validate", config, "train.devices=2"], tmp_path)
    assert checked.returncode == 2 and "data.batch_size: the global batch 63" in checked.stderr


def test_a_data_error_found_by_the_workers_keeps_its_exit_code_without_a_traceback(tmp_path, write_config):
    """Data is read only inside the launched ranks: their exit code 3 is the job's, and torchrun's
    report (which rank failed first) comes without a Python traceback."""
    config = write_config(tiny_digits_config(data={"dataset": {"name": "csv", "path": str(tmp_path / "none.csv"),
                                                               "label": "y"}}))
    result = dlcli(["train", config, "--output-dir", tmp_path, "--devices", "2"], tmp_path)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and "none.csv" in result.stderr
    assert "Root Cause" in result.stderr and "distributed run with 2 processes failed" in result.stderr


@pytest.mark.parametrize("args", [["--devices", "0"], ["train.devices=0"], ["train.devices=-3"]])
def test_bad_device_counts_are_usage_errors_and_launch_nothing(args, tmp_path, write_config):
    from typer.testing import CliRunner

    from dlcli.cli import app

    config = write_config(tiny_digits_config())
    result = CliRunner().invoke(app, ["train", str(config), "--output-dir", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2, result.output
    assert "devices" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing written, no worker launched


@pytest.mark.parametrize("cache, workers", [("off", 0), ("off", 1), ("auto", 0)])
def test_file_backed_image_folder_shards_like_in_memory_data(cache, workers, tmp_path, write_config):
    from tests.data.test_datasets import image_folder_config, make_image_folder

    folder = make_image_folder(tmp_path / "data" / "colours")  # 3 colours x 6 images, batches of 6: 3 per rank
    config = write_config(image_folder_config(folder, num_workers=workers, cache=cache))
    two = dlcli(["train", config, "--output-dir", tmp_path, "--run-version", "two", "-q", "--devices", "2"], tmp_path)
    one = dlcli(["train", config, "--output-dir", tmp_path, "--run-version", "one", "-q"], tmp_path)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    # the image cache: built once, by one rank of the DDP run, while the other waited; found by the next run
    assert two.stderr.count("caching 18 images") == (cache == "auto") and "caching" not in one.stderr
    a, b = weights(tmp_path / "colours" / "one"), weights(tmp_path / "colours" / "two")  # runs outside data/
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)


def test_wgan_gp_trains_under_ddp(tmp_path, write_config):
    config = write_config(tiny_digits_config(
        task="gan", data={"dataset": {"name": "digits"}, "val_split": 0.1, "batch_size": 64},
        model={"name": "gan", "latent_dim": 8, "generator": {"type": "mlp", "hidden": [32]},
               "discriminator": {"type": "mlp", "hidden": [32]}},
        loss={"name": "wgan_gp", "n_critic": 2}, optimizer=None,
        train={"epochs": 1, "device": "cpu", "monitor": "val/g_loss"}))
    result = dlcli(["train", config, "--output-dir", tmp_path, "--run-version", "r", "-q", "--json",
                    "--devices", "2"], tmp_path)
    assert result.returncode == 0, result.stderr
    final = json.loads((tmp_path / "tiny" / "r" / "summary.json").read_text())["final"]
    assert all(map(math.isfinite, (final["train/d_loss"], final["train/g_loss"])))


class _Critic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 12), torch.nn.Tanh(),
                                       torch.nn.Linear(12, 1))

    def forward(self, x, labels=None):
        return self.net(x)


def _critic_loss(critic, penalty_critic, real, fake, shard: int):
    """The GAN task's critic loss on one shard: Wasserstein term through `critic` (DDP's wrapper),
    gradient penalty through the plain network; the interpolation draw seeded per shard."""
    from dlcli.components.losses.gan import wgan_gp

    adv = wgan_gp()
    torch.manual_seed(100 + shard)
    return (adv.discriminator(critic(real), critic(fake))
            + adv.gradient_penalty(penalty_critic, real, fake, None))


def _ddp_critic_grads(rank, world, port, out):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    critic = _Critic()
    real, fake = torch.randn(2, 8, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    part = slice(rank * 4, rank * 4 + 4)
    wrapped = DDP(critic)  # held: a collected wrapper would leave backward without its all-reduce
    _critic_loss(wrapped, critic, real[part], fake[part], rank).backward()
    if rank == 0:
        torch.save([p.grad for p in critic.parameters()], out)
    # The shutdown order dlcli's distributed.cleanup follows (issue 23): no rank inside a collective,
    # the DDP wrapper released, then the group destroyed while the interpreter is alive; a wrapper
    # still held at exit can leave a gloo thread to abort the process ("terminate called ...").
    dist.barrier()
    del wrapped
    import gc

    gc.collect()
    dist.destroy_process_group()


def test_gradient_penalty_gradients_under_ddp_equal_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_critic_grads, args=(2, _free_port(), tmp_path / "grads.pt"), nprocs=2)
    torch.manual_seed(0)
    critic = _Critic()
    real, fake = torch.randn(2, 8, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    # One process, the whole batch: the mean of the two shards' losses (what DDP's averaging computes).
    loss = sum(_critic_loss(critic, critic, real[s * 4:s * 4 + 4], fake[s * 4:s * 4 + 4], s) for s in (0, 1)) / 2
    loss.backward()
    for got, want in zip(torch.load(tmp_path / "grads.pt"), [p.grad for p in critic.parameters()]):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_other_ranks_get_their_own_random_streams(monkeypatch):
    from dlcli.training.build import seed_everything
    from dlcli.training.distributed import rank_streams

    def draws(rank, step=0):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        seed_everything(0)
        rank_streams(0, step)
        return torch.rand(4)

    seed_everything(0)
    single = torch.rand(4)
    assert torch.equal(draws(0), single)  # rank 0 keeps the single-process stream
    assert not torch.equal(draws(1), single)  # GAN noise and dropout differ across ranks
    assert torch.equal(draws(1), draws(1))  # reproducible
    assert not torch.equal(draws(1, step=50), draws(1))  # a resumed run draws fresh streams


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _rank_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as env:
            return next((int(v[5:]) for v in env.read().split(b"\0") if v.startswith(b"RANK=")), None)
    except OSError:  # exited meanwhile
        return None


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the worker processes through /proc")
def test_a_rank_that_dies_fails_the_job_with_a_clear_message(tmp_path, write_config):
    config = write_config(tiny_digits_config(train={"epochs": 400, "device": "cpu"}))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen([sys.executable, "-m", "dlcli", "train", str(config), "--output-dir", str(tmp_path),
                                 "--run-version", "r", "-q", "--devices", "2"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    run = tmp_path / "tiny" / "r"
    try:
        deadline = time.time() + 120
        while not (run / "checkpoints" / "last.pt").exists():
            assert time.time() < deadline and launcher.poll() is None, "training never got under way"
            time.sleep(0.5)
        victims = [pid for child in _children(launcher.pid) for pid in _children(child) if _rank_of(pid) == 1]
        assert len(victims) == 1, victims
        os.kill(victims[0], signal.SIGKILL)
        killed = time.time()
        _, stderr = launcher.communicate(timeout=120)
    finally:  # never leave a 400-epoch job running on the test machine
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 1, stderr
    assert time.time() - killed < 60  # failed, not hung until the process-group timeout
    assert "rank 0: lost contact with the other ranks" in stderr
    assert "distributed run with 2 processes failed" in stderr
    assert "Signal 9 (SIGKILL)" in stderr  # torchrun's root cause names the dead rank
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]  # nothing lost


def test_two_nodes_started_with_torchrun_train_like_one_process(tmp_path, write_config):
    """Two single-process 'nodes' on this machine, joined by c10d rendezvous as the README's SLURM script does."""
    config = write_config(tiny_digits_config(optimizer={"name": "sgd", "lr": 0.1}, train={"epochs": 2, "device": "cpu"}))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                               "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", "--rdzv-id=test",
                               "-m", "dlcli", "train", str(config), "--output-dir", str(tmp_path),
                               "--run-version", "two", "-q"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    one = dlcli(["train", config, "--output-dir", tmp_path, "--run-version", "one", "-q"], tmp_path)
    assert one.returncode == 0, one.stderr
    a, b = weights(tmp_path / "tiny" / "one"), weights(tmp_path / "tiny" / "two")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)


def test_early_stopping_and_a_nan_loss_stop_every_rank(tmp_path, write_config):
    """Both decisions come from metrics summed over the ranks: a rank that decided alone would wait
    forever in the next collective (this test would then hit its timeout)."""
    early = write_config(tiny_digits_config(
        train={"epochs": 50, "device": "cpu", "monitor": "val/acc"}, optimizer={"name": "sgd", "lr": 1e-9},
        callbacks=[{"name": "early_stopping", "monitor": "val/acc", "patience": 1}]), "early.yaml")
    result = dlcli(["train", early, "--output-dir", tmp_path, "--run-version", "early", "-q", "--devices", "2"], tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "tiny" / "early" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] < 50  # lr 1e-9: no improvement, stopped
    assert "early stopping at epoch" in result.stderr
    nan = write_config(tiny_digits_config(train={"epochs": 5, "device": "cpu", "log_interval": 1},
                                          optimizer={"name": "sgd", "lr": 1e30}), "nan.yaml")
    result = dlcli(["train", nan, "--output-dir", tmp_path, "--run-version", "nan", "-q", "--devices", "2"], tmp_path)
    assert result.returncode == 1, result.stderr
    assert "error: loss became " in result.stderr
    assert json.loads((tmp_path / "tiny" / "nan" / "summary.json").read_text())["status"] == "failed"


def test_a_last_batch_smaller_than_the_process_count_is_dropped(tmp_path, write_config):
    """129 = 2 x 64 + 1 rows for training and for validation: the 1-row tail would leave rank 1 with
    nothing (NaN metrics, or a DDP step it cannot take); under DDP it is dropped."""
    config = write_config(tiny_digits_config(
        name="tail", data={"dataset": {"name": "synthetic", "samples": 258, "shape": [1, 4, 4], "classes": 3},
                           "val_split": 0.5, "batch_size": 64, "eval_batch_size": 64, "stratify": False},
        train={"epochs": 1, "device": "cpu", "monitor": "val/loss"}))
    result = dlcli(["train", config, "--output-dir", tmp_path, "--run-version", "r", "-q", "--devices", "2"], tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "tail" / "r" / "summary.json").read_text())
    assert summary["steps"] == 2  # two full global batches, the tail row dropped
    assert all(math.isfinite(summary["final"][k]) for k in ("train/loss", "val/loss", "val/acc"))


def _any_rank(rank, world, port, out):
    import torch.distributed as dist

    from dlcli.training import distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    distributed.setup("cpu")
    votes = [distributed.any_rank(rank == 1), distributed.any_rank(False)]
    if rank == 0:
        torch.save(votes, out)
    dist.barrier()
    distributed.cleanup()


def test_a_bad_batch_on_one_rank_is_skipped_on_every_rank(tmp_path):
    """on_nan: skip_batch decides with any_rank, so every rank skips the same batch together."""
    import torch.multiprocessing as mp

    mp.spawn(_any_rank, args=(2, _free_port(), tmp_path / "votes.pt"), nprocs=2)
    assert torch.load(tmp_path / "votes.pt") == [True, False]  # rank 0 sees rank 1's bad batch


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("spec, backend, device", [("auto", "nccl", "cuda:1"), ("cuda", "nccl", "cuda:1"),
                                                    ("cpu", "gloo", "cpu")])
def test_backend_follows_the_device(spec, backend, device, monkeypatch):
    """NCCL with one GPU per local rank on CUDA (plus a gloo group for the host-side stop flags), gloo
    on CPU. No GPU here: torch's CUDA queries and process-group calls are stood in for."""
    import torch.distributed as dist

    from dlcli.training import distributed

    calls = []
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", str(d))))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda name, timeout: calls.append(("init", name)))
    monkeypatch.setattr(dist, "new_group", lambda backend: calls.append(("control", backend)) or "control")
    try:
        assert str(distributed.setup(spec)) == device
    finally:
        distributed._CONTROL["group"] = None
    assert ("init", backend) in calls
    if backend == "nccl":
        assert ("set_device", device) in calls and ("control", "gloo") in calls
    else:
        assert not any(call[0] == "control" for call in calls)  # on CPU the default group is already gloo


def test_the_launcher_passes_on_the_workers_own_error_code(monkeypatch):
    """Failures in one poll share a timestamp: a rank that merely lost contact (1) must not hide the
    data error (3) of the rank that failed first."""
    import torch.distributed.run
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from dlcli.training import launcher

    def failed(argv):
        raise ChildFailedError("dlcli", {0: ProcessFailure(0, 11, 1, "<N/A>"), 1: ProcessFailure(1, 12, 3, "<N/A>")})

    monkeypatch.setattr(torch.distributed.run, "main", failed)
    assert launcher.main([]) == 3


def test_images_of_several_sizes_go_to_the_files_on_every_rank(tmp_path, write_config):
    # every rank finds from the headers that no one record size fits: none waits for a cache never built
    from tests.data.test_datasets import image_folder_config
    from tests.data.test_image_cache import make_photo_folder

    config = image_folder_config(make_photo_folder(tmp_path / "photos"), batch_size=4,
                                 train_transforms=[{"random_crop": {"size": 32}}],
                                 eval_transforms=[{"center_crop": 32}])
    config["train"]["epochs"] = 1
    result = dlcli(["train", write_config(config), "--output-dir", tmp_path, "-q", "--devices", "2"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "are not all" in result.stderr and "caching" not in result.stderr
