"""`sitewatch detect`, `sitewatch methods` and `sitewatch detect-pair`: change detection at the watchlist's
sites (:func:`sitewatch.pipeline.detect_sites`) and between two images (:func:`sitewatch.pair.detect_pair`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..constants import DEFAULT_METHOD, DEFAULT_PAIR_METHOD
from ..errors import SitewatchError
from ._common import changes_table, console, err, progress, settings, state, store


def detect(
    site: Annotated[str | None, typer.Option(help="Site name (default: every site).")] = None,
    method: Annotated[
        str | None, typer.Option(help="Detector name (see `sitewatch methods`; default: the best on real imagery).")
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="How the detector's comparisons become dated changes: 'series' (change points between "
                          "composites of clear looks) or 'tracker' (date by date against a running reference); "
                          "default: the method's own (tracker for index, series for the others)."),
    ] = None,
    min_clear: Annotated[
        float | None, typer.Option(help="Skip dates less clear than this over the site (default: setting).")
    ] = None,
    no_coregister: Annotated[bool, typer.Option(help="Do not co-register dates.")] = False,
    stream: Annotated[bool | None, typer.Option(
        "--stream/--in-memory",
        help="Work in bounded memory: read the dates one at a time (tracker engine) or run the site in spatial "
             "chunks (series engine); or hold the whole stack. Default: stream when the stack would exceed "
             "2 GiB.")] = None,
    param: Annotated[list[str] | None, typer.Option(
        help="Detector parameter KEY=VALUE (repeatable), e.g. --param threshold=0.7 (see `sitewatch methods`).")]
    = None,
) -> None:
    """Detect, date and track changes at one site or every site."""
    from ..pipeline import detect_sites

    cfg = settings()
    st = store()
    names = [site] if site else [s.name for s in st.list_sites()]
    if not names:
        raise SitewatchError("the watchlist is empty; add a site with `sitewatch site add`")
    with progress() as cb:
        results = detect_sites(
            st, names, method or DEFAULT_METHOD, resolution=cfg.resolution,
            min_clear_fraction=cfg.min_clear_fraction if min_clear is None else min_clear,
            coregister=not no_coregister, progress=cb, engine=engine, scheduler=cfg.scheduler, stream=stream,
            detector_params=_params(param) or None,
        )
    failed = []
    for name, r in zip(names, results, strict=True):
        if isinstance(r, SitewatchError):
            if site or state.verbose:
                raise r
            err.print(f"[red]error:[/] {name}: {r}", highlight=False)
            failed.append(name)
            continue
        console.print(changes_table(r.changes))
        console.print(f"{r.site.name}: {len(r.changes)} change(s); activity {r.activity}")
    if failed:
        raise SitewatchError(f"detection failed for {len(failed)} of {len(names)} site(s): {', '.join(failed)}")


def methods() -> None:
    """List the change detectors."""
    from ..detectors import describe

    for name, text in describe().items():
        console.print(f"[bold]{name}[/]: {text}")


def _params(items: list[str] | None) -> dict[str, Any]:
    """``--param KEY=VALUE`` options as detector keyword arguments."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SitewatchError(f"--param wants KEY=VALUE, not {item!r}")
        out[key.strip()] = _parse_value(value.strip())
    return out


def _parse_value(text: str) -> Any:
    """A detector parameter from the command line: JSON when it parses (numbers, true/false), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def detect_pair(
    before: Annotated[Path, typer.Argument(help="Multi-band GeoTIFF, or folder of *_B02.tif ... files.")],
    after: Annotated[Path, typer.Argument(help="Same, for the later date.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output uint8 GeoTIFF: 1 change, 0 none.")],
    method: Annotated[str, typer.Option(help="Detector name (see `sitewatch methods`).")] = DEFAULT_PAIR_METHOD,
    score: Annotated[Path | None, typer.Option(help="Also write the float32 change score here.")] = None,
    coregister: Annotated[bool, typer.Option(help="Co-register AFTER onto BEFORE (phase correlation).")] = False,
    bands: Annotated[str | None, typer.Option(help="Comma-separated bands to use (default: all common).")] = None,
    param: Annotated[list[str] | None, typer.Option(help="Detector parameter KEY=VALUE (repeatable).")] = None,
    windowed: Annotated[bool | None, typer.Option(
        "--windowed/--in-memory",
        help="Window by window in bounded memory (cva, irmad), or whole images in memory; "
             "default: windowed for images over 25 million pixels when the detector can.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Threads of windowed detection (default: every core).")]
    = None,
) -> None:
    """Detect change between two images; write a change mask on BEFORE's finest grid."""
    from ..pair import detect_pair as _detect_pair

    kwargs: dict[str, Any] = {"score_path": score} if score else {}
    if bands:
        kwargs["bands"] = [b.strip() for b in bands.split(",") if b.strip()]
    kwargs.update(_params(param))
    with progress() as cb:
        r = _detect_pair(before, after, out, method=method, coregister=coregister, windowed=windowed,
                         workers=workers, progress=lambda d, t: cb("detect", d, t), **kwargs)
    console.print(
        f"{r.changed_pixels} changed pixel(s) ({r.changed_fraction:.2%}) by {r.method} in {r.seconds:.1f} s: {r.out}"
    )
