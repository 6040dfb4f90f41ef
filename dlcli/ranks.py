"""This process's place in a torchrun job, read from the environment torchrun sets (no torch at import)."""

import os


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) in a plain process."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def is_distributed() -> bool:
    """Whether a process group is up (this process is one rank of several)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes files and reports (any plain process)."""
    return world()[0] == 0
