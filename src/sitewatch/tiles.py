"""Web map tiles of stored scenes: a scene's bands over one tile of the Web Mercator grid, as a PNG (rio-tiler).

A tile is asked for by the scene's id in the store, never by a path or URL: the store says where its pixels
are (:func:`sitewatch.sources.read.band_sources`: one multi-band raster, or one raster per band), and they are
read through the same signing and HTTP options as any read; a raster that is a recipe naming other files (a
VRT, ...) is refused.  Reflectance (the scene's scale and offset) is stretched linearly
from ``stretch[0]`` to ``stretch[1]`` onto 1..255; pixels without data are transparent.

A stored scene's pixels never change (a scene id names one acquisition), so a server keeps the tiles it drew
in a :class:`TileCache` (least recently used out first, bounded in bytes): the analysts of a team look at the
same sites.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence

import numpy as np
from PIL import Image
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader

from .errors import ImageryError, InvalidParameter
from .sources._http import gdal_env, gdal_path, sign_href
from .sources.read import band_scale, band_sources
from .types import Scene

__all__ = ["TILE_SIZE", "DEFAULT_TILE_BANDS", "DEFAULT_STRETCH", "MAX_ZOOM", "scene_tile", "parse_bands",
           "TileCache"]

TILE_SIZE = 256
DEFAULT_TILE_BANDS = ("B04", "B03", "B02")
#: reflectance shown from black to white: most land surfaces
DEFAULT_STRETCH = (0.0, 0.3)
MAX_ZOOM = 22
#: drivers of files that are recipes naming other files (a VRT can point at any file of this machine)
_REFUSED_DRIVERS = frozenset({"VRT", "WMS", "WMTS", "MRF"})


def parse_bands(text: str | None, scene: Scene) -> tuple[str, ...]:
    """``"B04,B03,B02"`` -> the band names (1 for grey, 3 for colour), each one the scene has."""
    bands = tuple(b.strip() for b in (text or ",".join(DEFAULT_TILE_BANDS)).split(",") if b.strip())
    if len(bands) not in (1, 3):
        raise InvalidParameter(f"bands: give 1 band (grey) or 3 (red, green, blue), not {len(bands)}", field="bands")
    try:
        band_sources(scene, bands)
    except KeyError as exc:
        raise InvalidParameter(f"bands: {exc.args[0] if exc.args else exc}", field="bands") from None
    return bands


class TileCache:
    """Drawn tiles (PNG bytes, or None for "no pixel there") by key, least recently used dropped first once
    they pass ``max_bytes``; safe to share between threads.  Each entry counts :data:`ENTRY_BYTES` on top of
    its PNG (the key and the bookkeeping), so that a flood of empty tiles is bounded too."""

    #: what an entry costs besides its PNG's bytes
    ENTRY_BYTES = 256

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes, self.size = max_bytes, 0
        self._items: OrderedDict[Hashable, bytes | None] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> tuple[bool, bytes | None]:
        with self._lock:
            if key not in self._items:
                self.misses += 1
                return False, None
            self.hits += 1
            self._items.move_to_end(key)
            return True, self._items[key]

    def put(self, key: Hashable, value: bytes | None) -> None:
        n = len(value or b"") + self.ENTRY_BYTES
        if n > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self.size += n
            while self.size > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self.size -= len(old or b"") + self.ENTRY_BYTES


def scene_tile(scene: Scene, z: int, x: int, y: int, bands: Sequence[str] = DEFAULT_TILE_BANDS, *,
               stretch: tuple[float, float] = DEFAULT_STRETCH, cache: TileCache | None = None) -> bytes | None:
    """The PNG of tile ``z/x/y`` of ``scene`` (``bands``: 1 or 3 names), or None where the scene has no pixel;
    from ``cache`` when it holds it (and kept there when drawn)."""
    if not 0 <= z <= MAX_ZOOM or not (0 <= x < 2 ** z and 0 <= y < 2 ** z):
        raise InvalidParameter(f"no tile {z}/{x}/{y}: zoom 0 to {MAX_ZOOM}, x and y 0 to 2^zoom - 1")
    if cache is None:
        return _draw(scene, z, x, y, bands, stretch)
    key = (scene.scene_id, tuple(bands), tuple(stretch), z, x, y)
    found, png = cache.get(key)
    if not found:
        png = _draw(scene, z, x, y, bands, stretch)
        cache.put(key, png)
    return png


def _draw(scene: Scene, z: int, x: int, y: int, bands: Sequence[str], stretch: tuple[float, float]) -> bytes | None:
    lo, hi = stretch
    signer = scene.properties.get("signer")
    out = np.zeros((len(bands), TILE_SIZE, TILE_SIZE), np.float32)
    valid = np.ones((TILE_SIZE, TILE_SIZE), bool)
    with gdal_env():
        for href, idx, where in band_sources(scene, bands):
            try:
                with Reader(gdal_path(sign_href(href, signer))) as src:
                    if src.dataset.driver.upper() in _REFUSED_DRIVERS:
                        raise ImageryError(f"scene {scene.scene_id}: a {src.dataset.driver} file is not served as "
                                           "tiles (it could name any file of this machine)")
                    img = src.tile(x, y, z, tilesize=TILE_SIZE, indexes=tuple(idx))
            except TileOutsideBounds:
                return None
            data = img.array.data.astype(np.float32)
            valid &= ~np.ma.getmaskarray(img.array).any(axis=0) & (data > 0).all(axis=0)
            for k, pos in enumerate(where):
                scale, offset = band_scale(scene, bands[pos])
                out[pos] = data[k] * scale + offset
    if not valid.any():
        return None
    grey = np.clip((out - lo) / (hi - lo) * 254.0 + 1.0, 1.0, 255.0).astype(np.uint8)
    rgb = np.repeat(grey, 3, axis=0) if len(bands) == 1 else grey
    alpha = np.where(valid, 255, 0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.dstack([*rgb, alpha]), "RGBA").save(buf, format="PNG")
    return buf.getvalue()
