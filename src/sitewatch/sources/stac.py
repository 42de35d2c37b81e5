"""The ``stac`` source: any STAC API (pystac-client) or static STAC catalog (pystac), local or over HTTP.

Each item becomes a :class:`~sitewatch.types.Scene` that records where every band is (see
:mod:`sitewatch.sources.read`) and what a report cites: provider, collection, item id, acquisition time,
cloud cover, processing baseline and asset hrefs.  Item metadata is enough (``proj:*`` of the projection
extension); an item without it has the header of one band read, never its pixels.

The cloud mask of an item, in this order: the asset the source names (``mask_asset``); the preset's (SCL,
QA_PIXEL); an asset keyed ``scl`` or ``qa_pixel``; else every asset keyed ``mask`` or with a mask role
(``cloud``, ``cloud-shadow``, ``snow-ice``, ``data-mask``).  A mask is decoded by its STAC classification
extension (``classification:classes`` or ``classification:bitfields``, on the asset or its first band),
else by its roles; ``clear_values`` override both.  A data mask alone is no cloud mask (none is used).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pystac
import rasterio
from affine import Affine
from rasterio.errors import RasterioError
from shapely.geometry import mapping, shape

from ..errors import ImageryError, SitewatchWarning
from ..types import Scene
from ._http import gdal_env, gdal_http_options, gdal_path, is_remote, redact, register_signer, sign_href
from ._retry import RetryPolicy
from ._stac_io import ApiStacIO, StaticStacIO
from .base import SourceError, as_geometry, as_utc, get_source, in_range, register_source
from .presets import (
    COMMON_NAMES,
    MASK_ROLES,
    PRESETS,
    MaskDecoding,
    Preset,
    bitfields_decoding,
    classes_decoding,
    get_preset,
    roles_decoding,
    with_clear_values,
)

__all__ = ["StacSource", "item_to_scene", "ITEM_SEARCH", "parse_clear_values", "stac_source_options"]

log = logging.getLogger(__name__)

ITEM_SEARCH = "https://api.stacspec.org/v1.0.0/item-search"
_KNOWN_PROVIDERS = {
    "earth-search.aws.element84.com": "Element 84 Earth Search",
    "planetarycomputer.microsoft.com": "Microsoft Planetary Computer",
}
_MASK_KEYS = ("scl", "SCL", "qa_pixel", "QA_PIXEL", "mask")
_PRODUCT_MASKS = {"scl": "scl", "qa_pixel": "qa_pixel"}  # asset key (any case) -> how its values read


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


def parse_clear_values(values: str | Iterable[int | str]) -> tuple[int, ...]:
    """Mask values that count as clear, from ``"0,4,5"`` or ``[0, 4, 5]``."""
    parts = values.split(",") if isinstance(values, str) else list(values)
    try:
        out = tuple(sorted({int(str(v).strip()) for v in parts}))
    except ValueError:
        out = ()
    if not out:
        raise ValueError(f"clear values are whole numbers separated by commas, like 0,4,5 (not {values!r})")
    return out


def stac_source_options(
    url: str, *, collections: Sequence[str] | None = None, preset: str | None = None,
    max_cloud_cover: float | None = None, mask_asset: str | None = None, clear_values: str | None = None,
) -> dict[str, Any]:
    """The options of a ``stac`` source as the store records them, checked now (a bad preset, option or
    ``clear_values`` fails here, not at the next fetch); options not given are left out."""
    options: dict[str, Any] = {"url": url}
    if collections:
        options["collections"] = list(collections)
    if preset:
        options["preset"] = preset
    if max_cloud_cover is not None:
        options["max_cloud_cover"] = max_cloud_cover
    if mask_asset:
        options["mask_asset"] = mask_asset
    if clear_values is not None:
        options["clear_values"] = list(parse_clear_values(clear_values))
    get_source("stac", **options)
    return options


def _number(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _mask_decoding(
    item: pystac.Item, key: str, kind: str | None, p: Preset | None, clear_values: Sequence[int] | None = None
) -> MaskDecoding:
    """How the values of mask asset ``key`` read: the product's kind if known (``kind``, or the key ``scl`` /
    ``qa_pixel``), else its classification extension, else its roles, else SCL (an undescribed ``mask``);
    ``clear_values`` (the user's) override it."""
    asset = item.assets[key]
    meta = (_asset_bands(asset) or [{}])[0]
    nodata = _number(meta.get("nodata", p.nodata.get(key) if p else None))
    kind = kind or _PRODUCT_MASKS.get(key.lower())
    classes = asset.extra_fields.get("classification:classes") or meta.get("classification:classes")
    bitfields = asset.extra_fields.get("classification:bitfields") or meta.get("classification:bitfields")
    if kind == "qa_pixel":
        dec = MaskDecoding("qa_pixel")
    elif kind == "scl":
        dec = MaskDecoding("scl")
    elif classes:
        dec, unknown = classes_decoding(classes)
        if unknown and clear_values is None:
            warnings.warn(
                f"mask asset {key!r} of {item.collection_id or 'a STAC catalog'}: class(es) {', '.join(unknown)} "
                f"unknown to sitewatch, counted as not clear; if they are clear, say which values are "
                f"(sitewatch source add ... --mask-asset {key} --clear-values ...)", SitewatchWarning, stacklevel=4,
            )
    elif bitfields:
        dec = bitfields_decoding(bitfields)
    else:  # undescribed: SCL, unless the user says which values are clear
        dec = roles_decoding(asset.roles or []) or MaskDecoding("scl" if clear_values is None else "classes")
    dec = replace(dec, nodata=nodata)
    return dec if clear_values is None else with_clear_values(dec, clear_values)


def _mask_assets(
    item: pystac.Item, p: Preset | None, data: set[str], mask_asset: str | None
) -> Sequence[tuple[str, str | None]]:
    """The item's mask assets, first the main one, with the kind their key or preset implies."""
    if mask_asset is not None:
        if mask_asset not in item.assets:
            raise SourceError(
                f"STAC item {item.id} has no asset {mask_asset!r} (assets: {', '.join(sorted(item.assets))}); "
                "check the source's mask asset (--mask-asset)"
            )
        return [(mask_asset, None)]
    if p is not None:
        return [(k, p.mask_kind) for k in p.mask_assets if k in item.assets][:1]
    product = next((k for k in _MASK_KEYS if k in item.assets and k.lower() in _PRODUCT_MASKS), None)
    if product is not None:
        return [(product, None)]
    found = [k for k, a in item.assets.items() if k not in data and _is_raster(a)
             and (k == "mask" or set(a.roles or []) & set(MASK_ROLES))]
    found.sort(key=lambda k: k != "mask")

    def data_mask_only(k: str) -> bool:
        a = item.assets[k]
        meta = (_asset_bands(a) or [{}])[0]
        described = any(f"classification:{x}" in a.extra_fields or f"classification:{x}" in meta
                        for x in ("classes", "bitfields"))
        return not described and set(a.roles or []) & set(MASK_ROLES) == {"data-mask"}

    if all(data_mask_only(k) for k in found):  # says where data are, not where clouds are
        return []
    return [(k, None) for k in found]


def item_to_scene(
    item: pystac.Item,
    preset: str | Preset | None = None,
    *,
    provider: str = "",
    signer: str | None = None,
    options: Mapping[str, str] | None = None,
    mask_asset: str | None = None,
    clear_values: Iterable[int] | None = None,
) -> Scene:
    """The :class:`Scene` of a STAC item: one multi-band asset, or one asset per band mapped by ``preset``.

    Without a preset, the presets are tried by asset keys, then a multi-band data asset, then single-band
    assets named by ``eo:common_name``.  An item none of these fit raises :class:`SourceError`.
    ``mask_asset``: the key of the cloud mask asset (default: found, see the module's notes);
    ``clear_values``: the values of that mask that are clear, every other is not (default: from the mask's
    classification extension or roles).
    """
    p = _item_preset(item, get_preset(preset))
    hrefs = {k: a.get_absolute_href() or a.href for k, a in item.assets.items()}
    band_assets, multi = _band_assets(item, p, mask_asset)
    data_keys = set(band_assets.values()) | ({multi} if multi else set())
    masks = _masks(item, p, data_keys, mask_asset, clear_values)
    bands, band_scale, grid_keys = _bands_and_scales(item, p, band_assets, multi)
    crs, tr, width, height = _item_grid(item, grid_keys, hrefs, signer, options)
    xs, ys = zip(*(tr * c for c in ((0, 0), (width, 0), (0, height), (width, height))), strict=True)

    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise SourceError(f"STAC item {item.id} has no datetime")
    cloud = item.properties.get("eo:cloud_cover")
    props = _scene_properties(item, p, provider, signer, hrefs, band_scale, band_assets, multi, masks)
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
        mask_path=hrefs[masks[0][0]] if masks else None,
        platform=str(item.properties.get("platform", "")),
        source="stac",
        cloud_cover=float(cloud) if cloud is not None else None,
        properties=props,
    )


def _item_preset(item: pystac.Item, p: Preset | None) -> Preset | None:
    """The preset of ``item``: ``p`` if its assets fit it (else :class:`SourceError`), else the first that fits."""
    keys = set(item.assets)
    if p is not None and not p.matches(keys):
        missing = [b for b in p.bands if not p.asset_for(b, keys)]
        raise SourceError(
            f"STAC item {item.id}: no asset for band(s) {', '.join(missing)} of preset {p.name} "
            f"(assets: {', '.join(sorted(keys))}); choose another preset or none"
        )
    return p or next((q for q in PRESETS.values() if q.matches(keys)), None)


def _band_assets(item: pystac.Item, p: Preset | None, mask_asset: str | None) -> tuple[dict[str, str], str | None]:
    """Where the bands are: ``(band -> asset key, one raster per band; key of the multi-band asset or None)``:
    the preset's assets, else a multi-band data asset, else single-band assets named by their metadata or key,
    else the one data asset."""
    keys = set(item.assets)
    if p is not None:
        return {b: p.asset_for(b, keys) for b in p.bands}, None  # type: ignore[misc]
    band_assets: dict[str, str] = {}
    data = [k for k, a in item.assets.items() if _is_raster(a) and k not in _MASK_KEYS and k != mask_asset
            and not {"thumbnail", "overview", "visual", *MASK_ROLES} & set(a.roles or [])]
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
    return band_assets, multi


def _masks(
    item: pystac.Item, p: Preset | None, data_keys: set[str], mask_asset: str | None,
    clear_values: Iterable[int] | None,
) -> list[tuple[str, MaskDecoding]]:
    """The item's mask assets, the main one first, each with how its values decode (the user's
    ``clear_values`` decode the main one alone)."""
    found = _mask_assets(item, p, data_keys, mask_asset)
    values = None if clear_values is None else list(clear_values)
    if values is not None:
        found = found[:1]  # the user's values decode one mask
    return [(k, _mask_decoding(item, k, kind, p, values)) for k, kind in found]


def _bands_and_scales(
    item: pystac.Item, p: Preset | None, band_assets: Mapping[str, str], multi: str | None
) -> tuple[tuple[str, ...], dict[str, list[float]], list[str]]:
    """The scene's band names, each band's ``[scale, offset]`` to reflectance, and the assets whose grids
    the scene may take (the multi-band one, or every band's)."""
    if multi is not None:
        metas = _asset_bands(item.assets[multi])
        bands = tuple(_band_name(m, i) for i, m in enumerate(metas)) or ("B1",)
        return bands, {b: list(_scale(item, m, p)) for b, m in zip(bands, metas, strict=False)}, [multi]
    band_scale = {b: list(_scale(item, (_asset_bands(item.assets[k]) or [{}])[0], p)) for b, k in band_assets.items()}
    return tuple(band_assets), band_scale, list(band_assets.values())


def _item_grid(
    item: pystac.Item, grid_keys: Sequence[str], hrefs: Mapping[str, str], signer: str | None,
    options: Mapping[str, str] | None,
) -> tuple[str, Affine, int, int]:
    """CRS, transform, width and height of the finest of ``grid_keys``' grids, from the projection metadata;
    without it, from the header of the first asset's raster."""
    grids = [g for k in grid_keys if (g := _proj(item, item.assets[k])) is not None]
    if grids:
        return min(grids, key=lambda g: abs(g[1].a))
    return _header(hrefs[grid_keys[0]], signer, options)


def _scene_properties(
    item: pystac.Item, p: Preset | None, provider: str, signer: str | None, hrefs: Mapping[str, str],
    band_scale: Mapping[str, list[float]], band_assets: Mapping[str, str], multi: str | None,
    masks: Sequence[tuple[str, MaskDecoding]],
) -> dict[str, Any]:
    """What the scene records of its item: provenance, where each band and mask is and how to read it."""
    props: dict[str, Any] = {
        "provider": provider,
        "collection": item.collection_id or "",
        "item_id": item.id,
        "stac_item_href": item.get_self_href() or "",
        "processing_baseline": item.properties.get("s2:processing_baseline"),
        "asset_hrefs": dict(hrefs),
        "band_scale": dict(band_scale),
        "mask_kind": p.mask_kind if p else "scl",
        "preset": p.name if p else "",
    }
    if multi is None:
        props["band_hrefs"] = {b: hrefs[k] for b, k in band_assets.items()}
    if masks:
        props.update(masks[0][1].to_properties())
        props["mask_asset"] = masks[0][0]
    if len(masks) > 1:
        props["mask_layers"] = [{"href": hrefs[k], "asset": k, **d.to_properties(prefix="")} for k, d in masks[1:]]
    if signer:
        props["signer"] = signer
    return props


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
    ``timeout``, ``max_retries``, ``retry_delay`` (seconds, doubled at each retry): HTTP robustness, the same
    for STAC requests and raster reads (:attr:`retry`, a :class:`~sitewatch.sources._retry.RetryPolicy`).
    ``mask_asset``: the key of the items' cloud mask asset (default: found by preset, key, classification
    extension or role).  ``clear_values``: the values of that mask that are clear (``[0, 4, 5]`` or ``"0,4,5"``);
    every other value is not, the mask's nodata stays no data (default: read from the mask's classes or roles).
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
        mask_asset: str | None = None,
        clear_values: str | Iterable[int | str] | None = None,
    ) -> None:
        self.url = str(url)
        self.mask_asset = mask_asset or None
        self.clear_values = parse_clear_values(clear_values) if clear_values is not None else None
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
    @property
    def retry(self) -> RetryPolicy:
        """The retry policy of this source's STAC requests and raster reads (``max_retries``, ``retry_delay``)."""
        return RetryPolicy(retries=self.max_retries, delay=self.retry_delay)

    def gdal_options(self) -> dict[str, str]:
        """GDAL config options for reading this source's rasters (retries, timeout, headers, extras)."""
        return {**self.retry.gdal_options(),
                **gdal_http_options(timeout=self.timeout, headers=self.headers, extra=self.extra_gdal_options)}

    def reading_env(self) -> AbstractContextManager[dict[str, str]]:
        """``with source.reading_env(): load_stack(...)`` reads with this source's HTTP options."""
        return gdal_env(self.gdal_options())

    # -- search ------------------------------------------------------------------------------------------
    def _io_options(self) -> dict[str, Any]:
        return {"headers": self.headers, "timeout": self.timeout, "retry": self.retry}

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
        items = iter(cat.get_items(recursive=True))
        while True:
            with warnings.catch_warnings():  # pystac's own, while it walks; not the caller's, between items
                warnings.simplefilter("ignore")
                item = next(items, None)
            if item is None:
                return
            yield item

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
                    item, self.preset, provider=self.provider, signer=self.signer, options=self.gdal_options(),
                    mask_asset=self.mask_asset, clear_values=self.clear_values,
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

