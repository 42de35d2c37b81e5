"""Image chips and the timeline of a site's changes: the pictures of the evidence, drawn to PNG files.

This is the drawing half of the evidence report (:mod:`sitewatch.report` lays the pictures out as HTML);
broad-area search (:mod:`sitewatch.search`) draws its candidates' chips with it too.  The interface:

- :func:`stack_grid` wraps an image stack (as :mod:`sitewatch.stack` builds it) for drawing, or says why it
  cannot be used;
- :func:`render_change_chips` draws the looks at one change, numbered ``n``, under ``out/chips/`` and returns
  a :class:`ChangeChips`: each :class:`Chip` with its file, the anchor of the change's section in a page
  numbering changes the same way (:func:`change_anchor`) and where its pixels came from;
- :func:`render_overview` draws the whole site with its numbered changes; :func:`render_timeline` plots the
  changed area and the clear fraction per date.

Each change gets three looks: *before* (the clear image nearest ``first_seen_after``), *first seen*
(the image of ``first_seen_before``) and *latest* (the most recent mostly-clear image on or before
``last_seen``), so a change that keeps growing is visible even if it started small.  They are shown in
true colour (B04, B03, B02; one 2-98 % percentile stretch shared by the three bands and the three dates,
so brightness differences are real) and, when the stack has the bands, as a SWIR false-colour composite
(R, G, B = B12, B08, B04; a 2-98 % stretch per band shared by the three dates), where vegetation is green
and bare or built ground magenta to brown, so a roof painted green stands out.  Pixels are upscaled with
nearest neighbour (no invented detail) and the change polygon is outlined in magenta.  The files are
``chips/NN-<change id>-<look>.png`` (``-swir-<look>`` for the SWIR row) and ``chips/overview.png``.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from PIL import Image, ImageDraw, ImageFont
from pyproj import CRS
from shapely.affinity import affine_transform
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from ._atomic import atomic_path
from ._time import as_utc, iso_utc, naive_utc
from .geo import WGS84, to_crs
from .types import Change, Scene, SiteResult

__all__ = [
    "Chip", "ChangeChips", "Composite", "StackGrid", "COMPOSITES", "ROLES", "TRUE_COLOUR", "SWIR", "MOSTLY_CLEAR",
    "change_anchor", "safe_name", "stack_grid", "render_change_chips", "render_overview", "render_timeline",
]  # fmt: skip

RGB_BANDS = ("B04", "B03", "B02")
SWIR_BANDS = ("B12", "B08", "B04")  # the common "SWIR" composite: vegetation green, bare ground magenta
MARGIN_M = 200.0  # context around a change, each side
MIN_CHIP_PX = 48
CHIP_PX, OVERVIEW_PX = 256, 512  # target display sizes (integer nearest-neighbour upscaling)
MAX_RENDER_PX = 1024  # larger crops are subsampled before upscaling
MOSTLY_CLEAR = 0.8  # share of a chip's observable pixels that must be clear for "mostly clear"
PERCENTILES = (2.0, 98.0)  # the robust stretch
OUTLINE, HALO, SITE_LINE, NODATA = (255, 0, 255), (0, 0, 0), (0, 255, 255), (128, 128, 128)
_TOL = timedelta(seconds=1)
Window = tuple[int, int, int, int]  # row0, row1, col0, col1 in the stack grid
Bounds = tuple[float, float, float, float]  # xmin, ymin, xmax, ymax


@dataclass(frozen=True)
class StackGrid:
    """An image stack ready for drawing: its grid, dates, scenes and bands (see :func:`stack_grid`)."""

    stack: Any
    transform: Affine
    crs: str
    height: int
    width: int
    times: tuple[datetime, ...]
    scene_ids: tuple[tuple[str, ...], ...]  # per time step
    bands: tuple[str, ...]  # the stack's band names


@dataclass(frozen=True)
class Composite:
    """A band combination shown as red, green and blue."""

    key: str  # in file names and the provenance JSON
    title: str
    bands: tuple[str, str, str]  # red, green, blue
    per_band: bool  # one stretch per band (else one for all three)
    legend: str


TRUE_COLOUR = Composite(
    "true-colour", "True colour", RGB_BANDS, False, "one stretch for all bands, shared by the three dates"
)
SWIR = Composite(
    "swir",
    "SWIR false colour",
    SWIR_BANDS,
    True,
    "vegetation green, bare or built ground magenta to brown; one stretch per band, shared by the three dates",
)
COMPOSITES = (TRUE_COLOUR, SWIR)  # the rows of looks at a change, in order
ROLES = {"before": "Before", "first": "First seen", "latest": "Latest"}  # the looks at a change, in order

# what a chip's provenance record holds (see Chip.record); the rest of a Chip is where it is, not what it shows
_RECORD = (
    "role", "composite", "bands", "file", "index", "time", "clear_fraction", "scene_ids", "window", "bounds",
    "bounds_wgs84", "stretch", "stretch_method", "width", "height", "change_id",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Chip:
    """One rendered image chip: its file, the change it shows and where its pixels came from."""

    change_id: str | None  # None for the overview
    role: str  # "before", "first", "latest" or "overview"
    composite: str  # Composite.key
    file: str  # relative to the output folder, "/"-separated (what a page beside ``chips/`` links to)
    path: Path  # the file written: the output folder / ``file``
    anchor: str  # the id of the change's section in a page numbering changes as the files do; "" for the overview
    date: datetime  # of the stack time step (UTC)
    bands: tuple[str, str, str]  # shown as red, green, blue
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

    def record(self) -> dict[str, Any]:
        """The chip's provenance (JSON-ready but for tuples): what it shows, with ``file`` relative."""
        return {k: getattr(self, k) for k in _RECORD}


@dataclass(frozen=True)
class ChangeChips:
    """The chips rendered for one change (true colour, then SWIR; each before, first seen, latest) and why
    any look or row of looks is missing."""

    change_id: str
    number: int  # in the file names: chips/NN-...
    anchor: str  # change_anchor(number)
    chips: tuple[Chip, ...] = ()
    why: dict[str, str] = field(default_factory=dict)  # role -> why there is no chip of it
    skipped: dict[str, str] = field(default_factory=dict)  # composite key -> why its row is not drawn
    note: str = ""  # why there are no chips at all

    def chip(self, composite: str, role: str) -> Chip | None:
        return next((c for c in self.chips if (c.composite, c.role) == (composite, role)), None)


def change_anchor(n: int) -> str:
    """The id of change number ``n``'s section in a page (``change-3``); its chips are ``chips/03-...``."""
    return f"change-{n}"


def safe_name(name: str, default: str = "change", limit: int | None = 60) -> str:
    """``name`` as a file-name part: runs of other characters than ``A-Za-z0-9_.-`` become ``_``, at most
    ``limit`` characters (None: all), ``default`` when nothing is left."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")[:limit] or default


# -- stack access --------------------------------------------------------------------------------


def _scene_ids(scenes: Sequence[Scene], when: datetime) -> tuple[str, ...]:
    """Scenes acquired at ``when`` (to the second), else on the same UTC day."""
    exact = [s.scene_id for s in scenes if abs(as_utc(s.datetime) - when) <= _TOL]
    return tuple(exact or [s.scene_id for s in scenes if as_utc(s.datetime).date() == when.date()])


def stack_grid(stack: Any, scenes: Sequence[Scene]) -> tuple[StackGrid | None, str]:
    """``stack`` (as :func:`sitewatch.stack.load_stack` makes it) ready for drawing, or None and the reason
    it cannot be used for image chips (a sentence for the reader).  ``scenes`` name the scenes of each date
    when the stack does not."""
    if stack is None:
        return None, "No image stack was kept with this result, so no image chips are shown."
    try:
        bands = tuple(str(b) for b in stack["band"].values)
        missing = [b for b in RGB_BANDS if b not in bands]
        if missing:
            return None, f"The image stack has no band {', '.join(missing)}: no true-colour chips."
        times = tuple(as_utc(t.item()) for t in stack["time"].values.astype("datetime64[us]"))
        ids = stack.attrs.get("scene_ids")  # one per time step, as sitewatch.stack writes them
        if ids is not None and len(ids) == len(times) and all(isinstance(i, str) for i in ids):
            per_time: tuple[tuple[str, ...], ...] = tuple((i,) for i in ids)
        else:
            per_time = tuple(_scene_ids(scenes, t) for t in times)
        crs = CRS.from_user_input(stack.attrs["crs"]).to_wkt()
        shape = (int(stack.sizes["y"]), int(stack.sizes["x"]))
        grid = StackGrid(stack, Affine(*stack.attrs["transform"][:6]), crs, *shape, times, per_time, bands)
    except Exception as exc:  # noqa: BLE001 - an unusable stack costs the chips, not the report
        return None, f"The image stack cannot be used ({exc}), so no image chips are shown."
    if not times or 0 in shape:
        return None, "The image stack is empty, so no image chips are shown."
    return grid, ""


def _to_pixels(geom: BaseGeometry, grid: StackGrid) -> BaseGeometry:
    """A WGS84 geometry in the stack's (column, row) pixel coordinates (0, 0 = top-left corner)."""
    inv = ~grid.transform
    return affine_transform(to_crs(geom, WGS84, grid.crs), [inv.a, inv.b, inv.d, inv.e, inv.c, inv.f])


def _window(pix: BaseGeometry, grid: StackGrid) -> Window | None:
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


def _bounds(grid: StackGrid, win: Window) -> tuple[Bounds, Bounds]:
    """The window's bounds in the stack CRS and in WGS84 (xmin, ymin, xmax, ymax)."""
    (xa, ya), (xb, yb) = grid.transform * (win[2], win[0]), grid.transform * (win[3], win[1])
    native: Bounds = (min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))
    w, s, e, n = (round(float(v), 7) for v in to_crs(box(*native), grid.crs, WGS84).bounds)
    return native, (w, s, e, n)


def _read(
    grid: StackGrid, index: int, win: Window, bands: tuple[str, ...] = RGB_BANDS
) -> tuple[np.ndarray, np.ndarray]:
    """Three bands (3, h, w) float32 and the usable (clear and finite) mask (h, w) at one time step."""
    sel = {"time": index, "y": slice(win[0], win[1]), "x": slice(win[2], win[3])}
    # the window first, then the bands: a label selection of the bands first copies them over the whole stack
    refl = grid.stack["reflectance"].isel(sel).sel(band=list(bands)).transpose("band", "y", "x")
    rgb = np.asarray(refl.values, dtype=np.float32)
    ok: np.ndarray = np.asarray(np.isfinite(rgb).all(axis=0))
    if "clear" in grid.stack:
        ok &= np.asarray(grid.stack["clear"].isel(sel).transpose("y", "x").values, dtype=bool)
    return rgb, ok


#: pixels of the window read at once by :func:`_fractions` (all its time steps up to this many)
FRACTION_BLOCK_PX = 4_000_000


def _fractions(grid: StackGrid, win: Window) -> list[float]:
    """Per time step, the usable share of the window's observable pixels (usable at any time).

    Pixels never usable (outside the site mask, off the scenes) do not count against a date.
    """
    union, counts = np.zeros((win[1] - win[0], win[3] - win[2]), dtype=bool), []
    space = {"y": slice(win[0], win[1]), "x": slice(win[2], win[3])}
    refl = grid.stack["reflectance"].isel(space).sel(band=list(RGB_BANDS))  # the window first (see _read)
    clear = grid.stack["clear"].isel(space) if "clear" in grid.stack else None
    # time steps in blocks of about FRACTION_BLOCK_PX pixels: one selection per block, not per step (the label
    # lookups cost more than the reads on small windows), and bounded memory on long series and large windows
    step = max(1, FRACTION_BLOCK_PX // max(1, union.size))
    for t0 in range(0, len(grid.times), step):
        times = slice(t0, min(t0 + step, len(grid.times)))
        rgb = np.asarray(refl.isel(time=times).transpose("time", "band", "y", "x").values, dtype=np.float32)
        ok: np.ndarray = np.asarray(np.isfinite(rgb).all(axis=1))
        if clear is not None:
            ok &= np.asarray(clear.isel(time=times).transpose("time", "y", "x").values, dtype=bool)
        for k in range(ok.shape[0]):
            union |= ok[k]
            counts.append(int(ok[k].sum()))
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


#: the PNGs this process wrote: path -> (hash of the pixels, the file's size and mtime after writing).  A report
#: redrawn with nothing new (``monitor`` redraws a site's report on every pass) keeps each unchanged chip's file
#: instead of compressing the same pixels again (PNG ``optimize`` is most of a chip's cost).
_WRITTEN: dict[Path, tuple[str, int, int]] = {}


def _save(img: Image.Image, out: Path, name: str) -> None:
    path = (out / name).resolve()
    key = hashlib.blake2b(f"{img.mode} {img.size}".encode() + img.tobytes(), digest_size=16).hexdigest()
    known = _WRITTEN.get(path)
    if known is not None and known[0] == key:
        try:
            st = path.stat()
        except OSError:
            st = None
        if st is not None and (st.st_size, st.st_mtime_ns) == known[1:]:
            return  # the very pixels this process wrote there, and nobody changed the file since
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", optimize=True)
    st = path.stat()
    if len(_WRITTEN) > 10_000:  # a long-running monitor: forget the oldest
        del _WRITTEN[next(iter(_WRITTEN))]
    _WRITTEN[path] = (key, st.st_size, st.st_mtime_ns)


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
    fsb, last = as_utc(change.first_seen_before), as_utc(change.last_seen)
    before = [i for i, t in enumerate(times) if t < fsb - _TOL]
    after = [i for i, t in enumerate(times) if t >= fsb - _TOL]
    within = [i for i in after if times[i] <= last + _TOL]  # prefer while it is seen
    pool, first = within, _pick(times, fracs, within, fsb)
    if first is None:
        pool, first = after, _pick(times, fracs, after, fsb)
    later = [i for i in pool if first is not None and times[i] > times[first]]
    picks = {
        "before": _pick(times, fracs, before, as_utc(change.first_seen_after or fsb)),
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


def _method(comp: Composite, shared: str) -> str:
    scope = "one range per band" if comp.per_band else "one range for all three bands"
    lo, hi = PERCENTILES
    return f"{lo:g}-{hi:g} % percentile stretch of the usable pixels, {scope}, shared by {shared}"


@dataclass(frozen=True)
class _Cut:
    """Chips cut from one window of a stack and written under ``out``."""

    grid: StackGrid
    win: Window
    fracs: list[float]  # per time step, the usable share of the window (see _fractions)
    out: Path

    def chip(self, name: str, img: Image.Image, i: int, comp: Composite, ranges: list[tuple[float, float]],
             method: str, **kw: Any) -> Chip:
        """Save ``img`` (time step ``i``) as ``out/name`` and describe it."""
        _save(img, self.out, name)
        bounds, bounds_wgs84 = _bounds(self.grid, self.win)
        return Chip(
            file=name, path=self.out / name, date=self.grid.times[i], composite=comp.key, bands=comp.bands,
            index=i, time=iso_utc(self.grid.times[i]) or "", clear_fraction=round(self.fracs[i], 4),
            scene_ids=self.grid.scene_ids[i], window=self.win, bounds=bounds, bounds_wgs84=bounds_wgs84,
            stretch=_stretch_record(comp.bands, ranges), stretch_method=method, width=img.width,
            height=img.height, **kw,
        )  # fmt: skip


def _row_data(
    grid: StackGrid, comp: Composite, picks: dict[str, int | None], win: Window
) -> tuple[dict[str, tuple[int, tuple[np.ndarray, np.ndarray]]], str]:
    """The pixels of each look in one band combination, or why the combination cannot be drawn here."""
    absent = [b for b in comp.bands if b not in grid.bands]
    if absent:
        return {}, f"the image stack has no band {', '.join(absent)}"
    data = {role: (i, _read(grid, i, win, comp.bands)) for role, i in picks.items() if i is not None}
    seen = [bool(np.isfinite(x[k]).any()) for _, (x, _) in data.values() for k in range(3)]
    empty = [b for k, b in enumerate(comp.bands) if data and not any(seen[k::3])]
    if empty:
        plural = len(empty) > 1
        return {}, f"band{'s' * plural} {', '.join(empty)} {'have' if plural else 'has'} no data here"
    return data, ""


def render_change_chips(grid: StackGrid, change: Change, n: int, out: Path) -> ChangeChips:
    """Render the before, first-seen and latest chips of change number ``n`` under ``out/chips/``, in true
    colour and in SWIR when possible (files ``chips/NN-<change id>-[swir-]<look>.png``)."""
    anchor = change_anchor(n)
    pix = _to_pixels(change.geometry, grid)
    win = _window(pix, grid)
    if win is None:
        note = "The change lies outside the image stack, so no chips are shown."
        return ChangeChips(change.change_id, n, anchor, note=note)
    fracs = _fractions(grid, win)
    picks, why = _looks(grid.times, fracs, change)
    cut = _Cut(grid, win, fracs, out)
    chips: list[Chip] = []
    skipped: dict[str, str] = {}
    for comp in COMPOSITES:
        data, skip = _row_data(grid, comp, picks, win)
        if skip:
            skipped[comp.key] = skip
            continue
        ranges = _stretch([pair for _, pair in data.values()], comp.per_band)
        method = _method(comp, "the before, first-seen and latest chips of this change")
        for role, (i, (bands, _)) in data.items():
            img, scale = _image(bands, ranges, CHIP_PX)
            _draw(img, pix, win, scale, OUTLINE, 2)
            suffix = role if comp is TRUE_COLOUR else f"{comp.key}-{role}"
            name = f"chips/{n:02d}-{safe_name(change.change_id)}-{suffix}.png"
            chips.append(cut.chip(name, img, i, comp, ranges, method, role=role, change_id=change.change_id,
                                  anchor=anchor))
    return ChangeChips(change.change_id, n, anchor, tuple(chips), why, skipped)


def render_overview(grid: StackGrid, site: BaseGeometry, changes: Sequence[Change], out: Path) -> Chip | None:
    """The whole stack at the last mostly-clear date, with the ``site`` (WGS84) and the ``changes`` outlined
    and numbered from 1, as ``out/chips/overview.png``; None if no date has a usable pixel."""
    win = (0, grid.height, 0, grid.width)
    fracs = _fractions(grid, win)
    good = [i for i, f in enumerate(fracs) if f >= MOSTLY_CLEAR]
    index = good[-1] if good else _pick(grid.times, fracs, list(range(len(fracs))), grid.times[-1])
    if index is None:
        return None
    rgb, ok = _read(grid, index, win)
    ranges = _stretch([(rgb, ok)])
    img, scale = _image(rgb, ranges, OVERVIEW_PX)
    _draw(img, _to_pixels(site, grid), win, scale, SITE_LINE, 1)
    font, draw = _font(14), ImageDraw.Draw(img)
    for n, change in enumerate(changes, 1):
        pix = _to_pixels(change.geometry, grid)
        _draw(img, pix, win, scale, OUTLINE, 2)
        if not pix.is_empty:
            p = pix.representative_point()
            xy = (p.x * scale, p.y * scale)
            draw.text(xy, str(n), "white", font, "mm", stroke_width=2, stroke_fill=HALO)
    method = _method(TRUE_COLOUR, "nothing (this image only)")
    cut = _Cut(grid, win, fracs, out)
    return cut.chip("chips/overview.png", img, index, TRUE_COLOUR, ranges, method, role="overview", change_id=None,
                    anchor="")


def render_timeline(result: SiteResult, changes: Sequence[Change], path: Path) -> bool:
    """Plot to ``path`` (PNG) the changed area (step line) and clear fraction (markers) per date of ``result``,
    ``changes`` first seen marked; False (nothing written) when there are no dates."""
    n = min(len(result.dates), len(result.changed_area_m2), len(result.clear_fraction))
    if n == 0:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
    from matplotlib.figure import Figure

    def num(d: datetime) -> float:
        return float(date2num(naive_utc(d)))

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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    return True

