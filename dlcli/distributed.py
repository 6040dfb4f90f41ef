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

from dlcli.errors import REPORTED_CODES, ConfigError, DlcliError, Interrupted
from dlcli.ranks import world


def is_distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return world()[0]


def rank_streams(seed: int, step: int) -> None:
    """Once the draws every rank must share are made (initial weights; shuffles have their own
    generator), ranks > 0 reseed the global RNGs so their noise, dropout and augmentation differ from
    rank 0's (identical GAN noise on every rank would waste half of each batch). Derived from (seed,
    rank, step): a resumed run restores rank 0's saved state and its other ranks draw fresh streams."""
    rank = world()[0]
    if rank:
        from dlcli.seeding import seed_everything

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
        # A bounded timeout: a rank that dies mid-collective fails the job instead of hanging it.
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(minutes=10))
        # Stop-signal flags travel over a CPU (gloo) group: checking them every step then never
        # waits for the GPU's queued work, as a NCCL all-reduce read on the host would.
        _CONTROL["group"] = dist.new_group(backend="gloo") if use_cuda else None
    return device


_CONTROL: dict = {"group": None}


def cleanup() -> None:
    import torch.distributed as dist

    if is_distributed():
        dist.destroy_process_group()  # the control group goes with it
    _CONTROL["group"] = None


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
    cmd = [sys.executable, "-m", "dlcli.launcher", "--standalone", f"--nproc-per-node={devices}",
           "--max-restarts=0", "-m", "dlcli", *argv]
    env = {**os.environ, "DLCLI_LAUNCHED": "1"}
    child = subprocess.Popen(cmd, env=env)
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
