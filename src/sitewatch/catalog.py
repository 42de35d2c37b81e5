"""Scene catalog for local files: read what a GeoTIFF/COG is (CRS, bounds, date, bands), or say why not."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from ._time import as_utc
from .errors import ImageryError, MissingCRSError
from .types import Scene

__all__ = ["read_scene", "find_scene_files", "read_scenes", "MASK_SUFFIXES"]

RASTER_SUFFIXES = (".tif", ".tiff")
MASK_SUFFIXES = ("_SCL", "_QA_PIXEL")  # Sentinel-2 scene classification; Landsat QA_PIXEL bits
_DATE_RE = re.compile(r"(?<!\d)(20\d{2}|19\d{2})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2}))?(?!\d)")
# acquisition time only: TIFFTAG_DATETIME is when the file was made, not when the image was taken
_DATE_TAGS = ("ACQUISITION_DATETIME", "DATETIME_ACQUIRED", "ACQUISITION_DATE")


def _is_mask(path: Path) -> bool:
    return path.stem.upper().endswith(MASK_SUFFIXES)


def find_scene_files(paths: Iterable[str | Path]) -> list[Path]:
    """Image files named by ``paths`` (files, or folders searched recursively), masks left out."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(
                f for f in sorted(p.rglob("*")) if f.suffix.lower() in RASTER_SUFFIXES and not _is_mask(f)
            )
        elif p.exists():
            if not _is_mask(p):  # a shell glob names the masks too; they go with their image
                found.append(p)
        else:
            raise ImageryError(f"{p} does not exist")
    return found


def _parse_datetime(value: str) -> datetime | None:
    value = value.strip()
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y:%m:%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    try:
        return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _scene_datetime(path: Path, tags: dict[str, str]) -> datetime:
    for key in _DATE_TAGS:
        if key in tags and (dt := _parse_datetime(tags[key])) is not None:
            return dt
    m = _DATE_RE.search(path.name)
    if m:
        y, mo, d, hh, mm, ss = m.groups()
        try:
            return datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0), tzinfo=UTC)
        except ValueError:
            pass
    raise ImageryError(
        f"{path}: no acquisition date (set the tag ACQUISITION_DATETIME=YYYY-MM-DDTHH:MM:SSZ "
        "or put YYYYMMDD in the file name)"
    )


def _find_mask(path: Path) -> Path | None:
    for suffix in MASK_SUFFIXES:
        for ext in (path.suffix, ".tif"):
            cand = path.with_name(path.stem + suffix + ext)
            if cand.exists():
                return cand
    return None


def _check_readable(src: rasterio.DatasetReader, path: Path) -> None:
    """Read the first and last block of every band: a truncated file fails here, not later."""
    bh, bw = src.block_shapes[0]
    last = Window(
        (src.width - 1) // bw * bw, (src.height - 1) // bh * bh,
        min(bw, src.width - (src.width - 1) // bw * bw), min(bh, src.height - (src.height - 1) // bh * bh),
    )
    first = Window(0, 0, min(bw, src.width), min(bh, src.height))
    try:
        for w in (first, last):
            src.read(window=w)
    except RasterioError as exc:
        raise ImageryError(f"{path}: image data cannot be read (truncated or corrupt file?): {exc}") from None


def read_scene(path: str | Path, source: str = "local") -> Scene:
    """Describe one image file as a :class:`Scene`; raise :class:`ImageryError` if it is not usable."""
    path = Path(path)
    if not path.exists():
        raise ImageryError(f"{path} does not exist")
    try:
        src_ctx = rasterio.open(path)
    except RasterioError as exc:
        raise ImageryError(f"{path}: not a readable raster (truncated or corrupt file?): {exc}") from None
    with src_ctx as src:
        if src.crs is None:
            raise MissingCRSError(f"{path}: has no CRS, so it cannot be placed on Earth; georeference it first")
        if src.transform.is_identity:
            raise MissingCRSError(f"{path}: has no geotransform; georeference it first")
        _check_readable(src, path)
        tags = src.tags()
        # undescribed bands get neutral names: guessing Sentinel-2 order would silently swap bands
        bands = tuple(d or f"band{i + 1}" for i, d in enumerate(src.descriptions))
        mask = _find_mask(path)
        if mask is not None:
            try:
                with rasterio.open(mask) as msrc:
                    if (msrc.width, msrc.height) != (src.width, src.height) or msrc.crs != src.crs:
                        raise ImageryError(f"{mask}: mask grid differs from its image {path}")
                    _check_readable(msrc, mask)
            except RasterioError as exc:
                raise ImageryError(f"{mask}: mask cannot be read: {exc}") from None
        cloud = tags.get("CLOUD_COVER")
        try:
            cloud_cover = float(cloud) if cloud not in (None, "") else None
        except ValueError:
            raise ImageryError(f"{path}: tag CLOUD_COVER={cloud!r} is not a number") from None
        keep = ("SUN_ELEVATION", "SUN_AZIMUTH", "PRODUCT_TYPE")
        props: dict[str, object] = {k: v for k, v in tags.items() if k in keep}
        if mask is not None and mask.stem.upper().endswith("_QA_PIXEL"):
            props["mask_kind"] = "qa_pixel"
        return Scene(
            scene_id=tags.get("SCENE_ID", path.stem),
            path=str(path.resolve()),
            datetime=_scene_datetime(path, tags),
            crs=src.crs.to_wkt(),
            transform=tuple(src.transform)[:6],  # type: ignore[arg-type]
            width=src.width,
            height=src.height,
            bounds=tuple(src.bounds),  # type: ignore[arg-type]
            bands=bands,
            mask_path=str(mask.resolve()) if mask else None,
            platform=tags.get("PLATFORM", ""),
            source=source,
            cloud_cover=cloud_cover,
            properties=props,
        )


def read_scenes(
    paths: Iterable[str | Path], progress: Callable[[int, int], None] | None = None
) -> list[Scene]:
    """Read every image under ``paths``; the first unusable file raises (nothing is half-read)."""
    files = find_scene_files(paths)
    if not files:
        raise ImageryError("no GeoTIFF files found in " + ", ".join(map(str, paths)))
    scenes: list[Scene] = []
    by_id: dict[str, Scene] = {}
    for i, f in enumerate(files):
        sc = read_scene(f)
        if sc.scene_id in by_id and by_id[sc.scene_id].path != sc.path:
            raise ImageryError(
                f"two files share the scene id {sc.scene_id!r}: {by_id[sc.scene_id].path} and {sc.path}; "
                "rename one or set its SCENE_ID tag"
            )
        by_id[sc.scene_id] = sc
        scenes.append(sc)
        if progress:
            progress(i + 1, len(files))
    return scenes
