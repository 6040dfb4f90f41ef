"""torchrun for `dlcli train --devices N`: torch.distributed.run's own main, whose failure report
(which rank failed first, its exit code or signal) is printed without a Python traceback, and whose
exit code is the first failed worker's when that is a dlcli exit code (2 config, 3 data, 4 checkpoint)."""

import sys


def main(argv: list[str]) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(argv)
    except ChildFailedError as err:
        print(err.format_msg(), file=sys.stderr)
        code = err.get_first_failure()[1].exitcode
        return code if 0 < code < 128 else 1  # a worker killed by a signal has a negative code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
