"""Docs that cannot drift: the CLI reference, the detectors and the settings are all documented."""

import subprocess
import sys
from pathlib import Path

from sitewatch.cli import app
from sitewatch.detectors import available
from sitewatch.settings import Settings

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_cli_reference_is_current(tmp_path):
    # a separate process on purpose: the very command `make docs` runs (typer's own CLI loading sitewatch.cli)
    out = tmp_path / "cli.md"
    subprocess.run(
        [sys.executable, "-m", "typer", "sitewatch.cli", "utils", "docs", "--name", "sitewatch", "--output", str(out)],
        check=True, capture_output=True,
    )
    assert out.read_text() == (REPO / "docs" / "cli.md").read_text(), "docs/cli.md is stale: run `make docs`"


def _commands(typer_app, prefix=""):
    import typer.main

    group = typer.main.get_command(typer_app)
    for name, cmd in group.commands.items():
        yield prefix + name
        if hasattr(cmd, "commands"):
            for sub in cmd.commands:
                yield f"{prefix}{name} {sub}"


def test_every_command_is_in_the_readme():
    cmds = list(_commands(app))
    assert "detect-pair" in cmds and "site add" in cmds
    for c in cmds:
        head = c.split()[0]
        assert f"`{head}" in README or f"{head} " in README, f"command {c} is not in README.md"


def test_every_detector_and_setting_is_documented():
    for name in available():
        assert f"`{name}`" in README, f"detector {name} is not in README.md"
    for field in Settings.model_fields:
        assert f"`{field}`" in README and f"SITEWATCH_{field.upper()}" in README, f"setting {field} undocumented"
