"""A static HTML evidence report for one site: what changed, when, how sure, and from which images.

:func:`write_report` writes ``index.html`` plus ``timeline.png`` and ``chips/*.png`` beside it
(:func:`render_report` does the same and returns a :class:`Report`: the page, each chip's file and each
change's anchor, for links from elsewhere).  The page has inline CSS, no scripts and only relative links, so
it opens from ``file://`` without a network and can be archived or sent as a folder.  Everything needed to
check it is on the page: the scenes used, the method and parameters, each change's provenance and the image
each chip was cut from, also embedded as JSON (``<script type="application/json" id="provenance">``) for
machines.

The pictures are drawn by :mod:`sitewatch.render` (each change's before, first-seen and latest looks, in true
colour and SWIR false colour; an overview of the site; the timeline).  The page is laid out by the Jinja2
templates in ``sitewatch/templates/`` (``report.html`` on ``base.html``, partials named ``_*.html``), with
autoescaping on: text from sites, changes and scenes is always escaped.  The provenance JSON lists every
chip: date, scene(s), window (pixels, stack CRS and WGS84), bands and stretch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from ._atomic import write_text
from ._time import as_utc, iso_utc
from .constants import MIN_CLEAR_FRACTION, RECENT_DAYS
from .export import feature_collection, geometry_to_geojson, to_jsonable
from .render import (
    COMPOSITES,
    MOSTLY_CLEAR,
    ROLES,
    Chip,
    Composite,
    StackGrid,
    change_anchor,
    render_change_chips,
    render_overview,
    render_timeline,
    safe_name,
    stack_grid,
)
from .types import Change, Scene, SiteResult

__all__ = ["Report", "describe_activity", "render_report", "report_archive", "write_report"]

_TOL = timedelta(seconds=1)
_DASH = "\u2014"


@dataclass(frozen=True)
class Report:
    """A written report: the page, every chip drawn for it (the overview first) and each change's anchor."""

    index: Path  # out_dir/index.html
    chips: tuple[Chip, ...]
    anchors: dict[str, str]  # change id -> id of its section in the page (link to ``index#anchor``)
    timeline: Path | None = None  # out_dir/timeline.png, None when there were no dates to plot

    def chips_of(self, change_id: str) -> tuple[Chip, ...]:
        """The chips of one change, in page order (true colour, then SWIR; before, first seen, latest)."""
        return tuple(c for c in self.chips if c.change_id == change_id)


@dataclass(frozen=True)
class _Look:
    """One cell of a row of looks: a chip, or why there is none."""

    title: str  # ROLES[role]
    chip: Chip | None
    why: str = ""  # when there is no chip
    note: str = ""  # caption addition: why the chip's date is not the one it stands for


@dataclass(frozen=True)
class _Row:
    composite: Composite
    looks: tuple[_Look, ...] = ()
    skipped: str = ""  # why the row is not shown


@dataclass(frozen=True)
class _ChangeView:
    """What the page shows of one change (templates/_change.html)."""

    n: int
    change: Change
    anchor: str
    note: str = ""  # why there are no chips at all
    rows: tuple[_Row, ...] = ()
    chips: tuple[Chip, ...] = ()

    @property
    def provenance(self) -> list[tuple[Any, Any]]:
        return sorted(self.change.provenance.items(), key=lambda kv: str(kv[0]))


def _t(dt: datetime | None) -> str:
    return iso_utc(dt) or _DASH


def _num(x: float | None, fmt: str) -> str:
    return _DASH if x is None or not math.isfinite(float(x)) else format(float(x), fmt)


def _pretty(value: Any, indent: int | None = 1) -> str:
    return json.dumps(to_jsonable(value), ensure_ascii=False, indent=indent, sort_keys=True)


@cache
def _env() -> Environment:
    """The templates of ``sitewatch/templates``, autoescaped; None is written as nothing."""
    env = Environment(
        loader=PackageLoader("sitewatch", "templates"), autoescape=True, undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, finalize=lambda v: "" if v is None else v,
    )  # fmt: skip
    env.filters.update(t=_t, num=_num, pretty=_pretty)
    return env


# -- activity ------------------------------------------------------------------------------------


def _min_clear(result: SiteResult) -> float:
    """The clear share from which a date was used: the run's tracking parameter, else the default."""
    tracking = result.params.get("tracking") if isinstance(result.params, dict) else None
    value = tracking.get("min_clear_fraction") if isinstance(tracking, dict) else None
    return float(value) if isinstance(value, (int, float)) else MIN_CLEAR_FRACTION


def describe_activity(result: SiteResult) -> str:
    """One sentence explaining ``result.activity``: changes first seen in the last 6 months of the series.

    The series ends at the last date clear enough to be used (see :func:`_min_clear`), as in the pipeline.
    """
    dates = [as_utc(d) for d in result.dates]
    used = [d for d, f in zip(dates, result.clear_fraction, strict=False) if f >= _min_clear(result)]
    if not dates:
        return "No observation of the site is available, so its activity cannot be assessed."
    if not used and not result.changes:
        share = f"{_min_clear(result):.0%} of the site"
        return f"None of the {len(dates)} dates has {share} clear, so activity cannot be assessed."
    if not result.changes:
        return f"No change was detected between {min(dates).date()} and {max(dates).date()}."
    since = max(used or dates) - timedelta(days=RECENT_DAYS)
    n = len(result.changes)
    recent = sum(as_utc(c.first_seen_before) >= since for c in result.changes)
    if n == 1:
        subject, verb = "The only detected change", "was" if recent else "was not"
    elif recent == 0:
        subject, verb = f"None of the {n} detected changes", "was"
    else:
        subject, verb = f"{recent} of the {n} detected changes", "were" if recent > 1 else "was"
    last = max(as_utc(c.first_seen_before) for c in result.changes)
    return (
        f"{subject} {verb} first seen in the last 6 months of the series (since {since.date()}); "
        f"the most recent was first seen on {last.date()}."
    )


# -- the page ------------------------------------------------------------------------------------


def _caption_note(chip: Chip, c: Change) -> str:
    """Why a chip's date is not the one it stands for (the change's date of that look), if it is not."""
    want = {"before": c.first_seen_after, "first": c.first_seen_before, "latest": c.last_seen}[chip.role]
    if want is None or abs(chip.date - as_utc(want)) <= _TOL:
        return ""
    if chip.role == "latest":
        clear = "latest mostly clear image" if chip.clear_fraction >= MOSTLY_CLEAR else "clearest later image"
        return f" · {clear}; last seen {_t(want)}"
    return f" · nearest usable image to {_t(want)}"


def _change_view(n: int, c: Change, grid: StackGrid | None, why: str, out: Path) -> _ChangeView:
    """Draw the chips of change number ``n`` (when there is a stack) and arrange them in rows of looks."""
    anchor = change_anchor(n)
    if grid is None:
        return _ChangeView(n, c, anchor, note=why)
    drawn = render_change_chips(grid, c, n, out)
    if drawn.note:
        return _ChangeView(n, c, anchor, note=drawn.note)
    rows = []
    for comp in COMPOSITES:
        if comp.key in drawn.skipped:
            rows.append(_Row(comp, skipped=drawn.skipped[comp.key]))
            continue
        looks = []
        for role, title in ROLES.items():
            chip = drawn.chip(comp.key, role)
            why = drawn.why.get(role, "no usable image")
            looks.append(_Look(title, chip, why, _caption_note(chip, c) if chip else ""))
        rows.append(_Row(comp, tuple(looks)))
    return _ChangeView(n, c, anchor, rows=tuple(rows), chips=drawn.chips)


def _scene_record(s: Scene) -> dict[str, Any]:
    keys = ("scene_id", "datetime", "platform", "source", "path", "mask_path", "cloud_cover")
    return {k: iso_utc(s.datetime) if k == "datetime" else getattr(s, k) for k in keys}


def _json_block(obj: Any) -> str:
    """JSON safe inside a <script> element: <, > and & written as JSON unicode escapes."""
    text = json.dumps(to_jsonable(obj), ensure_ascii=False, indent=1, allow_nan=False, sort_keys=True)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _payload(
    result: SiteResult, changes: list[Change], scenes: list[dict], grid: StackGrid | None, chips: Sequence[Chip]
) -> dict[str, Any]:
    """The machine-readable provenance embedded in the page."""
    site, stack = result.site, None
    if grid is not None:
        shape = [len(grid.times), grid.height, grid.width]
        stack = {"crs": grid.crs, "transform": list(grid.transform)[:6], "shape": shape}
    site_info = {k: getattr(site, k) for k in ("name", "aliases", "notes", "reason", "added_by")}
    return {
        "sitewatch_version": result.version, "method": result.method, "params": result.params,
        "activity": result.activity, "activity_explanation": describe_activity(result),
        "site": {**site_info, "geometry": geometry_to_geojson(site.geometry)},
        "dates": [iso_utc(d) for d in result.dates], "clear_fraction": list(result.clear_fraction),
        "changed_area_m2": list(result.changed_area_m2), "scenes": scenes,
        "changes": feature_collection(changes), "chips": [c.record() for c in chips], "stack": stack,
    }


def _page(result: SiteResult, views: list[_ChangeView], overview: Chip | None, why: str, **context: Any) -> str:
    """The HTML of the page (templates/report.html)."""
    site, status, min_clear = result.site, result.activity or "no data", _min_clear(result)
    return _env().get_template("report.html").render(
        result=result, site=site, status=status, status_class=safe_name(status).replace("_", "-"),
        activity=describe_activity(result), dates=sorted(map(as_utc, result.dates)), min_clear=min_clear,
        n_clear=sum(f >= min_clear for f in result.clear_fraction), version=result.version or "unknown",
        generated=_t(datetime.now(UTC)), changes=views, overview=overview,
        overview_note=why or "No usable image of the site.", **context,
    )  # fmt: skip


def report_archive(result: SiteResult) -> bytes:
    """The evidence report of ``result`` as one ZIP file (``index.html``, the timeline and the chips, in a folder
    named after the site), for a download: drawn in a temporary folder that is removed afterwards."""
    import tempfile
    import zipfile
    from io import BytesIO

    folder = safe_name(result.site.name, "site", limit=None)
    buf = BytesIO()
    with tempfile.TemporaryDirectory(prefix="sitewatch-report-") as tmp:
        render_report(result, Path(tmp))
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(Path(tmp).rglob("*")):
                if f.is_file():
                    z.write(f, f"{folder}-report/{f.relative_to(tmp).as_posix()}")
    return buf.getvalue()


def render_report(result: SiteResult, out_dir: str | Path) -> Report:
    """Write the evidence report of ``result`` to ``out_dir/index.html`` (plus images) and describe it.

    Images go to ``out_dir/timeline.png`` and ``out_dir/chips/``; files of the same names are replaced.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    changes = sorted(result.changes, key=lambda c: (as_utc(c.first_seen_before), c.change_id))
    scenes = [_scene_record(s) for s in sorted(result.scenes, key=lambda s: (as_utc(s.datetime), s.scene_id))]
    grid, why = stack_grid(result.stack, result.scenes)
    overview = render_overview(grid, result.site.geometry, changes, out) if grid is not None else None
    views = [_change_view(n, c, grid, why, out) for n, c in enumerate(changes, 1)]
    chips = ([overview] if overview else []) + [chip for v in views for chip in v.chips]
    timeline: Path | None = out / "timeline.png"
    if not render_timeline(result, changes, out / "timeline.png"):
        timeline = None
    provenance = Markup(_json_block(_payload(result, changes, scenes, grid, chips)))  # escaped for <script>
    page = _page(result, views, overview, why, scenes=scenes, timeline=timeline, provenance_json=provenance)
    index = out / "index.html"
    write_text(index, page)
    return Report(index, tuple(chips), {v.change.change_id: v.anchor for v in views}, timeline)


def write_report(result: SiteResult, out_dir: str | Path) -> Path:
    """Write the evidence report of ``result`` to ``out_dir/index.html`` (plus images); return that path.

    Images go to ``out_dir/timeline.png`` and ``out_dir/chips/``; files of the same names are replaced.
    """
    return render_report(result, out_dir).index
