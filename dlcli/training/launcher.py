"""torchrun for `dlcli train --devices N`: torch.distributed.run's own main, whose failure report
(which rank failed first, its exit code or signal) is printed without a Python traceback, and whose
exit code is the first failed worker's when that is a dlcli exit code (2 config, 3 data, 4 checkpoint)."""

import sys

from dlcli.errors import REPORTED_CODES


def main(argv: list[str]) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(argv)
    except ChildFailedError as err:
        print(err.format_msg(), file=sys.stderr)
        # Failures seen in one poll share a timestamp, so "first" may be a rank that only lost contact
        # (exit 1) with the one that hit a config, data or checkpoint error: that one's code wins.
        codes = [failure.exitcode for failure in err.failures.values()]
        return next((code for code in codes if code in REPORTED_CODES), 1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
