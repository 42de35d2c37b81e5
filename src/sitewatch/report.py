"""A static HTML evidence report for one site: what changed, when, how sure, and from which images.

:func:`write_report` writes ``index.html`` plus ``timeline.png`` and ``chips/*.png`` beside it.  The page
has inline CSS, no scripts and only relative links, so it opens from ``file://`` without a network and
can be archived or sent as a folder.  Everything needed to check it is on the page: the scenes used,
the method and parameters, each change's provenance and the image each chip was cut from, also
embedded as JSON (``<script type="application/json" id="provenance">``) for machines.

Each change gets three looks: *before* (the clear image nearest ``first_seen_after``), *first seen*
(the image of ``first_seen_before``) and *latest* (the most recent mostly-clear image on or before
``last_seen``), so a change that keeps growing is visible even if it started small.  They are shown in
true colour (B04, B03, B02; one 2-98 % percentile stretch shared by the three bands and the three dates,
so brightness differences are real) and, when the stack has the bands, as a SWIR false-colour composite
(R, G, B = B12, B08, B04; a 2-98 % stretch per band shared by the three dates), where vegetation is green
and bare or built ground magenta to brown, so a roof painted green stands out.  Pixels are upscaled with
nearest neighbour (no invented detail) and the change polygon is outlined in magenta.  The provenance
JSON lists every chip: date, scene(s), window (pixels, stack CRS and WGS84), bands and stretch.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
from affine import Affine
from PIL import Image, ImageDraw, ImageFont
from pyproj import CRS
from shapely.affinity import affine_transform
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from .export import feature_collection, geometry_to_geojson, iso_utc, to_jsonable
from .geo import WGS84, to_crs
from .types import Change, Scene, SiteResult

__all__ = ["describe_activity", "write_report"]

RGB_BANDS = ("B04", "B03", "B02")
SWIR_BANDS = ("B12", "B08", "B04")  # the common "SWIR" composite: vegetation green, bare ground magenta
MARGIN_M = 200.0  # context around a change, each side
MIN_CHIP_PX = 48
CHIP_PX, OVERVIEW_PX = 256, 512  # target display sizes (integer nearest-neighbour upscaling)
MAX_RENDER_PX = 1024  # larger crops are subsampled before upscaling
MOSTLY_CLEAR = 0.8  # share of a chip's observable pixels that must be clear for "mostly clear"
PERCENTILES = (2.0, 98.0)  # the robust stretch
MIN_CLEAR_DEFAULT = 0.2  # a date is "clear" from this share of the site (the pipeline's default)
RECENT_DAYS = 183  # "the last 6 months of the series", as in the pipeline's activity status
OUTLINE, HALO, SITE_LINE, NODATA = (255, 0, 255), (0, 0, 0), (0, 255, 255), (128, 128, 128)
_TOL = timedelta(seconds=1)
_DASH = "\u2014"
Window = tuple[int, int, int, int]  # row0, row1, col0, col1 in the stack grid
Bounds = tuple[float, float, float, float]  # xmin, ymin, xmax, ymax


@dataclass(frozen=True)
class _Grid:
    stack: Any
    transform: Affine
    crs: str
    height: int
    width: int
    times: tuple[datetime, ...]
    scene_ids: tuple[tuple[str, ...], ...]  # per time step
    bands: tuple[str, ...]  # the stack's band names


@dataclass(frozen=True)
class _Composite:
    """A band combination shown as red, green and blue."""

    key: str  # in file names and the provenance JSON
    title: str
    bands: tuple[str, str, str]  # red, green, blue
    per_band: bool  # one stretch per band (else one for all three)
    legend: str


TRUE_COLOUR = _Composite(
    "true-colour", "True colour", RGB_BANDS, False, "one stretch for all bands, shared by the three dates"
)
SWIR = _Composite(
    "swir",
    "SWIR false colour",
    SWIR_BANDS,
    True,
    "vegetation green, bare or built ground magenta to brown; one stretch per band, shared by the three dates",
)
ROLES = {"before": "Before", "first": "First seen", "latest": "Latest"}  # the looks at a change, in order


@dataclass(frozen=True)
class _Chip:
    """One rendered image chip and where it came from (kept in the page's provenance JSON)."""

    role: str  # "before", "first", "latest" or "overview"
    composite: str  # _Composite.key
    bands: tuple[str, str, str]  # shown as red, green, blue
    file: str  # relative to index.html
    index: int  # stack time step
    time: str  # ISO UTC of that time step
    clear_fraction: float  # clear share of the chip's observable pixels
    scene_ids: tuple[str, ...]  # the scene(s) of that time step
    window: Window  # row0, row1, col0, col1 in the stack grid
    bounds: Bounds  # of the window, in the stack CRS
    bounds_wgs84: Bounds  # of the window, in lon/lat: west, south, east, north
    stretch: dict[str, tuple[float, float]]  # per band, the reflectance mapped to 0 and 255
    stretch_method: str
    width: int
    height: int
    change_id: str | None = None


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _t(dt: datetime | None) -> str:
    return iso_utc(dt) or _DASH


def _num(x: float | None, fmt: str) -> str:
    return _DASH if x is None or not math.isfinite(float(x)) else format(float(x), fmt)


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")[:60] or "change"


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# -- activity ------------------------------------------------------------------------------------


def _min_clear(result: SiteResult) -> float:
    """The clear share from which a date was used: the run's tracking parameter, else the default."""
    tracking = result.params.get("tracking") if isinstance(result.params, dict) else None
    value = tracking.get("min_clear_fraction") if isinstance(tracking, dict) else None
    return float(value) if isinstance(value, (int, float)) else MIN_CLEAR_DEFAULT


def describe_activity(result: SiteResult) -> str:
    """One sentence explaining ``result.activity``: changes first seen in the last 6 months of the series.

    The series ends at the last date clear enough to be used (see :func:`_min_clear`), as in the pipeline.
    """
    dates = [_utc(d) for d in result.dates]
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
    recent = sum(_utc(c.first_seen_before) >= since for c in result.changes)
    if n == 1:
        subject, verb = "The only detected change", "was" if recent else "was not"
    elif recent == 0:
        subject, verb = f"None of the {n} detected changes", "was"
    else:
        subject, verb = f"{recent} of the {n} detected changes", "were" if recent > 1 else "was"
    last = max(_utc(c.first_seen_before) for c in result.changes)
    return (
        f"{subject} {verb} first seen in the last 6 months of the series (since {since.date()}); "
        f"the most recent was first seen on {last.date()}."
    )


# -- stack access --------------------------------------------------------------------------------


def _scene_ids(scenes: tuple[Scene, ...], when: datetime) -> tuple[str, ...]:
    """Scenes acquired at ``when`` (to the second), else on the same UTC day."""
    exact = [s.scene_id for s in scenes if abs(_utc(s.datetime) - when) <= _TOL]
    return tuple(exact or [s.scene_id for s in scenes if _utc(s.datetime).date() == when.date()])


def _grid(stack: Any, scenes: tuple[Scene, ...]) -> tuple[_Grid | None, str]:
    """The stack's grid, or None and the reason it cannot be used for image chips."""
    if stack is None:
        return None, "No image stack was kept with this result, so no image chips are shown."
    try:
        bands = tuple(str(b) for b in stack["band"].values)
        missing = [b for b in RGB_BANDS if b not in bands]
        if missing:
            return None, f"The image stack has no band {', '.join(missing)}: no true-colour chips."
        times = tuple(t.item().replace(tzinfo=UTC) for t in stack["time"].values.astype("datetime64[us]"))
        ids = stack.attrs.get("scene_ids")  # one per time step, as sitewatch.stack writes them
        if ids is not None and len(ids) == len(times) and all(isinstance(i, str) for i in ids):
            per_time: tuple[tuple[str, ...], ...] = tuple((i,) for i in ids)
        else:
            per_time = tuple(_scene_ids(scenes, t) for t in times)
        crs = CRS.from_user_input(stack.attrs["crs"]).to_wkt()
        shape = (int(stack.sizes["y"]), int(stack.sizes["x"]))
        grid = _Grid(stack, Affine(*stack.attrs["transform"][:6]), crs, *shape, times, per_time, bands)
    except Exception as exc:  # noqa: BLE001 - an unusable stack costs the chips, not the report
        return None, f"The image stack cannot be used ({exc}), so no image chips are shown."
    if not times or 0 in shape:
        return None, "The image stack is empty, so no image chips are shown."
    return grid, ""


def _to_pixels(geom: BaseGeometry, grid: _Grid) -> BaseGeometry:
    """A WGS84 geometry in the stack's (column, row) pixel coordinates (0, 0 = top-left corner)."""
    inv = ~grid.transform
    return affine_transform(to_crs(geom, WGS84, grid.crs), [inv.a, inv.b, inv.d, inv.e, inv.c, inv.f])


def _window(pix: BaseGeometry, grid: _Grid) -> Window | None:
    """The window around a pixel-space geometry with the margin and minimum size, clipped to the grid."""
    if pix.is_empty:
        return None
    pad = math.ceil(MARGIN_M / (math.sqrt(abs(grid.transform.determinant)) or 1.0))
    c0, r0, c1, r1 = pix.bounds
    c0, r0, c1, r1 = math.floor(c0) - pad, math.floor(r0) - pad, math.ceil(c1) + pad, math.ceil(r1) + pad
    grow_c, grow_r = max(0, MIN_CHIP_PX - (c1 - c0)), max(0, MIN_CHIP_PX - (r1 - r0))
    c0, c1, r0, r1 = c0 - grow_c // 2, c1 + grow_c - grow_c // 2, r0 - grow_r // 2, r1 + grow_r - grow_r // 2
    r0, r1, c0, c1 = max(r0, 0), min(r1, grid.height), max(c0, 0), min(c1, grid.width)
    return (r0, r1, c0, c1) if r1 > r0 and c1 > c0 else None


def _bounds(grid: _Grid, win: Window) -> tuple[Bounds, Bounds]:
    """The window's bounds in the stack CRS and in WGS84 (xmin, ymin, xmax, ymax)."""
    (xa, ya), (xb, yb) = grid.transform * (win[2], win[0]), grid.transform * (win[3], win[1])
    native: Bounds = (min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))
    w, s, e, n = (round(float(v), 7) for v in to_crs(box(*native), grid.crs, WGS84).bounds)
    return native, (w, s, e, n)


def _read(grid: _Grid, index: int, win: Window, bands: tuple[str, ...] = RGB_BANDS) -> tuple[np.ndarray, np.ndarray]:
    """Three bands (3, h, w) float32 and the usable (clear and finite) mask (h, w) at one time step."""
    sel = {"time": index, "y": slice(win[0], win[1]), "x": slice(win[2], win[3])}
    refl = grid.stack["reflectance"].sel(band=list(bands)).isel(sel).transpose("band", "y", "x")
    rgb = np.asarray(refl.values, dtype=np.float32)
    ok: np.ndarray = np.asarray(np.isfinite(rgb).all(axis=0))
    if "clear" in grid.stack:
        ok &= np.asarray(grid.stack["clear"].isel(sel).transpose("y", "x").values, dtype=bool)
    return rgb, ok


def _fractions(grid: _Grid, win: Window) -> list[float]:
    """Per time step, the usable share of the window's observable pixels (usable at any time).

    Pixels never usable (outside the site mask, off the scenes) do not count against a date.
    """
    union, counts = np.zeros((win[1] - win[0], win[3] - win[2]), dtype=bool), []
    for i in range(len(grid.times)):  # one step at a time: bounded memory on long series
        ok = _read(grid, i, win)[1]
        union |= ok
        counts.append(int(ok.sum()))
    total = int(union.sum())
    return [c / total if total else 0.0 for c in counts]


def _pick(times: tuple[datetime, ...], fracs: list[float], cands: list[int], target: datetime) -> int | None:
    """The mostly-clear candidate nearest ``target``; else the clearest (nearest on ties); None if none."""
    usable = [i for i in cands if fracs[i] > 0]
    good = [i for i in usable if fracs[i] >= MOSTLY_CLEAR]
    if good:
        return min(good, key=lambda i: abs(times[i] - target))
    return min(usable, key=lambda i: (-fracs[i], abs(times[i] - target))) if usable else None


def _range(vals: np.ndarray) -> tuple[float, float]:
    """The robust (percentile) range of finite values, rounded to 1e-6 reflectance; (0, 0.3) if none."""
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return 0.0, 0.3
    lo, hi = (round(float(v), 6) for v in np.percentile(vals, PERCENTILES))
    return lo, hi if hi > lo else lo + 1e-6


def _stretch(pairs: list[tuple[np.ndarray, np.ndarray]], per_band: bool = False) -> list[tuple[float, float]]:
    """The stretch of each of the three bands over all images (over usable pixels when there are enough).

    ``per_band``: a range per band; else one range over all three bands (colours keep their balance).
    """

    def values(band: slice) -> np.ndarray:
        vals = np.concatenate([rgb[band][:, ok].ravel() for rgb, ok in pairs]) if pairs else np.empty(0)
        if vals.size < 30 and pairs:
            vals = np.concatenate([rgb[band].ravel() for rgb, _ in pairs])
        return vals

    if per_band:
        return [_range(values(slice(b, b + 1))) for b in range(3)]
    return [_range(values(slice(0, 3)))] * 3


def _stretch_record(bands: tuple[str, ...], ranges: list[tuple[float, float]]) -> dict[str, tuple[float, float]]:
    return dict(zip(bands, ranges, strict=True))


def _image(rgb: np.ndarray, ranges: list[tuple[float, float]], target: int) -> tuple[Image.Image, float]:
    """A stretched RGB image resized with nearest neighbour to about ``target`` px, and its scale."""
    step = max(1, math.ceil(max(rgb.shape[1:]) / MAX_RENDER_PX))
    rgb = rgb[:, ::step, ::step]
    lo = np.array([r[0] for r in ranges], dtype=np.float32)[:, None, None]
    hi = np.array([r[1] for r in ranges], dtype=np.float32)[:, None, None]
    scaled = np.nan_to_num(np.clip((rgb - lo) / (hi - lo), 0.0, 1.0) * 255.0)
    arr = scaled.round().astype(np.uint8).transpose(1, 2, 0).copy()
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


def _draw(img: Image.Image, pix: BaseGeometry, win: Window, scale: float, color: tuple, width: int) -> None:
    """Outline a pixel-space geometry (dark halo under a bright line) on a chip cut at ``win``."""
    draw = ImageDraw.Draw(img)
    for ring in _rings(pix):
        pts = [(round((x - win[2]) * scale), round((y - win[0]) * scale)) for x, y in ring]
        if len(pts) == 1:
            (x, y), r = pts[0], 2 * width
            draw.ellipse((x - r, y - r, x + r, y + r), outline=color, width=width)
            continue
        draw.line(pts, fill=HALO, width=width + 2, joint="curve")
        draw.line(pts, fill=color, width=width, joint="curve")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the small bitmap font
        return ImageFont.load_default()


def _save(img: Image.Image, out: Path, name: str) -> None:
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    img.save(out / name, format="PNG", optimize=True)


# -- images --------------------------------------------------------------------------------------


def _latest(times: tuple[datetime, ...], fracs: list[float], cands: list[int]) -> int | None:
    """The most recent mostly-clear candidate; else the clearest (most recent on ties); None if none."""
    good = [i for i in cands if fracs[i] >= MOSTLY_CLEAR]
    if good:
        return max(good, key=lambda i: times[i])
    usable = [i for i in cands if fracs[i] > 0]
    return max(usable, key=lambda i: (fracs[i], times[i])) if usable else None


def _looks(
    times: tuple[datetime, ...], fracs: list[float], change: Change
) -> tuple[dict[str, int | None], dict[str, str]]:
    """The time steps of the before, first-seen and latest looks at a change, and why any is missing.

    Before: the usable image nearest ``first_seen_after`` before ``first_seen_before``.  First seen: the
    one nearest ``first_seen_before`` from then on, preferably up to ``last_seen``.  Latest: the most
    recent mostly-clear image after the first-seen one, from the same dates.  Mostly clear is judged on
    the chip's window; when no candidate is, the clearest is used (its clear share is in the caption).
    """
    fsb, last = _utc(change.first_seen_before), _utc(change.last_seen)
    before = [i for i, t in enumerate(times) if t < fsb - _TOL]
    after = [i for i, t in enumerate(times) if t >= fsb - _TOL]
    within = [i for i in after if times[i] <= last + _TOL]  # prefer while it is seen
    pool, first = within, _pick(times, fracs, within, fsb)
    if first is None:
        pool, first = after, _pick(times, fracs, after, fsb)
    later = [i for i in pool if first is not None and times[i] > times[first]]
    picks = {
        "before": _pick(times, fracs, before, _utc(change.first_seen_after or fsb)),
        "first": first,
        "latest": _latest(times, fracs, later),
    }
    why: dict[str, str] = {}
    if picks["before"] is None:
        why["before"] = "there is no usable image before it" if before else "it is in the first image"
    if first is None:
        why["first"] = why["latest"] = "there is no usable image with it"
    elif picks["latest"] is None:
        later_kind = "usable image" if later else "image"
        why["latest"] = f"there is no {later_kind} after the first-seen one, which is the latest look"
    return picks, why


@dataclass(frozen=True)
class _Looks:
    """The chips rendered for one change and why any look or row of looks is missing."""

    chips: list[_Chip]
    why: dict[str, str]  # role -> why there is no chip of it
    skipped: dict[str, str]  # composite key -> why its row is not shown
    note: str = ""  # why there are no chips at all


def _method(comp: _Composite, shared: str) -> str:
    scope = "one range per band" if comp.per_band else "one range for all three bands"
    lo, hi = PERCENTILES
    return f"{lo:g}-{hi:g} % percentile stretch of the usable pixels, {scope}, shared by {shared}"


def _change_chips(grid: _Grid, change: Change, n: int, out: Path) -> _Looks:
    """Render the before, first-seen and latest chips of one change, in true colour and SWIR when possible."""
    pix = _to_pixels(change.geometry, grid)
    win = _window(pix, grid)
    if win is None:
        return _Looks([], {}, {}, "The change lies outside the image stack, so no chips are shown.")
    fracs = _fractions(grid, win)
    picks, why = _looks(grid.times, fracs, change)
    bounds, bounds_wgs84 = _bounds(grid, win)
    chips: list[_Chip] = []
    skipped: dict[str, str] = {}
    for comp in (TRUE_COLOUR, SWIR):
        absent = [b for b in comp.bands if b not in grid.bands]
        if absent:
            skipped[comp.key] = f"the image stack has no band {', '.join(absent)}"
            continue
        data = {role: (i, _read(grid, i, win, comp.bands)) for role, i in picks.items() if i is not None}
        seen = [bool(np.isfinite(x[k]).any()) for _, (x, _) in data.values() for k in range(3)]
        empty = [b for k, b in enumerate(comp.bands) if data and not any(seen[k::3])]
        if empty:
            plural = len(empty) > 1
            skipped[comp.key] = f"band{'s' * plural} {', '.join(empty)} {'have' if plural else 'has'} no data here"
            continue
        ranges = _stretch([pair for _, pair in data.values()], comp.per_band)
        method = _method(comp, "the before, first-seen and latest chips of this change")
        for role, (i, (bands, _)) in data.items():
            img, scale = _image(bands, ranges, CHIP_PX)
            _draw(img, pix, win, scale, OUTLINE, 2)
            suffix = role if comp is TRUE_COLOUR else f"{comp.key}-{role}"
            name = f"chips/{n:02d}-{_safe(change.change_id)}-{suffix}.png"
            _save(img, out, name)
            chips.append(
                _Chip(
                    role=role, composite=comp.key, bands=comp.bands, file=name, index=i,
                    time=iso_utc(grid.times[i]) or "", clear_fraction=round(fracs[i], 4),
                    scene_ids=grid.scene_ids[i], window=win, bounds=bounds, bounds_wgs84=bounds_wgs84,
                    stretch=_stretch_record(comp.bands, ranges), stretch_method=method,
                    width=img.width, height=img.height, change_id=change.change_id,
                )
            )  # fmt: skip
    return _Looks(chips, why, skipped)


def _overview(grid: _Grid, result: SiteResult, changes: list[Change], out: Path) -> _Chip | None:
    """The whole stack at the last mostly-clear date, with the site and the numbered changes outlined."""
    win = (0, grid.height, 0, grid.width)
    fracs = _fractions(grid, win)
    good = [i for i, f in enumerate(fracs) if f >= MOSTLY_CLEAR]
    index = good[-1] if good else _pick(grid.times, fracs, list(range(len(fracs))), grid.times[-1])
    if index is None:
        return None
    rgb, ok = _read(grid, index, win)
    ranges = _stretch([(rgb, ok)])
    img, scale = _image(rgb, ranges, OVERVIEW_PX)
    _draw(img, _to_pixels(result.site.geometry, grid), win, scale, SITE_LINE, 1)
    font, draw = _font(14), ImageDraw.Draw(img)
    for n, change in enumerate(changes, 1):
        pix = _to_pixels(change.geometry, grid)
        _draw(img, pix, win, scale, OUTLINE, 2)
        if not pix.is_empty:
            p = pix.representative_point()
            xy = (p.x * scale, p.y * scale)
            draw.text(xy, str(n), "white", font, "mm", stroke_width=2, stroke_fill=HALO)
    name = "chips/overview.png"
    _save(img, out, name)
    bounds, bounds_wgs84 = _bounds(grid, win)
    return _Chip(
        role="overview", composite=TRUE_COLOUR.key, bands=RGB_BANDS, file=name, index=index,
        time=iso_utc(grid.times[index]) or "", clear_fraction=round(fracs[index], 4),
        scene_ids=grid.scene_ids[index], window=win, bounds=bounds, bounds_wgs84=bounds_wgs84,
        stretch=_stretch_record(RGB_BANDS, ranges), stretch_method=_method(TRUE_COLOUR, "nothing (this image only)"),
        width=img.width, height=img.height,
    )  # fmt: skip


def _timeline(result: SiteResult, changes: list[Change], path: Path) -> bool:
    """Changed area (step line) and clear fraction (markers) per date; False when there are no dates."""
    n = min(len(result.dates), len(result.changed_area_m2), len(result.clear_fraction))
    if n == 0:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
    from matplotlib.figure import Figure

    def num(d: datetime) -> float:
        return float(date2num(_utc(d).replace(tzinfo=None)))

    x, area, red = [num(d) for d in result.dates[:n]], result.changed_area_m2[:n], "#b3261e"
    fig = Figure(figsize=(9, 3.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.step(x, area, where="post", color=red, lw=2, label="changed area (tracked changes seen by then)")
    ax.plot(x, area, "o", color=red, ms=3)
    for c in changes:
        ax.axvline(num(c.first_seen_before), color="#ff00ff", lw=0.8, ls="--")
    ax.set(ylabel="changed area (m²)", xlabel="acquisition date (UTC); dashed: a change first seen")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(x, result.clear_fraction[:n], "s", color="#1f6fb4", ms=4, alpha=0.7, label="clear fraction")
    ax2.set(ylim=(0, 1.05), ylabel="clear fraction of the site")
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    fig.legend(loc="outside upper center", ncols=2, fontsize=8, frameon=False)
    fig.savefig(path, format="png", metadata={"Software": None})
    return True


# -- HTML ----------------------------------------------------------------------------------------


def _table(head: str, rows: list[list[str]], classes: str = "") -> str:
    """An HTML table; ``head`` is " | "-separated, ``classes`` space-separated ("-": none), cells HTML."""
    names = head.split(" | ")
    attrs = [f' class="{c}"' if c != "-" else "" for c in classes.split()] if classes else [""] * len(names)
    th = "".join(f"<th>{_e(h)}</th>" for h in names)
    tds = ("".join(f"<td{a}>{v}</td>" for v, a in zip(r, attrs, strict=True)) for r in rows)
    body = "\n".join(f"<tr>{cells}</tr>" for cells in tds)
    return f"<table><thead><tr>{th}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _figure(chip: _Chip, title: str, note: str = "") -> str:
    return (
        f'<figure><img src="{_e(chip.file)}" width="{chip.width}" height="{chip.height}" '
        f'alt="{_e(title)}, {_e(chip.time)}"><figcaption><strong>{_e(title)}</strong> {_e(chip.time)}<br>'
        f"scene {_e(', '.join(chip.scene_ids) or 'unknown')} &middot; {chip.clear_fraction:.0%} clear"
        f"{_e(note)}</figcaption></figure>"
    )


def _header(result: SiteResult) -> str:
    site, status, min_clear = result.site, result.activity or "no data", _min_clear(result)
    dates = sorted(map(_utc, result.dates))
    n_clear = sum(f >= min_clear for f in result.clear_fraction)
    facts = {
        "Observed": f"{_t(dates[0])} &ndash; {_t(dates[-1])}" if dates else _DASH,
        "Dates": f"{len(dates)}, {n_clear} of them clear (at least {min_clear:.0%} of the site clear)",
        "Scenes": str(len(result.scenes)), "Changes": str(len(result.changes)), "Method": _e(result.method),
        "Notes": _e(site.notes), "Reason": _e(site.reason), "Added by": _e(site.added_by),
    }
    aliases = f'<p class="aliases">also known as {_e(", ".join(site.aliases))}</p>' if site.aliases else ""
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts.items() if v)
    badge = f'<span class="badge {_e(_safe(status).replace("_", "-"))}">{_e(status)}</span>'
    return (
        f'<h1>{_e(site.name)}</h1>{aliases}\n<div class="summary"><p>{badge} {_e(describe_activity(result))}'
        f'</p>\n<dl class="facts">{dl}</dl></div>'
    )


def _caption_note(chip: _Chip, c: Change, grid: _Grid) -> str:
    """Why a chip's date is not the one it stands for (the change's date of that look), if it is not."""
    want = {"before": c.first_seen_after, "first": c.first_seen_before, "latest": c.last_seen}[chip.role]
    if want is None or abs(grid.times[chip.index] - _utc(want)) <= _TOL:
        return ""
    if chip.role == "latest":
        clear = "latest mostly clear image" if chip.clear_fraction >= MOSTLY_CLEAR else "clearest later image"
        return f" · {clear}; last seen {_t(want)}"
    return f" · nearest usable image to {_t(want)}"


def _looks_html(c: Change, grid: _Grid, looks: _Looks) -> str:
    """One row of three looks (before, first seen, latest) per band combination."""
    by_key = {(chip.composite, chip.role): chip for chip in looks.chips}
    rows = []
    for comp in (TRUE_COLOUR, SWIR):
        if comp.key in looks.skipped:
            rows.append(_note(f"No {comp.title} row: {looks.skipped[comp.key]}."))
            continue
        cells = []
        for role, title in ROLES.items():
            chip = by_key.get((comp.key, role))
            if chip is None:
                why = looks.why.get(role, "no usable image")
                cells.append(f'<div class="nochip">No {_e(title.lower())} image: {_e(why)}.</div>')
            else:
                cells.append(_figure(chip, title, _caption_note(chip, c, grid)))
        label = f"<strong>{_e(comp.title)}</strong> (R, G, B = {_e(', '.join(comp.bands))}): {_e(comp.legend)}"
        rows.append(f'<p class="rowlabel">{label}</p>\n<div class="looks {_e(comp.key)}">{"".join(cells)}</div>')
    return "\n".join(rows)


def _change_html(n: int, c: Change, grid: _Grid | None, why: str, out: Path) -> tuple[str, list[_Chip]]:
    """The section of one change (facts, before / first-seen / latest chips) and the chips rendered for it."""
    obs = f"{c.n_observations} observation{'' if c.n_observations == 1 else 's'}"
    parts = [
        f'<article class="change" id="change-{n}"><h3>#{n} &middot; {_e(c.change_id)} <span class="muted">'
        f"&middot; {_e(c.status)} &middot; {_num(c.area_m2, ',.0f')} m²</span></h3>\n<p>First seen between "
        f"<code>{_t(c.first_seen_after)}</code> and <code>{_t(c.first_seen_before)}</code>; last seen "
        f"<code>{_t(c.last_seen)}</code>; {obs}; score {_num(c.score, '.3g')}; "
        f"confidence {_num(c.confidence, '.2f')}.</p>"
    ]
    if grid is None:
        return "".join(parts) + _note(why) + "</article>", []
    looks = _change_chips(grid, c, n, out)
    body = _note(looks.note) if looks.note else _looks_html(c, grid, looks)
    return "".join(parts) + body + "</article>", looks.chips


def _change_row(n: int, c: Change) -> list[str]:
    first = f"{_t(c.first_seen_after)} &ndash; {_t(c.first_seen_before)}"
    cells = [str(n), f'<a href="#change-{n}">{_e(c.change_id)}</a>', _e(c.status), _num(c.area_m2, ",.0f")]
    last = [_t(c.last_seen), str(c.n_observations), _num(c.score, ".3g"), _num(c.confidence, ".2f")]
    return [*cells, first, *last]


def _scene_record(s: Scene) -> dict[str, Any]:
    keys = ("scene_id", "datetime", "platform", "source", "path", "mask_path", "cloud_cover")
    return {k: iso_utc(s.datetime) if k == "datetime" else getattr(s, k) for k in keys}


def _pretty(value: Any, indent: int | None = 1) -> str:
    return _e(json.dumps(to_jsonable(value), ensure_ascii=False, indent=indent, sort_keys=True))


def _provenance_html(result: SiteResult, changes: list[Change], scenes: list[dict[str, Any]]) -> str:
    """Version, method, parameters, the scenes table and each change's provenance as a table."""
    keys = ("scene_id", "datetime", "platform", "source")
    rows = [[_e(s[k] or _DASH) for k in keys] + [f"<code>{_e(s['path'])}</code>"] for s in scenes]
    parts = [
        f'<dl class="facts"><dt>sitewatch</dt><dd>{_e(result.version or "unknown")}</dd><dt>Method</dt>'
        f"<dd>{_e(result.method)}</dd></dl>\n<h3>Parameters</h3><pre>{_pretty(result.params)}</pre>",
        f"<h3>Scenes used ({len(scenes)})</h3>",
        _table("Scene | Acquired (UTC) | Platform | Source | Path", rows, "- time - - -") if scenes else "",
    ]
    for n, c in enumerate(changes, 1):
        items = sorted(c.provenance.items(), key=lambda kv: str(kv[0]))
        kv = [[f"<code>{_e(k)}</code>", f"<code>{_pretty(v, None)}</code>"] for k, v in items]
        table = _table("Key | Value", kv) if kv else _note("No provenance recorded.")
        parts.append(f'<h3 id="provenance-{n}">#{n} &middot; {_e(c.change_id)}</h3>{table}')
    return "\n".join(parts)


def _json_block(obj: Any) -> str:
    """JSON safe inside a <script> element: <, > and & written as JSON unicode escapes."""
    text = json.dumps(to_jsonable(obj), ensure_ascii=False, indent=1, allow_nan=False, sort_keys=True)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _payload(
    result: SiteResult, changes: list[Change], scenes: list[dict], grid: _Grid | None, chips: list[_Chip]
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
        "changes": feature_collection(changes), "chips": [asdict(c) for c in chips], "stack": stack,
    }


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (temporary file beside ``path``, then rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be shared
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_report(result: SiteResult, out_dir: str | Path) -> Path:
    """Write the evidence report of ``result`` to ``out_dir/index.html`` (plus images); return that path.

    Images go to ``out_dir/timeline.png`` and ``out_dir/chips/``; files of the same names are replaced.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    changes = sorted(result.changes, key=lambda c: (_utc(c.first_seen_before), c.change_id))
    scenes = [_scene_record(s) for s in sorted(result.scenes, key=lambda s: (_utc(s.datetime), s.scene_id))]
    grid, why = _grid(result.stack, result.scenes)
    chips: list[_Chip] = []
    overview = _note(why)
    if grid is not None:
        ov = _overview(grid, result, changes, out)
        chips += [ov] if ov else []
        legend = " · cyan: site · magenta: changes, numbered as below"
        overview = _figure(ov, "Latest clear image", legend) if ov else _note("No usable image of the site.")
    sections = []
    for n, c in enumerate(changes, 1):
        section, change_chips = _change_html(n, c, grid, why, out)
        sections.append(section)
        chips += change_chips
    timeline = _note("No dates to plot.")
    if _timeline(result, changes, out / "timeline.png"):
        timeline = '<img src="timeline.png" alt="changed area and clear fraction per date">'
    head = "# | ID | Status | Area (m²) | First seen (after – before) | Last seen | Obs. | Score | Confidence"
    rows = [_change_row(n, c) for n, c in enumerate(changes, 1)]
    template = resources.files("sitewatch").joinpath("templates/report.html").read_text("utf-8")
    page = Template(template).substitute(
        title=_e(f"{result.site.name} – sitewatch report"),
        version=_e(result.version or "unknown"),
        generated=_t(datetime.now(UTC)),
        header=_header(result),
        overview=overview,
        changes="\n".join(sections) or '<p class="note"><strong>No change detected.</strong></p>',
        timeline=timeline,
        table=_table(head, rows, "num - - num time time num num num") if rows else _note("None."),
        provenance=_provenance_html(result, changes, scenes),
        json=_json_block(_payload(result, changes, scenes, grid, chips)),
    )
    index = out / "index.html"
    _write_text(index, page)
    return index
