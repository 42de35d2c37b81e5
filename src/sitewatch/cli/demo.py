"""`sitewatch demo`: the demo world and the whole pipeline on it (:mod:`sitewatch.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import changes_table, console, progress


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the demo world and results.")] = Path(
        "sitewatch-demo"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the demo world.")] = 7,
    regenerate: Annotated[bool, typer.Option(help="Generate the world again even if present.")] = False,
) -> None:
    """Generate the demo world (or reuse it) and run the whole pipeline on the known base."""
    from ..demo import run_demo

    with progress() as cb:
        summary = run_demo(out, seed=seed, progress=cb, regenerate=regenerate)
    r = summary.result
    console.print(changes_table(r.changes))
    console.print(
        f"Site [bold]{r.site.name}[/]: {len(r.changes)} change(s) over {len(r.dates)} dates "
        f"({r.dates[0]:%Y-%m-%d} to {r.dates[-1]:%Y-%m-%d}); activity: [bold]{r.activity}[/]"
    )
    console.print(f"Ground truth: {summary.truth}")
    console.print(f"Detections:   {summary.detections}")
    console.print(f"Report:       {summary.report}")
