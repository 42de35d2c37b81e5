"""Publish local scenes as a self-contained static STAC catalog (the demo world is published this way).

Layout (pystac's default): ``root/catalog.json``, ``root/<collection>/collection.json`` and
``root/<collection>/<item>/<item>.json``; every href, assets included, is relative, so the folder can be
moved or served over HTTP as it is, as long as the images keep their place relative to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import rasterio
from pyproj import CRS
from rasterio.enums import Resampling
from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from ..errors import ImageryError
from ..masks import SCL_CLOUD, SCL_SHADOW
from ..types import Scene
from .local import scene_footprint
from .presets import COMMON_NAMES, qa_pixel_to_scl

__all__ = ["write_static_catalog", "scene_to_item", "cloud_cover_from_mask", "STAC_EXTENSIONS"]

STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]
_COMMON = {v: k for k, v in COMMON_NAMES.items()}
_MASK_ROLES = ["cloud", "cloud-shadow", "snow-ice", "data-mask"]


def _mask_kind(path: str) -> str:
    return "qa_pixel" if Path(path).stem.upper().endswith("_QA_PIXEL") else "scl"


def cloud_cover_from_mask(mask_path: str, kind: str = "scl", max_size: int = 1024) -> float | None:
    """Percent of the data pixels of a mask that are cloud or cloud shadow (read decimated)."""
    with rasterio.open(mask_path) as src:
        f = max(1, int(np.ceil(max(src.width, src.height) / max_size)))
        a = src.read(1, out_shape=(max(1, src.height // f), max(1, src.width // f)), resampling=Resampling.nearest)
    scl = qa_pixel_to_scl(a) if kind == "qa_pixel" else a
    data = scl > 0
    n = int(data.sum())
    return round(100.0 * float(np.isin(scl[data], SCL_CLOUD + SCL_SHADOW).sum()) / n, 2) if n else None


def _proj_fields(scene: Scene) -> dict[str, Any]:
    crs = CRS.from_user_input(scene.crs)
    epsg = crs.to_epsg()
    fields: dict[str, Any] = {"proj:code": f"EPSG:{epsg}"} if epsg else {"proj:code": None, "proj:wkt2": crs.to_wkt()}
    fields.update({
        "proj:shape": [scene.height, scene.width],
        "proj:transform": list(scene.transform),
        "proj:bbox": list(scene.bounds),
    })
    return fields


def _dtype(path: str) -> tuple[str, float | None]:
    with rasterio.open(path) as src:
        return src.dtypes[0], src.nodata


def scene_to_item(scene: Scene, scale: float = 1e-4, cloud_from_mask: bool = True) -> pystac.Item:
    """A STAC item for a local scene: an ``image`` asset (all bands) and, if any, its mask asset.

    Asset hrefs are the scenes' absolute paths; :func:`write_static_catalog` makes them relative.
    """
    foot = scene_footprint(scene)
    cloud = scene.cloud_cover
    if cloud is None and scene.mask_path and cloud_from_mask:
        cloud = cloud_cover_from_mask(scene.mask_path, _mask_kind(scene.mask_path))
    props: dict[str, Any] = {"platform": scene.platform} if scene.platform else {}
    if cloud is not None:
        props["eo:cloud_cover"] = cloud
    props.update(_proj_fields(scene))
    item = pystac.Item(
        id=scene.scene_id, geometry=mapping(foot), bbox=list(foot.bounds), datetime=scene.datetime,
        properties=props, stac_extensions=list(STAC_EXTENSIONS),
    )
    dtype, nodata = _dtype(scene.path)
    res = abs(scene.transform[0])
    eo_bands = [{"name": b, **({"common_name": _COMMON[b]} if b in _COMMON else {})} for b in scene.bands]
    raster_bands = [
        {"nodata": nodata if nodata is not None else 0, "data_type": dtype, "scale": scale, "offset": 0.0,
         "spatial_resolution": res}
        for _ in scene.bands
    ]
    item.add_asset("image", pystac.Asset(
        href=str(Path(scene.path).resolve()), media_type=pystac.MediaType.COG, title="surface reflectance",
        roles=["data", "reflectance"], extra_fields={"eo:bands": eo_bands, "raster:bands": raster_bands},
    ))
    if scene.mask_path:
        kind = _mask_kind(scene.mask_path)
        mdtype, mnodata = _dtype(scene.mask_path)
        default_nodata = 1 if kind == "qa_pixel" else 0
        item.add_asset(kind, pystac.Asset(
            href=str(Path(scene.mask_path).resolve()), media_type=pystac.MediaType.COG,
            title="Landsat QA_PIXEL bit flags" if kind == "qa_pixel" else "Sentinel-2 scene classification (SCL)",
            roles=list(_MASK_ROLES), extra_fields={"raster:bands": [{
                "nodata": mnodata if mnodata is not None else default_nodata, "data_type": mdtype,
                "spatial_resolution": res}]},
        ))
    return item


def write_static_catalog(
    scenes: Sequence[Scene],
    root: str | Path,
    collection_id: str,
    *,
    title: str | None = None,
    description: str = "",
    license: str = "other",
    catalog_id: str = "sitewatch",
    scale: float = 1e-4,
    cloud_from_mask: bool = True,
) -> Path:
    """Write ``scenes`` (local files) as a self-contained static STAC catalog under ``root``.

    Items carry ``eo:cloud_cover`` (from the scene, else measured on its mask), ``proj:code``/``proj:shape``/
    ``proj:transform``, ``eo:bands`` and ``raster:bands`` (scale, nodata: what odc-stac needs), an ``image``
    asset (role ``data``) and an ``scl`` or ``qa_pixel`` mask asset (roles ``cloud``, ``cloud-shadow`` ...).
    Returns the path of ``catalog.json``.
    """
    if not scenes:
        raise ImageryError("no scenes to publish: a STAC catalog needs at least one item")
    for s in scenes:
        if not Path(s.path).exists():
            raise ImageryError(f"{s.path}: not a local file; write_static_catalog publishes local scenes only")
    root = Path(root).resolve()
    items = [scene_to_item(s, scale=scale, cloud_from_mask=cloud_from_mask) for s in scenes]
    footprint = unary_union([shape(i.geometry) for i in items])
    times: list[datetime] = sorted(i.datetime for i in items if i.datetime)  # type: ignore[misc]
    collection = pystac.Collection(
        id=collection_id,
        description=description or f"{len(items)} scene(s) published by sitewatch",
        title=title,
        license=license,
        extent=pystac.Extent(
            pystac.SpatialExtent([list(footprint.bounds)]), pystac.TemporalExtent([[times[0], times[-1]]])
        ),
        summaries=pystac.Summaries({"platform": sorted({s.platform for s in scenes if s.platform})}),
        stac_extensions=list(STAC_EXTENSIONS),
    )
    for item in items:
        collection.add_item(item)
    catalog = pystac.Catalog(id=catalog_id, description=f"sitewatch catalog: {collection_id}", title=title)
    catalog.add_child(collection)
    catalog.normalize_hrefs(str(root))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"
