"""Writing the demo world's files: Cloud-Optimized GeoTIFFs and the truth GeoJSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from rasterio.enums import Resampling
from rasterio.transform import Affine
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from .._atomic import atomic_path
from ._events import Event
from ._render import CRS, TO_LL
from ._spectra import BANDS


def cog_profile(count: int, dtype: str, h: int, w: int, transform: Any, resampling: str) -> dict[str, Any]:
    prof: dict[str, Any] = dict(
        width=w,
        height=h,
        count=count,
        dtype=dtype,
        crs=CRS,
        transform=transform,
        nodata=0,
        # Zstandard at its fastest level with the horizontal predictor: smaller files than DEFLATE on this
        # noisy imagery (62 against 65 MB a scene), written 2.5x and decoded 1.8x faster (a 514 px window
        # of a scene 52 against 93 ms); GDAL reads it everywhere since 2.3
        compress="ZSTD",
        predictor=2,
        num_threads="ALL_CPUS",
    )
    if _has_cog():
        prof.update(driver="COG", blocksize=512, overview_resampling=resampling, bigtiff="IF_SAFER", level=1)
    else:
        prof.update(driver="GTiff", tiled=True, blockxsize=512, blockysize=512, zstd_level=1)
    return prof


def _has_cog() -> bool:
    """Whether GDAL has the COG driver."""
    with rasterio.Env() as env:
        return "COG" in env.drivers()


def write_raster(
    path: Path,
    data: np.ndarray,
    prof: dict[str, Any],
    names: tuple[str, ...] | None,
    tags: dict[str, str],
    resampling: str,
) -> None:
    """Write ``data`` to ``path`` with profile ``prof`` (:func:`cog_profile`), atomically."""
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **prof) as dst:
        dst.write(data)
        if names:
            for k, name in enumerate(names, 1):
                dst.set_band_description(k, name)
        dst.update_tags(**tags)
        if prof["driver"] == "GTiff":
            dst.build_overviews([2, 4, 8], Resampling[resampling])


def to_lonlat(geom: BaseGeometry) -> BaseGeometry:
    """Reproject a UTM geometry to lon/lat."""
    return shapely.transform(geom, lambda xy: np.column_stack(TO_LL.transform(xy[:, 0], xy[:, 1])))


def rounded(obj: Any, nd: int = 7) -> Any:
    """Round the floats in a JSON-like structure (coordinates to ~1 cm)."""
    if isinstance(obj, float):
        return round(obj, nd)
    if isinstance(obj, list | tuple):
        return [rounded(v, nd) for v in obj]
    if isinstance(obj, dict):
        return {k: rounded(v, nd) for k, v in obj.items()}
    return obj


def truth_geojson(events: list[Event]) -> dict[str, Any]:
    feats = []
    for e in events:
        props: dict[str, Any] = {
            "id": e.id,
            "name": e.name,
            "kind": e.kind,
            "class": e.cls,
            "start": e.start.isoformat(),
        }
        if e.end is not None:
            props["end"] = e.end.isoformat()
        props["area_m2"] = round(float(e.footprint.area), 1)
        props["notes"] = e.notes
        feats.append(
            {
                "type": "Feature",
                "id": e.id,
                "properties": props,
                "geometry": rounded(mapping(to_lonlat(e.footprint))),
            }
        )
    return {"type": "FeatureCollection", "name": "sitewatch demo world truth", "features": feats}


def write_scene(
    img: Path,
    mask: Path,
    data: np.ndarray,
    scl: np.ndarray,
    tags: dict[str, str],
    transform: tuple[float, ...],
) -> None:
    """Write one date: the 6-band reflectance COG and its SCL COG (module-level: runs in a worker)."""
    h, w = scl.shape
    t = Affine(*transform[:6])
    write_raster(img, data, cog_profile(6, "uint16", h, w, t, "average"), BANDS, tags, "average")
    scl_tags = {**tags, "PRODUCT_TYPE": "SITEWATCH_DEMO_SCL"}
    write_raster(mask, scl[None], cog_profile(1, "uint8", h, w, t, "nearest"), ("SCL",), scl_tags, "nearest")
