"""Issue 23: a finished DDP run's rank aborted at process exit ("terminate called without an active
exception", SIGABRT) in ~8% of launches. A gloo worker thread destroys each finished collective's
work object itself, a little after the caller has returned; a work whose Python tensor is gone
takes the GIL there, and when that lands in interpreter finalization CPython ends the thread with
pthread_exit, which terminates the process. dlcli's cleanup now leaves the process group
deterministically (barrier, every reference dropped, destroy: the gloo threads are joined) before
the interpreter finalizes.

The abort itself is a race, so besides requiring 30 clean exits in a row, every rank records the
gloo threads still alive when its interpreter starts to finalize (atexit, after dlcli's cleanup):
there must be none, which does not depend on timing (before the fix there were three per rank,
every time).

A launch costs mostly process start-up and `import torch`; to run 30 in a row in well under two
minutes on 2 cores, a fork server imports torch and dlcli once and forks the two ranks of each
launch. Each rank runs dlcli's own CLI entry point (`dlcli train CFG train.devices=2`) with the
environment torchrun gives its workers, through the same setup / train / cleanup code as
`dlcli train --devices 2`, and leaves through normal interpreter shutdown, where the abort was.
Forked ranks inherit modules their parent imported before any process group existed, so one more
launch goes through torchrun itself, whose workers import torch.distributed's lazy modules after
joining the group, as in production (one of them used to pin the group; see distributed.setup)."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (hasattr(os, "fork") and os.path.isdir("/proc/self/task")),
                                 reason="forks the ranks and reads their threads from /proc")]

FORK_SERVER = r'''
import gc, json, os, signal, socket, sys, time

spec = json.load(open(sys.argv[1]))
root = spec["root"]

import torch  # the costly imports, once, including what dlcli imports lazily
import torch._inductor.config  # torch.use_deterministic_algorithms imports it
import torch.distributed
import torch.nn.parallel
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot
import dlcli.training.build, dlcli.cli, dlcli.training.engine, dlcli.training.session


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_of(launch, rank):
    path = os.path.join(root, str(launch), f"rank{rank}.log")
    return open(path).read() if os.path.exists(path) else ""


def wait(pids, deadline):
    codes = {}
    while len(codes) < len(pids) and time.time() < deadline:
        for pid in pids:
            if pid not in codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    for pid in pids:
        if pid not in codes:  # hung: report it, never leave it running
            os.kill(pid, signal.SIGKILL)
            codes[pid] = "hung: " + str(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    return [codes[pid] for pid in pids]


def import_what_a_rank_imported(launch):
    """What dlcli imports lazily (data, tasks, plots...): imported here once, after the first launch."""
    import importlib

    path = os.path.join(root, str(launch), "modules0.json")
    for name in json.load(open(path)) if os.path.exists(path) else []:
        # torch.distributed's own lazy imports stay in the ranks: some bind the default group when
        # imported (torch.distributed.nn.functional), as they would in a real worker.
        if name not in sys.modules and not name.startswith("torch.distributed."):
            try:
                importlib.import_module(name)
            except BaseException:  # noqa: BLE001  a module only importable in its own context
                pass


def freeze():
    gc.collect()
    gc.freeze()  # the children's collections skip (and so leave shared) everything imported here


freeze()
child = None
for launch, (mode, config) in enumerate(spec["launches"]):
    os.makedirs(os.path.join(root, str(launch)))
    port, started, pids = free_port(), time.time(), []
    for rank in range(2):
        pid = os.fork()
        if pid == 0:
            child = (launch, rank, port, mode, config)
            break
        pids.append(pid)
    if child:
        break
    if mode == "sigterm":  # what torchrun does on SIGTERM: pass it to every worker, mid-training
        deadline = time.time() + 60
        while " step 3 " not in log_of(launch, 0) and time.time() < deadline:
            time.sleep(0.02)
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
    codes = wait(pids, time.time() + 120)
    threads = []
    for rank in range(2):
        path = os.path.join(root, str(launch), f"threads{rank}.json")
        threads.append(json.load(open(path)) if os.path.exists(path) else "not recorded")
    print(json.dumps({"launch": launch, "mode": mode, "codes": codes, "gloo_threads_at_exit": threads,
                      "seconds": round(time.time() - started, 2),
                      "logs": [log_of(launch, r)[-3000:] for r in range(2)]}), flush=True)
    if launch == 0:
        import_what_a_rank_imported(launch)
        freeze()
if child is None:
    sys.exit(0)

launch, rank, port, mode, config = child
os.chdir(os.path.join(root, str(launch)))
log = os.open(f"rank{rank}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
os.dup2(log, 1)
os.dup2(log, 2)
os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", GROUP_RANK="0",
                  MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TORCHELASTIC_RUN_ID="test_ddp_exit")
if mode == "data_error" and rank == 1:  # an unreadable batch on one rank only, mid-epoch
    from dlcli.training.engine import Trainer
    from dlcli.errors import DataError

    step = Trainer.train_step

    def failing_step(self, *args, **kwargs):
        if self.state.step == 2:
            raise DataError("batch 3 is unreadable (injected by test_ddp_exit)")
        return step(self, *args, **kwargs)

    Trainer.train_step = failing_step


def record_threads():  # atexit: after dlcli's cleanup, as the interpreter starts to finalize
    from dlcli.training.distributed import backend_threads

    with open(f"threads{rank}.json", "w") as out:
        json.dump(backend_threads(), out)
    if launch == 0 and rank == 0:
        with open("modules0.json", "w") as out:
            json.dump(sorted(name for name in sys.modules if not name.startswith("__")), out)


import atexit
atexit.register(record_threads)
sys.argv = ["dlcli", "train", config, "--output-dir", ".", "-q", "train.devices=2"]
dlcli.cli.main()
'''


WORKER = r'''
"""`python -m dlcli ...` as a torchrun worker, plus a record of the gloo threads alive at exit."""
import atexit, json, os, runpy, sys


def record_threads():
    from dlcli.training.distributed import backend_threads

    with open(f"threads{os.environ['RANK']}.json", "w") as out:
        json.dump(backend_threads(), out)


atexit.register(record_threads)
sys.argv[0] = "dlcli"
runpy.run_module("dlcli", run_name="__main__", alter_sys=True)
'''


def tiny_config(**train) -> dict:
    """4 steps of 16 synthetic 4x4 images per epoch: each launch is nearly all start-up and shutdown."""
    return {"name": "exit", "seed": 0,
            "data": {"dataset": {"name": "synthetic", "samples": 64, "shape": [1, 4, 4], "classes": 3},
                     "val_split": 0.0, "batch_size": 16},
            "model": {"name": "mlp", "hidden": [8]},
            "optimizer": {"name": "sgd", "lr": 0.1},
            "train": {"epochs": 1, "device": "cpu", "monitor": "train/loss", "log_interval": 1, **train}}


def launch_all(tmp_path, launches: list[tuple[str, dict]], timeout: int) -> list[dict]:
    """Run (mode, config) launches one after another in a fork server; one result dict per launch."""
    configs = {}
    for mode, config in launches:
        key = json.dumps(config, sort_keys=True)
        if key not in configs:
            configs[key] = tmp_path / f"cfg{len(configs)}.yaml"
            configs[key].write_text(yaml.safe_dump(config, sort_keys=False))
    spec = {"root": str(tmp_path / "runs"),
            "launches": [(mode, str(configs[json.dumps(config, sort_keys=True)])) for mode, config in launches]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "fork_server.py").write_text(FORK_SERVER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    done = subprocess.run([sys.executable, str(tmp_path / "fork_server.py"), str(tmp_path / "spec.json")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-5000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(launches), done.stdout[-3000:] + done.stderr[-3000:]
    return results


def failures(results: list[dict], expected_codes: list) -> list[str]:
    return [f"launch {r['launch']} ({r['mode']}): exit codes {r['codes']} (expected {expected_codes}), "
            f"gloo threads alive at exit {r['gloo_threads_at_exit']}\n" + "\n".join(
                f"--- rank {rank} ---\n{log}" for rank, log in enumerate(r["logs"]))
            for r in results if r["codes"] != expected_codes or r["gloo_threads_at_exit"] != [[], []]]


def test_thirty_ddp_launches_in_a_row_all_exit_cleanly(tmp_path):
    results = launch_all(tmp_path, [("finish", tiny_config())] * 30, timeout=600)
    bad = failures(results, [0, 0])
    assert not bad, f"{len(bad)} of 30 launches did not exit cleanly:\n" + "\n".join(bad[:3])


def test_every_way_a_ddp_run_ends_shuts_down_cleanly(tmp_path):
    """Early-stopped (0), stopped by SIGTERM (143 on both ranks), and an error on one rank only:
    that rank's data error (3), its peer's lost contact (1); no rank hangs, aborts or keeps gloo threads."""
    early = tiny_config(epochs=30, monitor="train/loss")
    early.update(optimizer={"name": "sgd", "lr": 1e-9},
                 callbacks=[{"name": "early_stopping", "monitor": "train/loss", "patience": 1}])
    endless = tiny_config(epochs=1000)
    results = launch_all(tmp_path, [("finish", early), ("sigterm", endless), ("data_error", endless)], timeout=400)
    early_stopped, signalled, data_error = results
    bad = failures([early_stopped], [0, 0]) + failures([signalled], [143, 143]) + failures([data_error], [1, 3])
    assert not bad, "\n".join(bad)
    assert "early stopping at epoch" in early_stopped["logs"][0]
    assert "stopped by SIGTERM" in signalled["logs"][0]
    assert "batch 3 is unreadable" in data_error["logs"][1]
    assert "rank 0: lost contact with the other ranks" in data_error["logs"][0]


def test_a_torchrun_launch_leaves_no_gloo_thread_at_exit(tmp_path):
    """Forked ranks inherit modules imported before the group existed; real torchrun workers import
    torch.distributed's lazy modules after joining it (one of them binds the default group as a
    default argument): one launch the way `dlcli train --devices 2` starts its workers."""
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(tiny_config(), sort_keys=False))
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "--max-restarts=0", str(tmp_path / "worker.py"), "train", "cfg.yaml", "--output-dir", ".",
                           "-q", "train.devices=2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-5000:]
    threads = [json.loads((tmp_path / f"threads{rank}.json").read_text()) for rank in range(2)]
    assert threads == [[], []], f"gloo threads alive at exit: {threads}\n{done.stderr[-3000:]}"
