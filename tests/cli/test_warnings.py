"""The warnings policy every command starts with: dlcli's own warnings show, a library's only with
--debug (the real-process check is tests/inference/test_export.py's torchscript export)."""

import ast
import sys
import warnings
from pathlib import Path

import pytest

from dlcli.cli.base import only_own_warnings
from dlcli.errors import DlcliWarning


def _shown(debug: bool, large_image) -> list[str]:
    """The categories of the warnings shown, under the policy, while PIL opens a large image,
    libraries warn (some attributed to dlcli lines) and dlcli warns."""
    from dlcli.data.files import load_image

    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()  # not pytest's own filters: the policy alone decides
        only_own_warnings(debug)
        load_image(str(large_image), 1)  # DecompressionBombWarning, from PIL.Image
        warnings.warn("`torch.jit.trace` is deprecated", FutureWarning, stacklevel=1)  # outside dlcli
        # a library's deprecation pointed (stacklevel=2) at the dlcli line calling it
        warnings.warn_explicit("legacy exporter", DeprecationWarning, "export.py", 71, module="dlcli.inference.export")
        # torch.jit's TracerWarning names the traced model's line
        warnings.warn_explicit("trace might be incorrect", RuntimeWarning, "recurrent.py", 46,
                               module="dlcli.components.models.recurrent")
        warnings.warn("a warning of dlcli's own", DlcliWarning, stacklevel=1)
    return [w.category.__name__ for w in caught]


@pytest.fixture
def large_image(tmp_path, monkeypatch):
    """An image over PIL's pixel limit (lowered here: the real one is ~89M pixels) but under twice
    it, where PIL warns rather than refuses."""
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    Image.new("L", (12, 12)).save(tmp_path / "large.png")
    return tmp_path / "large.png"


def test_normal_runs_show_only_dlcli_warnings(large_image, monkeypatch):
    monkeypatch.setattr(sys, "warnoptions", [])
    assert _shown(False, large_image) == ["DlcliWarning"]


def test_debug_or_an_explicit_w_option_shows_library_warnings(large_image, monkeypatch):
    everything = ["DecompressionBombWarning", "FutureWarning", "DeprecationWarning", "RuntimeWarning", "DlcliWarning"]
    monkeypatch.setattr(sys, "warnoptions", [])
    assert _shown(True, large_image) == everything
    monkeypatch.setattr(sys, "warnoptions", ["default"])  # python -W default, or PYTHONWARNINGS
    assert _shown(False, large_image) == everything


def test_every_command_runs_under_the_policy(monkeypatch):
    """The command wrapper sets the filters, and restores them when the command ends."""
    from typer.testing import CliRunner

    from dlcli.cli import app

    monkeypatch.setattr(sys, "warnoptions", [])
    monkeypatch.delenv("DLCLI_DEBUG", raising=False)
    seen = []
    monkeypatch.setattr("dlcli.cli.report.print_registry", lambda kind: seen.append(list(warnings.filters)))
    before = list(warnings.filters)
    assert CliRunner().invoke(app, ["list", "losses"]).exit_code == 0
    ignore_all = ("ignore", None, Warning, None, 0)
    assert ignore_all in seen[0] and ignore_all not in before and warnings.filters == before


def test_dlcli_issues_its_warnings_as_dlcli_warnings():
    """The policy shows DlcliWarning only: a warnings.warn in dlcli/ with another category would
    never reach a user."""
    package = Path(__file__).resolve().parents[2] / "dlcli"
    others = []
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("warnings.warn", "warn"):
                category = node.args[1] if len(node.args) > 1 else next(
                    (k.value for k in node.keywords if k.arg == "category"), None)
                if category is None or ast.unparse(category) != "DlcliWarning":
                    others.append(f"{source.relative_to(package)}:{node.lineno}")
    assert others == []
