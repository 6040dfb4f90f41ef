"""The `app` every command registers on, and `@command`, the one wrapper that maps errors to exit
codes. No logic and no torch import here.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config, 3 data missing or unreadable,
4 unreadable or unsafe checkpoint, 128 + N stopped by signal N (130 Ctrl-C).
"""

import functools
import json
import os
import sys
import warnings
from collections.abc import Callable

# pydantic looks for plugins by scanning the entry points of every installed package, once per
# process (~15 ms here, more in a large environment). dlcli's config models need none; a user who wants
# them sets PYDANTIC_DISABLE_PLUGINS themselves (e.g. to an empty string), which this leaves alone.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import typer  # noqa: E402

from dlcli.errors import DlcliError, DlcliWarning, unexpected  # noqa: E402

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Train, evaluate and run PyTorch models from YAML experiment files.")
OVERRIDES_HELP = "key.path=value overrides, values parsed as YAML (e.g. optimizer.lr=0.01 model.hidden=[256,128])"


DEBUG_VARIABLE = "DLCLI_DEBUG"  # `--debug` sets it, so DDP workers and sweep runs inherit it too


def debug_requested() -> bool:
    """Whether failures print their traceback: --debug on the command line, or DLCLI_DEBUG=1."""
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def command(name: str | None = None):
    """Register a command on `app` whose failures become one-line errors and documented exit codes."""
    def decorate(body: Callable) -> Callable:
        @functools.wraps(body)  # typer reads the parameters through __wrapped__
        def run(*args, **kwargs):
            debug = debug_requested()
            with warnings.catch_warnings():  # the filters hold for this command only (tests call several)
                only_own_warnings(debug)
                return run_mapped(lambda: body(*args, **kwargs), debug)

        return app.command(name)(run)

    return decorate


def only_own_warnings(debug: bool) -> None:
    """Normal runs show dlcli's own warnings (DlcliWarning) only. A library's (torch's FutureWarning
    on a torchscript export, PIL's DecompressionBombWarning for a large but legitimate image) speaks
    to the developers of the code calling it, not to the user: --debug shows them, and so does an
    explicit -W or PYTHONWARNINGS, which this leaves alone."""
    if debug or sys.warnoptions:
        return
    # By category, not by module: a library's warning is often attributed to a dlcli line, the one
    # calling it (stacklevel=2: torch.onnx.export's DeprecationWarning) or being traced (TracerWarning).
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", category=DlcliWarning)  # in front of "ignore", so checked first


def fail(err: DlcliError, debug: bool) -> None:
    """Print a DlcliError as one line per problem (plus a hint) and exit with its code; with --debug,
    its traceback first."""
    if debug:
        import traceback

        traceback.print_exception(err)  # with its cause: an unexpected error's own traceback
    lines = getattr(err, "problems", None) or [str(err)]
    for line in lines:
        typer.echo(f"error: {line}", err=True)
    if err.hint:
        typer.echo(f"hint: {err.hint}", err=True)
    raise typer.Exit(err.exit_code)


def run_mapped(action: Callable, debug: bool = False):
    """action(), with every failure mapped to its exit code and a one-line message."""
    try:
        return action()
    except DlcliError as err:
        fail(err, debug)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except BrokenPipeError:  # `dlcli list | head`: the reader left; nothing to report
        sys.stderr.close()
        raise typer.Exit(0) from None
    except OSError as err:  # a file or folder the command could not read or write: name it
        failed = DlcliError(f"{err.filename + ': ' if err.filename else ''}{err.strerror or err}")
        failed.__cause__ = err  # its traceback, with --debug
        fail(failed, debug)
    except MemoryError:
        fail(DlcliError("out of memory", hint="lower data.batch_size or use a smaller model"), debug)
    except typer.Exit:
        raise
    except Exception as err:  # a bug or an unforeseen failure: one line, traceback only with --debug
        failed = DlcliError(unexpected(err), hint=None if debug else "rerun with --debug for the traceback")
        failed.__cause__ = err
        fail(failed, debug)


def _show_version(value: bool) -> None:
    if value:
        from dlcli import __version__

        typer.echo(f"dlcli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="print the dlcli version and exit")):
    """Train, evaluate and run PyTorch models from YAML experiment files."""


def emit_json(data) -> None:
    """Standard JSON on stdout: NaN and infinities as the strings "nan", "inf", "-inf" (as in metrics.jsonl)."""
    from dlcli.runs.rundir import finite

    typer.echo(json.dumps(finite(data), indent=2, allow_nan=False))
