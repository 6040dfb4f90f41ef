"""Command line: one module per command (or per pair of related ones), each parse, call, report.
`base.command` maps every failure to a one-line error and its exit code. No torch import here.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config, 3 data missing or unreadable,
4 unreadable or unsafe checkpoint, 128 + N stopped by signal N (130 Ctrl-C).
"""

import os
import sys

# isort: off  (the order commands register in is the order --help lists them)
from dlcli.cli import cache, configs, evaluate, export, infer, lr_find, runs, sweep, train  # noqa: F401

# isort: on
from dlcli.cli.base import DEBUG_VARIABLE, app

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point; `--debug` anywhere shows tracebacks."""
    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
        os.environ[DEBUG_VARIABLE] = "1"
    app()
