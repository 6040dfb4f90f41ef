"""Multi-process training on torch.distributed (DDP), launched by torch's own torchrun.

`dlcli train cfg.yaml --devices N` re-runs itself under `python -m torch.distributed.run
--standalone --nproc-per-node N`; `torchrun ... -m dlcli train cfg.yaml` (several machines) enters
the same worker path. Workers find their rank in the environment torchrun sets. Rank 0 alone
writes the run directory; metrics, stop signals and early stopping are agreed on by all ranks.
"""

import os
import re
import signal
import subprocess
import sys

from dlcli.errors import REPORTED_CODES, ConfigError, DlcliError, Interrupted, first_line
from dlcli.ranks import is_distributed, world


def rank() -> int:
    return world()[0]


def rank_streams(seed: int, step: int) -> None:
    """Once the draws every rank must share are made (initial weights; shuffles have their own
    generator), ranks > 0 reseed the global RNGs so their noise, dropout and augmentation differ from
    rank 0's (identical GAN noise on every rank would waste half of each batch). Derived from (seed,
    rank, step): a resumed run restores rank 0's saved state and its other ranks draw fresh streams."""
    rank = world()[0]
    if rank:
        from dlcli.training.seeding import seed_everything

        seed_everything(hash((seed, rank, step)) % 2**31)  # int tuples hash the same in every process


def setup(device_spec: str):
    """Join the process group (NCCL on CUDA, gloo on CPU); returns this rank's device."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    _, size, local = world()
    use_cuda = device_spec.startswith("cuda") or (device_spec == "auto" and torch.cuda.is_available())
    if use_cuda:
        if torch.cuda.device_count() <= local:
            raise ConfigError(f"train.devices: local rank {local} has no GPU ({torch.cuda.device_count()} visible)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        # Before the group exists: torch.distributed.nn.functional (which DDP's construction
        # imports, through torch.distributed._shard) binds `group.WORLD` as its functions' default
        # argument at import time; imported after init, it would hold the default group for good,
        # so destroy_process_group() could never free it and stop gloo's threads (see cleanup).
        import torch.distributed.nn.functional  # noqa: F401
        # A bounded timeout: a rank that dies mid-collective fails the job instead of hanging it.
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(minutes=10))
        # Stop-signal flags travel over a CPU (gloo) group: checking them every step then never
        # waits for the GPU's queued work, as a NCCL all-reduce read on the host would.
        _CONTROL["group"] = dist.new_group(backend="gloo") if use_cuda else None
    return device


_CONTROL: dict = {"group": None}

# How long a rank that finished normally waits at the shutdown barrier for the others (rank 0 may
# still be writing its summary and plots). Bounded: a rank that died meanwhile costs this, not a hang.
SHUTDOWN_TIMEOUT_S = 300


def release(*holders) -> None:
    """Drop the DistributedDataParallel wrappers that `holders` keep in their attributes (the
    trainer's `forward_model`: a DDP module, a GAN's namespace of them, or torch.compile's wrapper
    around one): each such attribute becomes None. Every DDP and its C++ reducer hold the process
    group; they must be gone before `cleanup` destroys it (see there)."""
    for holder in holders:
        for name, value in list(vars(holder).items()):
            if _holds_ddp(value):
                setattr(holder, name, None)


def _holds_ddp(value, depth: int = 0) -> bool:
    from types import SimpleNamespace

    from torch.nn.parallel import DistributedDataParallel

    if isinstance(value, DistributedDataParallel):
        return True
    if depth > 2:
        return False
    inner = getattr(value, "_orig_mod", None)  # torch.compile's OptimizedModule
    if inner is not None and _holds_ddp(inner, depth + 1):
        return True
    return isinstance(value, SimpleNamespace) and any(_holds_ddp(v, depth + 1) for v in vars(value).values())


def cleanup(*holders, ended_normally: bool | None = None) -> None:
    """Leave the process group deterministically, on every rank, however the run ended.

    Why (issue 23): gloo's worker threads (pt_gloo_runloop) destroy each finished collective's work
    object themselves, a little after the caller has already returned from the collective; when the
    work held a tensor whose Python object is gone (every `agreed_max` / `any_rank` / metric sync),
    that destruction takes the GIL. A rank that reaches interpreter shutdown in that window (rank 1,
    which writes nothing at the end, right after the last `agreed_signal`) has the worker thread take
    the GIL while Python is finalizing: CPython ends it with pthread_exit, whose unwinding through
    the work's noexcept destructor calls std::terminate ("terminate called without an active
    exception", SIGABRT). `destroy_process_group()` alone did not stop those threads: other
    references kept the gloo backend, and its threads, alive into interpreter shutdown: the DDP
    wrapper and its reducer (in the trainer, itself in a reference cycle, or in the frames of an
    exception's traceback), and torch.distributed.nn.functional's default arguments (see setup).

    So, in order: (1) after a normal end (or an agreed stop signal: every rank raises Interrupted at
    the same step), a barrier on the gloo group with a bounded timeout, so no rank is still inside
    a collective; after a failure it is skipped (the failed rank's peers would only wait it out);
    (2) every reference dlcli holds to the group is dropped: `holders`' DDP wrappers (`release`),
    the control group, the locals of the frames an in-flight exception went through, then a GC pass
    for the reference cycles; (3) `destroy_process_group()` drops the last references: the backend
    is destroyed with the GIL released, which lets its worker threads finish (taking the GIL for
    those tensors) and joins them, while the interpreter is fully alive. Only then may the process
    exit. `ended_normally`: None reads it from the exception being raised, if any (this is called
    from a `finally`)."""
    import gc

    import torch.distributed as dist

    control, _CONTROL["group"] = _CONTROL["group"], None
    if not is_distributed():
        return
    in_flight = sys.exc_info()[1]
    if ended_normally is None:
        ended_normally = in_flight is None or isinstance(in_flight, Interrupted)
    if ended_normally:
        _shutdown_barrier(control)
    del control
    release(*holders)
    if in_flight is not None:
        _clear_finished_frames(in_flight)
    del in_flight
    gc.collect()  # the trainer <-> session cycle holds the DDP wrapper: its reducer lets go of the group now
    dist.destroy_process_group()  # the control group goes with it; joins gloo's worker threads
    if backend_threads():  # something outside dlcli's reach still held the group: one more pass
        gc.collect()


def _shutdown_barrier(control_group) -> None:
    """Every rank reaches shutdown before any destroys its group; a gloo group's monitored barrier
    names the ranks that did not arrive within SHUTDOWN_TIMEOUT_S (then shutdown goes on)."""
    from datetime import timedelta

    import torch.distributed as dist

    try:
        dist.monitored_barrier(group=control_group, timeout=timedelta(seconds=SHUTDOWN_TIMEOUT_S))
    except RuntimeError as err:  # a peer died or hung after training: this rank's own run is complete
        print(f"warning: rank {rank()}: not every rank reached shutdown ({first_line(err)[:160]})",
              file=sys.stderr)


def _clear_finished_frames(error: BaseException) -> None:
    """Drop the locals (the trainer, its DDP wrapper) of the frames that `error` and the exceptions
    it chains have already left; the traceback itself (code and line numbers) still prints."""
    import traceback

    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # skips frames still running (the callers)
        pending += [current.__cause__, current.__context__]


def backend_threads() -> list[str]:
    """Names of this process's live gloo threads (Linux; [] elsewhere): after `cleanup`, none."""
    names: list[str] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return names
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                name = comm.read().strip()
        except OSError:  # exited meanwhile
            continue
        if "gloo" in name:
            names.append(name)
    return names


def all_reduce_(tensor, op: str = "sum", group=None):
    import torch.distributed as dist

    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM, group=group)
    return tensor


def agreed_signal(local: int | None) -> int | None:
    """The stop signal any rank received (every rank stops at the same step), or None."""
    return agreed_max(local or 0)[0] or None


def agreed_max(*values: int) -> list[int]:
    """Each value's maximum over all ranks, in one all-reduce on the CPU control group (see setup)."""
    import torch

    if not is_distributed():
        return list(values)
    return [int(v) for v in all_reduce_(torch.tensor(values), "max", _CONTROL["group"])]


def averaged(values: dict) -> dict:
    """Each value's mean over all ranks, on the CPU control group (the same on every rank: a task's own
    epoch metrics, measured on each rank's shard, may decide the best checkpoint)."""
    import torch

    if not is_distributed() or not values:
        return values
    import torch.distributed as dist

    total = all_reduce_(torch.tensor(list(values.values()), dtype=torch.float64), group=_CONTROL["group"])
    return {key: float(v) / dist.get_world_size() for key, v in zip(values, total)}


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any (over the CPU control group): a decision such as
    skipping a batch must be the same everywhere, or the ranks' gradient all-reduces fall out of step."""
    import torch

    if not is_distributed():
        return flag
    return bool(all_reduce_(torch.tensor([int(flag)]), "max", _CONTROL["group"]))


def synced(metrics, make_empty):
    """A copy of a metrics accumulator with every rank's sums added up (`make_empty()` gives an empty
    one); in a single process, the accumulator itself."""
    if not is_distributed():
        return metrics
    total = make_empty()
    total.load_state_dict(_reduce_state(metrics.state_dict()))
    return total


def _reduce_state(state):
    """Sum every tensor (on its device) and every host-side count (on the CPU control group)."""
    import torch

    if isinstance(state, dict):
        return {k: _reduce_state(v) for k, v in state.items()}
    if isinstance(state, torch.Tensor):
        return all_reduce_(state.clone())
    if isinstance(state, int):
        return int(all_reduce_(torch.tensor(state), group=_CONTROL["group"]))
    return state


def lost_peer(err: Exception):
    """Under DDP, a failed collective (another rank died or was cut off) as a one-line dlcli error
    naming this rank; None for any other error."""
    import torch.distributed as dist

    text = str(err)
    collective = isinstance(err, dist.DistNetworkError) or any(
        mark in text for mark in ("gloo", "Connection reset", "Connection closed", "Broken pipe"))
    if world()[1] == 1 or not collective:
        return None
    first = re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0])  # drop gloo's source-file prefix
    return DlcliError(f"rank {rank()}: lost contact with the other ranks ({first[:120]})",
                      hint="another rank failed first: torchrun's 'Root Cause' below names it")


def launch(argv: list[str], devices: int) -> tuple[int, int | None]:
    """Run `dlcli train ...` as `devices` worker processes under torchrun; returns (exit code, the
    stop signal received or None). SIGINT/SIGTERM/SIGUSR1 go on to torchrun, which passes them to
    every worker; rank 0 saves last.pt before they exit."""
    cmd = [sys.executable, "-m", "dlcli.training.launcher", "--standalone", f"--nproc-per-node={devices}",
           "--max-restarts=0", "-m", "dlcli", *argv]
    child = subprocess.Popen(cmd)
    received: list[int] = []

    def forward(signum, frame):
        received.append(signum)
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code, (received[0] if received else None)


def launcher_error(code: int, received: int | None, devices: int):
    """The launcher's outcome as a dlcli error: a stop signal keeps its 128 + N exit code."""
    if received is not None:
        return Interrupted(f"distributed run stopped by {signal.Signals(received).name}; rank 0 saved last.pt "
                           f"(torchrun exit code {code})", received, hint="resume with --resume RUN_DIR or auto")
    error = DlcliError(f"distributed run with {devices} processes failed (exit code {code}); "
                       f"the failing rank's error is printed above")
    error.exit_code = code if code in REPORTED_CODES else 1  # a worker's config, data or checkpoint error
    return error
