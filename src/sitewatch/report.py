"""A static HTML evidence report for one site: what changed, when, how sure, and from which images.

:func:`write_report` writes ``index.html`` plus ``timeline.png`` and ``chips/*.png`` beside it.  The page
has inline CSS, no scripts and only relative links, so it opens from ``file://`` without a network and
can be archived or sent as a folder.  Everything needed to check it is on the page: the scenes used,
the method and parameters, each change's provenance, and which image each chip was cut from, also
embedded as JSON (``<script type="application/json" id="provenance">``) for machines.

Chips are true colour (B04, B03, B02) with one 2-98 % percentile stretch shared by the three bands and
by both chips of a pair, so brightness differences between "before" and "after" are real; pixels are
upscaled with nearest neighbour (no invented detail) and the change polygon is outlined in magenta.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
from affine import Affine
from PIL import Image, ImageDraw, ImageFont
from shapely.affinity import affine_transform
from shapely.geometry.base import BaseGeometry

from .export import feature_collection, geometry_to_geojson, iso_utc, to_jsonable
from .geo import WGS84, to_crs
from .types import Change, Scene, SiteResult

__all__ = ["describe_activity", "write_report"]

RGB_BANDS = ("B04", "B03", "B02")
MARGIN_M = 200.0  # context around a change, each side
MIN_CHIP_PX = 48
CHIP_PX = 256  # target display size of a change chip (integer nearest-neighbour upscaling)
OVERVIEW_PX = 512
MAX_RENDER_PX = 1024  # larger crops are subsampled before upscaling
MOSTLY_CLEAR = 0.8  # share of clear, valid pixels for a chip image to count as "mostly clear"
CLEAR_DATE_MIN = 0.5  # share of the site clear for a date to count as a clear date
RECENT_DAYS = 183  # "the last 6 months of the series"
OUTLINE, HALO, SITE_LINE, NODATA = (255, 0, 255), (0, 0, 0), (0, 255, 255), (128, 128, 128)
_TOL = timedelta(seconds=1)
_DASH = "\u2014"


@dataclass(frozen=True)
class _Grid:
    stack: Any
    transform: Affine
    crs: str
    height: int
    width: int
    times: tuple[datetime, ...]


@dataclass(frozen=True)
class _Chip:
    file: str
    index: int
    fraction: float
    width: int
    height: int


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _t(dt: datetime | None) -> str:
    return iso_utc(dt) or _DASH


def _num(x: float | None, fmt: str) -> str:
    return _DASH if x is None or not math.isfinite(float(x)) else format(float(x), fmt)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")[:60] or "change"


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# -- activity ------------------------------------------------------------------------------------


def describe_activity(result: SiteResult) -> str:
    """One sentence explaining ``result.activity`` from the dates of the changes in the series."""
    if not result.dates:
        return "No observation of the site is available, so its activity cannot be assessed."
    start, end = min(map(_utc, result.dates)), max(map(_utc, result.dates))
    if not any(f >= CLEAR_DATE_MIN for f in result.clear_fraction) and not result.changes:
        return "No date has most of the site clear of cloud, so its activity cannot be assessed."
    if not result.changes:
        return f"No change was detected between {start.date()} and {end.date()}."
    since = end - timedelta(days=RECENT_DAYS)
    n = len(result.changes)
    recent = sum(_utc(c.first_seen_before) >= since for c in result.changes)
    last = max(_utc(c.first_seen_before) for c in result.changes)
    share = f"{recent} of the {n} detected changes" if n > 1 else ("The" if recent else "The only")
    verb = "were" if n > 1 else "was" if recent else "was not"
    if n == 1:
        share += " detected change"
    if recent == 0 and n > 1:
        share, verb = f"None of the {n} detected changes", "was"
    return (
        f"{share} {verb} first seen in the last 6 months of the series (since {since.date()}); "
        f"the most recent was first seen on {last.date()}."
    )


# -- stack access --------------------------------------------------------------------------------


def _grid(stack: Any) -> tuple[_Grid | None, str]:
    """The stack's grid, or None and the reason it cannot be used for image chips."""
    if stack is None:
        return None, "No image stack was kept with this result, so no image chips are shown."
    try:
        bands = [str(b) for b in stack["band"].values]
        missing = [b for b in RGB_BANDS if b not in bands]
        if missing:
            return None, f"The image stack has no band {', '.join(missing)}, so no true-colour chips are shown."
        times = tuple(
            datetime.fromtimestamp(int(t) / 1e9, UTC)
            for t in stack["time"].values.astype("datetime64[ns]").astype("int64")
        )
        grid = _Grid(
            stack,
            Affine(*stack.attrs["transform"][:6]),
            str(stack.attrs["crs"]),
            int(stack.sizes["y"]),
            int(stack.sizes["x"]),
            times,
        )
    except (KeyError, AttributeError, TypeError, ValueError) as exc:
        return None, f"The image stack cannot be read ({exc}), so no image chips are shown."
    if not times or grid.height == 0 or grid.width == 0:
        return None, "The image stack is empty, so no image chips are shown."
    return grid, ""


def _to_pixels(geom: BaseGeometry, grid: _Grid) -> BaseGeometry:
    """A WGS84 geometry in the stack's (column, row) pixel coordinates (0, 0 = top-left corner)."""
    inv = ~grid.transform
    return affine_transform(to_crs(geom, WGS84, grid.crs), [inv.a, inv.b, inv.d, inv.e, inv.c, inv.f])


def _window(pix: BaseGeometry, grid: _Grid) -> tuple[int, int, int, int] | None:
    """(row0, row1, col0, col1) around a pixel-space geometry with the margin, clipped to the grid."""
    if pix.is_empty:
        return None
    res = math.sqrt(abs(grid.transform.determinant)) or 1.0
    pad = math.ceil(MARGIN_M / res)
    c0, r0, c1, r1 = pix.bounds
    c0, r0, c1, r1 = math.floor(c0) - pad, math.floor(r0) - pad, math.ceil(c1) + pad, math.ceil(r1) + pad
    grow_c, grow_r = max(0, MIN_CHIP_PX - (c1 - c0)), max(0, MIN_CHIP_PX - (r1 - r0))
    c0, c1 = c0 - grow_c // 2, c1 + grow_c - grow_c // 2
    r0, r1 = r0 - grow_r // 2, r1 + grow_r - grow_r // 2
    r0, r1, c0, c1 = max(r0, 0), min(r1, grid.height), max(c0, 0), min(c1, grid.width)
    return (r0, r1, c0, c1) if r1 > r0 and c1 > c0 else None


def _read(grid: _Grid, index: int, win: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """RGB (3, h, w) float32 and usable (clear and finite) mask (h, w) at one time step."""
    r0, r1, c0, c1 = win
    sel = {"time": index, "y": slice(r0, r1), "x": slice(c0, c1)}
    refl = grid.stack["reflectance"].sel(band=list(RGB_BANDS)).isel(sel).transpose("band", "y", "x")
    rgb = np.asarray(refl.values, dtype=np.float32)
    ok = np.isfinite(rgb).all(axis=0)
    if "clear" in grid.stack:
        ok &= np.asarray(grid.stack["clear"].isel(sel).transpose("y", "x").values, dtype=bool)
    return rgb, ok


def _fractions(grid: _Grid, win: tuple[int, int, int, int]) -> list[float]:
    """Share of usable pixels in the window, per time step (read one step at a time)."""
    return [float(_read(grid, i, win)[1].mean()) for i in range(len(grid.times))]


def _pick(times: tuple[datetime, ...], fracs: list[float], cands: list[int], target: datetime) -> int | None:
    """The mostly-clear candidate nearest ``target``; else the clearest (nearest on ties); None if none."""
    usable = [i for i in cands if fracs[i] > 0]
    if not usable:
        return None
    good = [i for i in usable if fracs[i] >= MOSTLY_CLEAR]
    if good:
        return min(good, key=lambda i: abs(times[i] - target))
    return min(usable, key=lambda i: (-fracs[i], abs(times[i] - target)))


def _stretch(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """One 2-98 % stretch over all bands of all images (over usable pixels when there are enough)."""
    vals = np.concatenate([rgb[:, ok].ravel() for rgb, ok in pairs]) if pairs else np.empty(0)
    if vals.size < 30:
        vals = np.concatenate([rgb[np.isfinite(rgb)] for rgb, _ in pairs]) if pairs else vals
    if vals.size == 0:
        return 0.0, 0.3
    lo, hi = (float(v) for v in np.percentile(vals, [2, 98]))
    return lo, hi if hi > lo else lo + 1e-6


def _image(rgb: np.ndarray, lo: float, hi: float, target: int) -> tuple[Image.Image, float]:
    """A stretched, nearest-neighbour-resized RGB image and its pixel scale factor."""
    step = max(1, math.ceil(max(rgb.shape[1:]) / MAX_RENDER_PX))
    rgb = rgb[:, ::step, ::step]
    scaled = np.clip((rgb - lo) / (hi - lo), 0.0, 1.0) * 255.0
    arr = np.nan_to_num(scaled).round().astype(np.uint8).transpose(1, 2, 0).copy()
    arr[~np.isfinite(rgb).all(axis=0)] = NODATA
    up = max(1, round(target / max(arr.shape[:2])))
    img = Image.fromarray(arr, "RGB")
    return img.resize((img.width * up, img.height * up), Image.Resampling.NEAREST), up / step


def _rings(geom: BaseGeometry) -> list[list[tuple[float, float]]]:
    if geom.is_empty:
        return []
    if hasattr(geom, "geoms"):
        return [r for g in geom.geoms for r in _rings(g)]
    if geom.geom_type == "Polygon":
        return [list(geom.exterior.coords)] + [list(r.coords) for r in geom.interiors]
    return [list(geom.coords)]


def _draw(img: Image.Image, pix: BaseGeometry, win: tuple[int, ...], scale: float, color: tuple, width: int) -> None:
    """Outline a pixel-space geometry on a chip cut at ``win`` and scaled by ``scale``."""
    draw = ImageDraw.Draw(img)
    for ring in _rings(pix):
        pts = [((x - win[2]) * scale, (y - win[0]) * scale) for x, y in ring]
        if len(pts) == 1:
            (x, y), r = pts[0], 2 * width
            draw.ellipse((x - r, y - r, x + r, y + r), outline=color, width=width)
            continue
        draw.line(pts, fill=HALO, width=width + 2, joint="curve")
        draw.line(pts, fill=color, width=width, joint="curve")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def _save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", optimize=True)


# -- rendering -----------------------------------------------------------------------------------


def _change_chips(grid: _Grid, change: Change, n: int, out: Path) -> tuple[dict[str, _Chip], str, list[dict]]:
    """Before/after chips of one change: chip info by role, a note, and provenance records."""
    pix = _to_pixels(change.geometry, grid)
    win = _window(pix, grid)
    if win is None:
        return {}, "The change lies outside the image stack, so no chips are shown.", []
    fracs, times = _fractions(grid, win), grid.times
    fsb = _utc(change.first_seen_before)
    after_c = [i for i, t in enumerate(times) if t >= fsb - _TOL]
    within = [i for i in after_c if times[i] <= _utc(change.last_seen) + _TOL]
    picks = {
        "before": _pick(times, fracs, [i for i, t in enumerate(times) if t < fsb - _TOL],
                        _utc(change.first_seen_after or fsb)),
        "after": _pick(times, fracs, within or after_c, fsb),
    }
    data = {role: _read(grid, i, win) for role, i in picks.items() if i is not None}
    lo, hi = _stretch(list(data.values()))
    chips, records = {}, []
    for role, (rgb, _) in data.items():
        img, scale = _image(rgb, lo, hi, CHIP_PX)
        _draw(img, pix, win, scale, OUTLINE, 2)
        name = f"chips/{n:02d}-{_safe(change.change_id)}-{role}.png"
        _save(img, out / name)
        i = picks[role]
        assert i is not None
        chips[role] = _Chip(name, i, fracs[i], img.width, img.height)
        records.append({"change_id": change.change_id, "role": role, "file": name, "time": iso_utc(times[i]),
                        "clear_fraction": round(fracs[i], 4), "window_rows_cols": list(win),
                        "bands": list(RGB_BANDS), "stretch": [lo, hi]})
    notes = []
    if picks["before"] is None:
        notes.append("no usable image before the change" if change.first_seen_after else
                     "the change was present from the first observation, so there is no 'before' image")
    if picks["after"] is None:
        notes.append("no usable image with the change")
    return chips, "; ".join(notes).capitalize() + ("." if notes else ""), records


def _overview(grid: _Grid, result: SiteResult, changes: list[Change], out: Path) -> tuple[_Chip | None, dict]:
    """The whole stack at the last mostly-clear date, with the site and every change outlined."""
    win = (0, grid.height, 0, grid.width)
    fracs = _fractions(grid, win)
    good = [i for i, f in enumerate(fracs) if f >= MOSTLY_CLEAR]
    index = good[-1] if good else _pick(grid.times, fracs, list(range(len(fracs))), grid.times[-1])
    if index is None:
        return None, {}
    rgb, ok = _read(grid, index, win)
    lo, hi = _stretch([(rgb, ok)])
    img, scale = _image(rgb, lo, hi, OVERVIEW_PX)
    _draw(img, _to_pixels(result.site.geometry, grid), win, scale, SITE_LINE, 1)
    font, draw = _font(14), ImageDraw.Draw(img)
    for n, change in enumerate(changes, 1):
        pix = _to_pixels(change.geometry, grid)
        _draw(img, pix, win, scale, OUTLINE, 2)
        if not pix.is_empty:
            p = pix.representative_point()
            draw.text((p.x * scale, p.y * scale), str(n), fill=(255, 255, 255), font=font, anchor="mm",
                      stroke_width=2, stroke_fill=HALO)
    _save(img, out / "chips/overview.png")
    rec = {"role": "overview", "file": "chips/overview.png", "time": iso_utc(grid.times[index]),
           "clear_fraction": round(fracs[index], 4), "bands": list(RGB_BANDS), "stretch": [lo, hi]}
    return _Chip("chips/overview.png", index, fracs[index], img.width, img.height), rec


def _timeline(result: SiteResult, changes: list[Change], path: Path) -> bool:
    """Changed area (step line) and clear fraction (markers) per date; False when there are no dates."""
    n = min(len(result.dates), len(result.changed_area_m2), len(result.clear_fraction))
    if n == 0:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    dates = [_utc(d).replace(tzinfo=None) for d in result.dates[:n]]
    fig = Figure(figsize=(9, 3.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.step(dates, result.changed_area_m2[:n], where="post", color="#b3261e", lw=2, label="changed area")
    ax.plot(dates, result.changed_area_m2[:n], "o", color="#b3261e", ms=3)
    for c in changes:
        ax.axvline(_utc(c.first_seen_before).replace(tzinfo=None), color="#ff00ff", lw=0.8, ls="--")
    ax.set_ylabel("changed area (m²)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(dates, result.clear_fraction[:n], "s", color="#1f6fb4", ms=4, alpha=0.7, label="clear fraction")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("clear fraction of site")
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("acquisition date (UTC); dashed: first seen")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)
    fig.savefig(path, format="png", metadata={"Software": None})
    return True


# -- HTML ----------------------------------------------------------------------------------------


def _table(head: list[str], rows: list[list[tuple[str, str]]]) -> str:
    """An HTML table; cells are (escaped html, css class)."""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td class="{c}">{v}</td>' for v, c in row) + "</tr>\n" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>\n{body}</tbody></table>"


def _scene_ids(scenes: tuple[Scene, ...], when: datetime) -> list[str]:
    """Scenes acquired at ``when`` (to the second), else on the same UTC day."""
    exact = [s.scene_id for s in scenes if abs(_utc(s.datetime) - when) <= _TOL]
    return exact or [s.scene_id for s in scenes if _utc(s.datetime).date() == when.date()]


def _figure(chip: _Chip, grid: _Grid, scenes: tuple[Scene, ...], title: str, note: str = "") -> str:
    when = grid.times[chip.index]
    ids = ", ".join(_scene_ids(scenes, when)) or "unknown"
    return (f'<figure><img src="{_e(chip.file)}" width="{chip.width}" height="{chip.height}" '
            f'alt="{_e(title)} image, {_e(iso_utc(when))}"><figcaption><strong>{_e(title)}</strong> '
            f"{_e(iso_utc(when))}<br>scene {_e(ids)} &middot; {chip.fraction:.0%} clear{_e(note)}"
            "</figcaption></figure>")


def _header(result: SiteResult) -> str:
    site, status = result.site, result.activity or "no data"
    dates = sorted(map(_utc, result.dates))
    span = f"{_t(dates[0])} &ndash; {_t(dates[-1])}" if dates else _DASH
    n_clear = sum(f >= CLEAR_DATE_MIN for f in result.clear_fraction)
    parts = [f"<h1>{_e(site.name)}</h1>"]
    if site.aliases:
        parts.append(f'<p class="aliases">also known as {_e(", ".join(site.aliases))}</p>')
    parts.append(f'<div class="summary"><p><span class="badge {_e(_safe(status).replace("_", "-"))}">'
                 f"{_e(status)}</span> {_e(describe_activity(result))}</p><dl class=\"facts\">")
    facts = [("Observed", span), ("Dates", f"{len(result.dates)} ({n_clear} clear: at least "
             f"{CLEAR_DATE_MIN:.0%} of the site clear)"), ("Scenes", str(len(result.scenes))),
             ("Changes", str(len(result.changes))), ("Method", _e(result.method))]
    if site.notes:
        facts.append(("Notes", _e(site.notes)))
    if site.reason or site.added_by:
        facts.append(("Watched", _e(" ".join(filter(None, [site.reason, f"(added by {site.added_by})"
                                                             if site.added_by else ""])))))
    parts += [f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts]
    return "\n".join(parts) + "</dl></div>"


def _change_row(n: int, c: Change) -> list[tuple[str, str]]:
    return [(str(n), "num"), (f'<a href="#change-{n}">{_e(c.change_id)}</a>', ""), (_e(c.status), ""),
            (_num(c.area_m2, ",.0f"), "num"), (f"{_t(c.first_seen_after)} &ndash; {_t(c.first_seen_before)}",
            "time"), (_t(c.last_seen), "time"), (str(c.n_observations), "num"), (_num(c.score, ".3g"), "num"),
            (_num(c.confidence, ".2f"), "num")]


def _json_block(obj: Any) -> str:
    """JSON safe inside a <script> element: <, > and & escaped as JSON unicode escapes."""
    text = json.dumps(to_jsonable(obj), ensure_ascii=False, indent=1, allow_nan=False, sort_keys=True)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _pretty(value: Any) -> str:
    return _e(json.dumps(to_jsonable(value), ensure_ascii=False, indent=1, sort_keys=True))


def _crs_label(crs: str) -> str:
    from pyproj import CRS

    try:
        epsg = CRS.from_user_input(crs).to_epsg()
    except Exception:  # noqa: BLE001 - an unreadable CRS is still shown verbatim
        epsg = None
    return f"EPSG:{epsg}" if epsg else crs


def write_report(result: SiteResult, out_dir: str | Path) -> Path:
    """Write the evidence report of ``result`` to ``out_dir/index.html`` (with its images); return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    changes = sorted(result.changes, key=lambda c: (_utc(c.first_seen_before), c.change_id))
    grid, why = _grid(result.stack)
    chip_records: list[dict] = []

    if grid is not None:
        ov, rec = _overview(grid, result, changes, out)
        chip_records += [rec] if rec else []
        overview = (_figure(ov, grid, result.scenes, "Site", " · cyan: site · magenta: changes, numbered as below")
                    if ov else '<p class="note">No usable image of the whole site.</p>')
    else:
        overview = f'<p class="note">{_e(why)}</p>'

    sections = []
    for n, c in enumerate(changes, 1):
        head = (f'<article class="change" id="change-{n}"><h3>#{n} &middot; {_e(c.change_id)} '
                f'<span class="muted">&middot; {_e(c.status)} &middot; {_num(c.area_m2, ",.0f")} m²</span></h3>'
                f"<p>First seen between <code>{_t(c.first_seen_after)}</code> and <code>{_t(c.first_seen_before)}"
                f"</code>; last seen <code>{_t(c.last_seen)}</code>; {c.n_observations} observations; "
                f"score {_num(c.score, '.3g')}; confidence {_num(c.confidence, '.2f')}.</p>")
        body = ""
        if grid is None:
            body = f'<p class="note">{_e(why)}</p>'
        else:
            chips, note, recs = _change_chips(grid, c, n, out)
            chip_records += recs
            targets = {"before": c.first_seen_after, "after": c.first_seen_before}
            figs = []
            for role, chip in chips.items():
                want = targets[role]
                off = want is not None and abs(grid.times[chip.index] - _utc(want)) > _TOL
                extra = f" · nearest usable image to {_t(want)}" if off else ""
                figs.append(_figure(chip, grid, result.scenes, role.capitalize(), extra))
            body = f'<div class="pair">{"".join(figs)}</div>' + (f'<p class="note">{_e(note)}</p>' if note else "")
        sections.append(head + body + "</article>")
    changes_html = "\n".join(sections) if sections else '<p class="note"><strong>No change detected.</strong></p>'

    has_timeline = _timeline(result, changes, out / "timeline.png")
    timeline_html = ('<img src="timeline.png" alt="changed area and clear fraction per date">' if has_timeline
                     else '<p class="note">No dates to plot.</p>')
    head = ["#", "ID", "Status", "Area (m²)", "First seen (after – before)", "Last seen", "Obs.", "Score",
            "Confidence"]
    table = (_table(head, [_change_row(n, c) for n, c in enumerate(changes, 1)]) if changes
             else '<p class="note">No change detected.</p>')

    scenes = sorted(result.scenes, key=lambda s: (_utc(s.datetime), s.scene_id))
    scene_rows = [[(_e(s.scene_id), ""), (_t(s.datetime), "time"), (_e(s.platform), ""), (_e(s.source), ""),
                   (f"<code>{_e(s.path)}</code>", "")] for s in scenes]
    prov = [f"<dl class=\"facts\"><dt>sitewatch</dt><dd>{_e(result.version or 'unknown')}</dd>"
            f"<dt>Method</dt><dd>{_e(result.method)}</dd></dl><h3>Parameters</h3><pre>{_pretty(result.params)}</pre>",
            f"<h3>Scenes used ({len(scenes)})</h3>",
            _table(["Scene", "Acquired (UTC)", "Platform", "Source", "Path"], scene_rows) if scenes else
            '<p class="note">No scenes.</p>']
    for n, c in enumerate(changes, 1):
        rows = [[(f"<code>{_e(k)}</code>", ""), (f"<code>{_e(json.dumps(to_jsonable(v), ensure_ascii=False))}"
                 "</code>", "")] for k, v in sorted(c.provenance.items(), key=lambda kv: str(kv[0]))]
        prov.append(f"<h3>#{n} &middot; {_e(c.change_id)}</h3>" + (_table(["Key", "Value"], rows) if rows else
                    '<p class="note">No provenance recorded.</p>'))
    prov.append('<p class="note">All of this, with the chips\' source dates and stretches, is embedded in this '
                'page as JSON (<code>script#provenance</code>).</p>')

    stack_info = None
    if grid is not None:
        stack_info = {"crs": _crs_label(grid.crs), "transform": list(grid.transform)[:6],
                      "shape": [len(grid.times), grid.height, grid.width]}
    payload = {
        "sitewatch_version": result.version, "method": result.method, "params": result.params,
        "activity": result.activity, "activity_explanation": describe_activity(result),
        "site": {"name": result.site.name, "aliases": list(result.site.aliases), "notes": result.site.notes,
                 "geometry": geometry_to_geojson(result.site.geometry)},
        "dates": [iso_utc(d) for d in result.dates], "clear_fraction": list(result.clear_fraction),
        "changed_area_m2": list(result.changed_area_m2),
        "scenes": [{"scene_id": s.scene_id, "datetime": iso_utc(s.datetime), "platform": s.platform,
                    "source": s.source, "path": s.path, "mask_path": s.mask_path, "cloud_cover": s.cloud_cover}
                   for s in scenes],
        "changes": feature_collection(changes), "chips": chip_records, "stack": stack_info,
    }
    footer = (f"Generated by sitewatch {_e(result.version or 'unknown')} on {_t(datetime.now(UTC))}. "
              "All times are UTC (ISO 8601). Chips: true colour (B04, B03, B02), one 2&ndash;98&nbsp;% stretch per "
              "pair, nearest-neighbour upscaling, grey = no data; <span class=\"swatch\"></span> change outline.")
    page = Template(resources.files("sitewatch").joinpath("templates/report.html").read_text("utf-8")).substitute(
        title=_e(f"{result.site.name} – sitewatch report"), version=_e(result.version), header=_header(result),
        overview=overview, changes=changes_html, timeline=timeline_html, table=table, provenance="\n".join(prov),
        footer=footer, json=_json_block(payload))
    index = out / "index.html"
    fd, tmp = tempfile.mkstemp(prefix=".index.", suffix=".html.tmp", dir=out)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(page)
        os.replace(tmp, index)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return index
