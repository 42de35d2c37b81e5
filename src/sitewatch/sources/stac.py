"""The ``stac`` source: any STAC API (pystac-client) or static STAC catalog (pystac), local or over HTTP.

Each item becomes a :class:`~sitewatch.types.Scene` that records where every band is (see
:mod:`sitewatch.sources.read`) and what a report cites: provider, collection, item id, acquisition time,
cloud cover, processing baseline and asset hrefs.  Item metadata is enough (``proj:*`` of the projection
extension); an item without it has the header of one band read, never its pixels.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pystac
import rasterio
from affine import Affine
from rasterio.errors import RasterioError
from shapely.geometry import mapping, shape

from ..errors import ImageryError
from ..types import Scene
from ._http import gdal_env, gdal_http_options, gdal_path, is_remote, redact, register_signer, sign_href
from ._stac_io import ApiStacIO, StaticStacIO
from .base import SourceError, as_geometry, as_utc, in_range, register_source
from .presets import COMMON_NAMES, PRESETS, Preset, get_preset

__all__ = ["StacSource", "item_to_scene", "ITEM_SEARCH"]

log = logging.getLogger(__name__)

ITEM_SEARCH = "https://api.stacspec.org/v1.0.0/item-search"
_KNOWN_PROVIDERS = {
    "earth-search.aws.element84.com": "Element 84 Earth Search",
    "planetarycomputer.microsoft.com": "Microsoft Planetary Computer",
}
_MASK_KEYS = ("scl", "SCL", "qa_pixel", "QA_PIXEL", "mask")


def _asset_bands(asset: pystac.Asset) -> list[dict[str, Any]]:
    """Per-band metadata of an asset, merged from STAC 1.1 ``bands``, ``eo:bands`` and ``raster:bands``."""
    f = asset.extra_fields
    lists = [f.get("bands") or [], f.get("eo:bands") or [], f.get("raster:bands") or []]
    n = max(map(len, lists))
    merged: list[dict[str, Any]] = [{} for _ in range(n)]
    for lst in lists:
        for i, b in enumerate(lst):
            merged[i].update({k: v for k, v in b.items() if k not in merged[i]})
    return merged


def _band_name(meta: Mapping[str, Any], i: int) -> str:
    common = meta.get("eo:common_name") or meta.get("common_name")
    name = meta.get("name")
    if name and _is_band_name(str(name)):
        return str(name)
    return COMMON_NAMES.get(str(common), str(name or f"B{i + 1}"))


def _is_band_name(name: str) -> bool:
    return name[:1].upper() == "B" and name[1:].isdigit()


def _is_raster(asset: pystac.Asset) -> bool:
    mt = (asset.media_type or "").lower()
    return "tiff" in mt or "jp2" in mt or (not mt and asset.href.lower().endswith((".tif", ".tiff", ".jp2")))


def _proj(item: pystac.Item, asset: pystac.Asset) -> tuple[str, Affine, int, int] | None:
    """CRS, transform, width, height of ``asset`` from its (or its item's) projection metadata."""

    def get(key: str) -> Any:
        return asset.extra_fields.get(key, item.properties.get(key))

    code, epsg, wkt = get("proj:code"), get("proj:epsg"), get("proj:wkt2")
    crs = code or (f"EPSG:{epsg}" if epsg else None) or wkt
    tr, shp = get("proj:transform"), get("proj:shape")
    if not (crs and tr and shp):
        return None
    return str(crs), Affine(*tr[:6]), int(shp[1]), int(shp[0])


def _header(href: str, signer: str | None, options: Mapping[str, str] | None) -> tuple[str, Affine, int, int]:
    try:
        with gdal_env(options), rasterio.open(gdal_path(sign_href(href, signer))) as src:
            if src.crs is None:
                raise ImageryError(f"{redact(href)} has no CRS; it cannot be placed on Earth")
            return src.crs.to_string(), src.transform, src.width, src.height
    except RasterioError as exc:
        raise SourceError(f"cannot read the header of {redact(href)}: {' '.join(str(exc).split())[:300]}") from None


def _scale(item: pystac.Item, meta: Mapping[str, Any], preset: Preset | None) -> tuple[float, float]:
    baseline = item.properties.get("s2:processing_baseline")
    if item.properties.get("earthsearch:boa_offset_applied") is True:
        return float(meta.get("scale", preset.scale if preset else 1e-4)), 0.0
    if "scale" in meta or "offset" in meta:
        return float(meta.get("scale", 1.0)), float(meta.get("offset", 0.0))
    if preset is None:
        return 1e-4, 0.0
    offset = preset.offset
    try:
        if preset.baseline_offset and baseline is not None and float(baseline) >= 4.0:
            offset += preset.baseline_offset
    except ValueError:
        pass
    return preset.scale, offset


def item_to_scene(
    item: pystac.Item,
    preset: str | Preset | None = None,
    *,
    provider: str = "",
    signer: str | None = None,
    options: Mapping[str, str] | None = None,
) -> Scene:
    """The :class:`Scene` of a STAC item: one multi-band asset, or one asset per band mapped by ``preset``.

    Without a preset, the presets are tried by asset keys, then a multi-band data asset, then single-band
    assets named by ``eo:common_name``.  An item none of these fit raises :class:`SourceError`.
    """
    p = get_preset(preset)
    keys = set(item.assets)
    if p is not None and not p.matches(keys):
        missing = [b for b in p.bands if not p.asset_for(b, keys)]
        raise SourceError(
            f"STAC item {item.id}: no asset for band(s) {', '.join(missing)} of preset {p.name} "
            f"(assets: {', '.join(sorted(keys))}); choose another preset or none"
        )
    p = p or next((q for q in PRESETS.values() if q.matches(keys)), None)
    hrefs = {k: a.get_absolute_href() or a.href for k, a in item.assets.items()}
    band_assets: dict[str, str] = {}  # band -> asset key (one raster per band)
    multi: str | None = None  # key of the multi-band asset
    if p is not None:
        band_assets = {b: p.asset_for(b, keys) for b in p.bands}  # type: ignore[misc]
    else:
        data = [k for k, a in item.assets.items() if _is_raster(a) and k not in _MASK_KEYS
                and not {"thumbnail", "overview", "visual", "cloud"} & set(a.roles or [])]
        multi = max((k for k in data if len(_asset_bands(item.assets[k])) > 1),
                    key=lambda k: len(_asset_bands(item.assets[k])), default=None)
        if multi is None:
            for k in data:
                m = (_asset_bands(item.assets[k]) or [{}])[0]
                named = m.get("name") or m.get("common_name") or m.get("eo:common_name")
                name = _band_name(m, 0) if named else COMMON_NAMES.get(k, k if _is_band_name(k) else "")
                if name:
                    band_assets.setdefault(name, k)
            if not band_assets and len(data) == 1:
                multi = data[0]
        if multi is None and not band_assets:
            raise SourceError(
                f"STAC item {item.id}: cannot tell which assets hold which bands (assets: {', '.join(sorted(keys))});"
                f" give a preset ({', '.join(PRESETS)})"
            )
    mask_key = next((k for k in (p.mask_assets if p else _MASK_KEYS) if k in keys), None)
    if mask_key is None and p is None:
        mask_key = next((k for k, a in item.assets.items() if "cloud" in (a.roles or []) and k != multi), None)
    mask_kind = p.mask_kind if p else ("qa_pixel" if mask_key and "qa" in mask_key.lower() else "scl")

    if multi is not None:
        metas = _asset_bands(item.assets[multi])
        bands = tuple(_band_name(m, i) for i, m in enumerate(metas)) or ("B1",)
        band_scale = {b: list(_scale(item, m, p)) for b, m in zip(bands, metas, strict=False)}
        grid_keys = [multi]
    else:
        bands = tuple(band_assets)
        band_scale = {b: list(_scale(item, (_asset_bands(item.assets[k]) or [{}])[0], p))
                      for b, k in band_assets.items()}
        grid_keys = list(band_assets.values())
    grids = [g for k in grid_keys if (g := _proj(item, item.assets[k])) is not None]
    if grids:
        crs, tr, width, height = min(grids, key=lambda g: abs(g[1].a))
    else:
        crs, tr, width, height = _header(hrefs[grid_keys[0]], signer, options)
    xs, ys = zip(*(tr * c for c in ((0, 0), (width, 0), (0, height), (width, height))), strict=True)

    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise SourceError(f"STAC item {item.id} has no datetime")
    cloud = item.properties.get("eo:cloud_cover")
    props: dict[str, Any] = {
        "provider": provider,
        "collection": item.collection_id or "",
        "item_id": item.id,
        "stac_item_href": item.get_self_href() or "",
        "processing_baseline": item.properties.get("s2:processing_baseline"),
        "asset_hrefs": hrefs,
        "band_scale": band_scale,
        "mask_kind": mask_kind,
        "preset": p.name if p else "",
    }
    if multi is None:
        props["band_hrefs"] = {b: hrefs[k] for b, k in band_assets.items()}
    if mask_key is not None:
        mmeta = (_asset_bands(item.assets[mask_key]) or [{}])[0]
        nod = mmeta.get("nodata", p.nodata.get(mask_key) if p else None)
        if nod is not None:
            props["mask_nodata"] = nod
    if signer:
        props["signer"] = signer
    path = hrefs[multi] if multi is not None else (props["stac_item_href"] or hrefs[band_assets[bands[0]]])
    return Scene(
        scene_id=item.id,
        path=path,
        datetime=as_utc(when),
        crs=crs,
        transform=tuple(tr)[:6],  # type: ignore[arg-type]
        width=width,
        height=height,
        bounds=(min(xs), min(ys), max(xs), max(ys)),
        bands=bands,
        mask_path=hrefs[mask_key] if mask_key else None,
        platform=str(item.properties.get("platform", "")),
        source="stac",
        cloud_cover=float(cloud) if cloud is not None else None,
        properties=props,
    )


def _iso(d: datetime | None) -> str:
    return ".." if d is None else as_utc(d).strftime("%Y-%m-%dT%H:%M:%SZ")


@register_source("stac")
class StacSource:
    """A STAC API or a static STAC catalog (a catalog.json path or URL), with collection presets.

    ``url``: a STAC API landing page (it conforms to item-search: searched with pystac-client) or a static
    catalog (walked with pystac).  ``collections``: searched collections (default: the preset's, else all).
    ``preset``: ``sentinel-2-l2a`` or ``landsat-c2-l2`` (default: guessed per item from its asset keys).
    ``max_cloud_cover``: items cloudier than this (``eo:cloud_cover``, percent) are skipped; the filter runs
    here, not on the server, so static catalogs and APIs agree (an item without ``eo:cloud_cover`` is kept) and
    :attr:`skipped_cloudy` says what the last :meth:`search` left out.
    ``sign``: a URL signer (a callable, or a registered name such as ``planetary-computer``, the default on
    Planetary Computer) applied to asset hrefs when they are read.  ``headers``: sent with every request,
    STAC and GDAL.  ``gdal_options``: extra GDAL config options for reading (``AWS_*`` credentials, ...).
    ``timeout``, ``max_retries``, ``retry_delay`` (seconds, doubled at each retry): HTTP robustness.
    """

    name = "stac"

    def __init__(
        self,
        url: str | Path,
        collections: str | Sequence[str] | None = None,
        preset: str | Preset | None = None,
        *,
        max_cloud_cover: float | None = None,
        sign: str | Callable[[str], str] | None = None,
        headers: Mapping[str, str] | None = None,
        gdal_options: Mapping[str, Any] | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        provider: str | None = None,
        max_items: int | None = None,
        page_size: int = 100,
    ) -> None:
        self.url = str(url)
        self.preset = get_preset(preset)
        if isinstance(collections, str):
            collections = [collections]
        self.collections = list(collections) if collections else (list(self.preset.collections) if self.preset else [])
        self.max_cloud_cover = max_cloud_cover
        self.headers = dict(headers or {})
        self.timeout, self.max_retries, self.retry_delay = timeout, max_retries, retry_delay
        self.extra_gdal_options = dict(gdal_options or {})
        self.max_items, self.page_size = max_items, page_size
        host = urlsplit(self.url).netloc
        self.provider = provider or _KNOWN_PROVIDERS.get(host, host or self.url)
        if sign is None and host == "planetarycomputer.microsoft.com":
            sign = "planetary-computer"
        if callable(sign):
            name = f"stac:{self.url}"
            register_signer(name, sign)
            sign = name
        self.signer: str | None = sign
        #: item id -> cloud cover (percent) of the items the last :meth:`search` skipped as too cloudy
        self.skipped_cloudy: dict[str, float] = {}

    # -- reading options ---------------------------------------------------------------------------------
    def gdal_options(self) -> dict[str, str]:
        """GDAL config options for reading this source's rasters (retries, timeout, headers, extras)."""
        return gdal_http_options(
            max_retries=self.max_retries, retry_delay=self.retry_delay, timeout=self.timeout,
            headers=self.headers, extra=self.extra_gdal_options,
        )

    def reading_env(self) -> AbstractContextManager[dict[str, str]]:
        """``with source.reading_env(): load_stack(...)`` reads with this source's HTTP options."""
        return gdal_env(self.gdal_options())

    # -- search ------------------------------------------------------------------------------------------
    def _io_options(self) -> dict[str, Any]:
        return {"headers": self.headers, "timeout": self.timeout, "retries": self.max_retries,
                "delay": self.retry_delay}

    def _items(self, geom: Any, start: datetime | None, end: datetime | None) -> Iterable[pystac.Item]:
        if not is_remote(self.url):
            if not Path(self.url).exists():
                raise SourceError(f"STAC catalog {self.url} does not exist")
            return self._static(pystac.Catalog.from_file(self.url))
        static_io = StaticStacIO(**self._io_options())
        root = static_io.read_json(self.url)
        if not any(str(c).rstrip("/").endswith("/item-search") for c in root.get("conformsTo", [])):
            return self._static(pystac.Catalog.from_file(self.url, stac_io=static_io))
        from pystac_client import Client

        client = Client.open(self.url, stac_io=ApiStacIO(**self._io_options()), timeout=self.timeout)
        # no server-side cloud query: search() filters, counts what it skips, and keeps items without a cloud cover
        search = client.search(
            intersects=mapping(geom), datetime=None if start is None and end is None else f"{_iso(start)}/{_iso(end)}",
            collections=self.collections or None, max_items=self.max_items, limit=self.page_size,
        )
        return search.items()

    @staticmethod
    def _static(cat: pystac.Catalog) -> Iterable[pystac.Item]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield from cat.get_items(recursive=True)

    def search(
        self, geometry_wgs84: Any, start: datetime | None = None, end: datetime | None = None
    ) -> list[Scene]:
        """The items intersecting ``geometry_wgs84`` in ``[start, end]`` (UTC), in ``collections``, not
        cloudier than ``max_cloud_cover``, as scenes sorted by time (the cloudier ones: :attr:`skipped_cloudy`).

        Every page is read before anything is returned: a server failing half-way raises :class:`SourceError`.
        """
        geom = as_geometry(geometry_wgs84)
        scenes: dict[str, Scene] = {}
        cloudy: dict[str, float] = {}
        try:
            for item in self._items(geom, start, end):
                if self.collections and item.collection_id not in self.collections:
                    continue
                when = item.datetime or item.common_metadata.start_datetime
                if when is None or not in_range(when, start, end):
                    continue
                if item.geometry is None or not shape(item.geometry).intersects(geom):
                    continue
                cloud = item.properties.get("eo:cloud_cover")
                if self.max_cloud_cover is not None and cloud is not None and cloud > self.max_cloud_cover:
                    log.debug("skipping %s: %.1f %% cloud", item.id, cloud)
                    cloudy[item.id] = float(cloud)
                    continue
                scenes[item.id] = item_to_scene(
                    item, self.preset, provider=self.provider, signer=self.signer, options=self.gdal_options()
                )
        except SourceError:
            raise
        except (pystac.STACError, ValueError, KeyError, OSError) as exc:
            cause: BaseException | None = exc
            while cause is not None:  # pystac wraps I/O errors met while resolving links: say the first one
                if isinstance(cause, SourceError):
                    raise cause from None
                cause = cause.__cause__ or cause.__context__
            raise SourceError(
                f"{redact(self.url)} cannot be read as a STAC catalog or API: {' '.join(str(exc).split())[:300]}"
            ) from None
        self.skipped_cloudy = cloudy
        return sorted(scenes.values(), key=lambda s: (s.datetime, s.scene_id))

