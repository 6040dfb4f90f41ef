"""Commands about configs and components: validate, init, schema, list. No torch import here."""

from typing import Optional

import typer

from dlcli.cli.base import OVERRIDES_HELP, command, emit_json


@command()
def validate(
    config: str = typer.Argument(..., help="YAML experiment file"),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
):
    """Check a config (and overrides) and print it resolved, defaults filled in."""
    from dlcli.config import load
    from dlcli.config.yamlio import dump_yaml

    cfg = load(config, overrides or [])
    if cfg.train.freeze or (cfg.optimizer or {}).get("param_groups"):  # counts need the model: torch, the data
        from dlcli.training.build import pattern_report

        for line in pattern_report(cfg):
            typer.echo(f"note: {line}", err=True)
    typer.echo(dump_yaml(cfg.model_dump(mode="json")), nl=False)


@command()
def init(
    model: str = typer.Option("mlp", "--model", help="mlp, cnn or sequential"),
    dataset: str = typer.Option("digits", "--dataset", help="digits, mnist, fashion_mnist, cifar10, cifar100, "
                                                          "image_folder or csv"),
):
    """Print a commented starting config, e.g. dlcli init --model cnn --dataset cifar10 > my.yaml."""
    from dlcli.config.starter import starting_config

    typer.echo(starting_config(model, dataset), nl=False)


@command()
def schema():
    """Print the JSON Schema of experiment files (for editor completion and checking)."""
    from dlcli.config.jsonschema import config_schema

    emit_json(config_schema())


@command("list")
def list_components(kind: Optional[str] = typer.Argument(None, help="models, datasets, transforms, losses, "
                                                                     "optimizers, schedulers, callbacks, tasks")):
    """List registered components with their parameters and defaults."""
    from dlcli.cli.report import print_registry

    print_registry(kind)
