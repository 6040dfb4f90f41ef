"""The `app` every command registers on, and the one wrapper that maps errors to exit codes.
No logic and no torch import here.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config, 3 data missing or unreadable,
4 unreadable or unsafe checkpoint, 128 + N stopped by signal N (130 Ctrl-C).
"""

import json
import os
import sys

# pydantic looks for plugins by scanning the entry points of every installed package, once per
# process (~15 ms here, more in a large environment). dlcli's config models need none; a user who wants
# them sets PYDANTIC_DISABLE_PLUGINS themselves (e.g. to an empty string), which this leaves alone.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import typer  # noqa: E402

from dlcli.errors import DlcliError, unexpected

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Train, evaluate and run PyTorch models from YAML experiment files.")
DEBUG = {"on": False}
OVERRIDES_HELP = "key.path=value overrides, values parsed as YAML (e.g. optimizer.lr=0.01 model.hidden=[256,128])"


def _fail(err: DlcliError) -> None:
    """Print a DlcliError as one line per problem (plus a hint) and exit with its code; with --debug,
    its traceback first (the exit code stays the documented one)."""
    if DEBUG["on"]:
        import traceback

        traceback.print_exception(err)  # with its cause: an unexpected error's own traceback
    lines = getattr(err, "problems", None) or [str(err)]
    for line in lines:
        typer.echo(f"error: {line}", err=True)
    if err.hint:
        typer.echo(f"hint: {err.hint}", err=True)
    raise typer.Exit(err.exit_code)


def _run(action):
    try:
        return action()
    except DlcliError as err:
        _fail(err)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except BrokenPipeError:  # `dlcli list | head`: the reader left; nothing to report
        sys.stderr.close()
        raise typer.Exit(0) from None
    except OSError as err:  # a file or folder the command could not read or write: name it
        failed = DlcliError(f"{err.filename + ': ' if err.filename else ''}{err.strerror or err}")
        failed.__cause__ = err  # its traceback, with --debug
        _fail(failed)
    except MemoryError:
        _fail(DlcliError("out of memory", hint="lower data.batch_size or use a smaller model"))
    except typer.Exit:
        raise
    except Exception as err:  # a bug or an unforeseen failure: one line, traceback only with --debug
        failed = DlcliError(unexpected(err), hint=None if DEBUG["on"] else "rerun with --debug for the traceback")
        failed.__cause__ = err
        _fail(failed)


def _show_version(value: bool) -> None:
    if value:
        from dlcli import __version__

        typer.echo(f"dlcli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="print the dlcli version and exit")):
    """Train, evaluate and run PyTorch models from YAML experiment files."""


def _emit_json(data) -> None:
    typer.echo(json.dumps(data, indent=2))
