"""Test helpers for the imagery sources: a range-capable HTTP file server that counts what it serves and
can misbehave on demand, and writers of real COG scenes (the data are generated here, seeded)."""

from __future__ import annotations

import re
import socketserver
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pystac
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass
class Faults:
    """What the server does wrong, to paths containing ``match``: the next ``count`` requests (-1: all)."""

    kind: str = ""  # "status", "truncate", "delay"
    count: int = 0
    status: int = 500
    delay: float = 0.0
    match: str = ""
    require_query: str = ""  # answer 403 to matching paths without this query parameter (signed URLs)


@dataclass
class Log:
    bytes_by_path: Counter[str] = field(default_factory=Counter)
    requests: list[tuple[str, str, str, int]] = field(default_factory=list)  # method, path, range, status

    def clear(self) -> None:
        self.bytes_by_path.clear()
        self.requests.clear()

    def served(self, suffix: str = "") -> int:
        return sum(n for p, n in self.bytes_by_path.items() if p.endswith(suffix))


class RangeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.log = Log()
        self.faults = Faults()
        self.lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # the client gave up (timeouts): not news
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take_fault(self, path: str, body: bool) -> str:
        with self.lock:
            f = self.faults
            if not f.kind or f.count == 0 or f.match not in path or (f.kind == "truncate" and not body):
                return ""
            if f.count > 0:
                f.count -= 1
            return f.kind


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # keep-alive with headers and body in two writes: without TCP_NODELAY, Nagle meets the client's delayed
    # ACK and every request waits ~40 ms
    disable_nagle_algorithm = True
    server: RangeServer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def do_POST(self) -> None:  # noqa: N802 - a canned answer: the file at the path, whatever was asked
        self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        self._serve(body=True)

    def _answer(self, status: int, rng: str, path: str, text: bytes = b"") -> None:
        with self.server.lock:  # logged before answering: the client may be done before this thread goes on
            self.server.log.requests.append((self.command, path, rng, status))
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(text)

    def _serve(self, body: bool) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        rng = self.headers.get("Range", "")
        srv = self.server
        need = srv.faults.require_query
        if need and srv.faults.match in path and need not in parse_qs(parts.query):
            return self._answer(403, rng, path, b"signature required")
        fault = srv.take_fault(path, body)
        if fault == "status":
            return self._answer(srv.faults.status, rng, path, b"server error")
        if fault == "delay":
            time.sleep(srv.faults.delay)
        file = (srv.root / path.lstrip("/")).resolve()
        if not file.is_file() or srv.root.resolve() not in file.parents:
            return self._answer(404, rng, path, b"not found")
        size = file.stat().st_size
        start, end = 0, size - 1
        status = 200
        if rng:
            m = _RANGE.match(rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                return self._answer(416, rng, path)
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start = max(0, size - int(m.group(2)))
            if start >= size:
                return self._answer(416, rng, path)
            status = 206
        n = end - start + 1
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(n))
        self.send_header("Content-Type", "application/json" if path.endswith(".json") else "image/tiff")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        data = b""
        if body:
            with open(file, "rb") as f:
                f.seek(start)
                data = f.read(n)
            if fault == "truncate":
                data = data[: max(1, len(data) // 2)]
                self.close_connection = True
        with srv.lock:
            srv.log.bytes_by_path[path] += len(data)
            srv.log.requests.append((self.command, path, rng, status))
        self.end_headers()
        self.wfile.write(data)


S = TypeVar("S", bound=socketserver.BaseServer)


@contextmanager
def serving(srv: S) -> Iterator[S]:
    """Run an HTTP server (bound to 127.0.0.1) in a thread; shut it down and close it on exit."""
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@contextmanager
def range_server(root: Path) -> Iterator[RangeServer]:
    """A range-capable HTTP file server for ``root`` on 127.0.0.1 (a free port), stopped on exit."""
    with serving(RangeServer(root)) as srv:
        yield srv


def write_cog(
    path: Path,
    data: np.ndarray,
    origin: tuple[float, float],
    res: float = 10.0,
    crs: str = "EPSG:32652",
    *,
    blocksize: int = 256,
    descriptions: tuple[str, ...] = (),
    tags: dict[str, str] | None = None,
    nodata: float | None = 0,
) -> Path:
    """Write ``data`` (band, y, x) as a deflate-compressed COG with internal tiling and overviews."""
    nb, h, w = data.shape
    profile = dict(driver="GTiff", width=w, height=h, count=nb, dtype=data.dtype.name, crs=crs,
                   transform=from_origin(*origin, res, res), nodata=nodata)
    path.parent.mkdir(parents=True, exist_ok=True)
    with MemoryFile() as mem:
        with mem.open(**profile) as tmp:
            tmp.write(data)
            for i, d in enumerate(descriptions):
                tmp.set_band_description(i + 1, d)
            if tags:
                tmp.update_tags(**tags)
        with mem.open() as tmp:
            rasterio.shutil.copy(tmp, path, driver="COG", blocksize=blocksize, compress="DEFLATE", predictor=2)
    return path


def scene_data(nb: int, size: int, seed: int, noise_bits: int = 6) -> np.ndarray:
    """Smooth fields plus noise, uint16 reflectance x 10000: realistic compressibility, seeded."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((nb, size, size), np.uint16)
    for b in range(nb):
        base = 800 + 400 * b + 300 * np.sin(6 * xx + b) * np.cos(4 * yy)
        out[b] = (base + rng.integers(0, 2**noise_bits, (size, size))).astype(np.uint16)
    return out


def write_big_scene(
    folder: Path, when: datetime, size: int = 2048, origin: tuple[float, float] = (500000.0, 4600000.0),
    blocksize: int = 256, seed: int = 0, cloud: int | None = None,
) -> tuple[Path, Path]:
    """A 6-band COG (``B02`` ... ``B12``) and its ``_SCL`` COG mask; ``cloud``: SCL code of the whole mask."""
    name = f"S2B_MSIL2A_{when:%Y%m%dT%H%M%S}_BIG"
    img = write_cog(folder / f"{name}.tif", scene_data(6, size, seed), origin, blocksize=blocksize,
                    descriptions=BANDS, tags={"ACQUISITION_DATETIME": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                              "PLATFORM": "sentinel-2b"})
    scl = np.full((1, size, size), 4 if cloud is None else cloud, np.uint8)
    mask = write_cog(folder / f"{name}_SCL.tif", scl, origin, blocksize=blocksize)
    return img, mask


def per_band_item(
    folder: Path,
    item_id: str,
    when: datetime,
    assets: dict[str, tuple[np.ndarray, float]],
    origin: tuple[float, float] = (500000.0, 4600000.0),
    crs_epsg: int = 32652,
    properties: dict[str, object] | None = None,
    raster_bands: dict[str, dict[str, object]] | None = None,
    collection: str | None = None,
) -> pystac.Item:
    """A STAC item with one single-band COG asset per key (``assets``: key -> (2-D array, resolution m)),
    projection metadata per asset the way Earth Search and Planetary Computer write it."""
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping, shape

    size_m = None
    item_assets = {}
    for key, (arr, res) in assets.items():
        path = write_cog(folder / item_id / f"{key}.tif", arr[None], origin, res, f"EPSG:{crs_epsg}",
                         nodata=1 if key == "qa_pixel" else 0)
        h, w = arr.shape
        size_m = size_m or (w * res, h * res)
        extra: dict[str, object] = {
            "proj:shape": [h, w], "proj:transform": [res, 0.0, origin[0], 0.0, -res, origin[1]],
        }
        if raster_bands and key in raster_bands:
            extra["raster:bands"] = [raster_bands[key]]
        item_assets[key] = pystac.Asset(href=str(path), media_type=pystac.MediaType.COG, roles=["data"],
                                        extra_fields=extra)
    assert size_m is not None
    poly = box(origin[0], origin[1] - size_m[1], origin[0] + size_m[0], origin[1])
    geom = shape(transform_geom(f"EPSG:{crs_epsg}", "EPSG:4326", mapping(poly)))
    item = pystac.Item(item_id, mapping(geom), list(geom.bounds), when,
                       {"proj:code": f"EPSG:{crs_epsg}", **(properties or {})}, collection=collection)
    for key, asset in item_assets.items():
        item.add_asset(key, asset)
    return item


def save_catalog(items: list[pystac.Item], root: Path, collection_id: str) -> Path:
    """Items -> a self-contained static catalog under ``root`` (relative hrefs), like a provider's mirror."""
    from shapely.geometry import shape
    from shapely.ops import unary_union

    bounds = unary_union([shape(i.geometry) for i in items]).bounds
    times = sorted(i.datetime for i in items if i.datetime)
    coll = pystac.Collection(collection_id, "test collection", pystac.Extent(
        pystac.SpatialExtent([list(bounds)]), pystac.TemporalExtent([[times[0], times[-1]]])))
    for item in items:
        coll.add_item(item)
    cat = pystac.Catalog("test", "test catalog")
    cat.add_child(coll)
    cat.normalize_hrefs(str(root))
    cat.make_all_asset_hrefs_relative()
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


def fake_item_search_api(root: Path, base_url: str, items: list[dict[str, object]]) -> str:
    """Files under ``root/api`` that pystac-client takes for a STAC API with item search: a landing page and a
    canned ``search`` answer (every item, whatever the query: the client filters again).  Returns its URL."""
    import json

    api = root / "api"
    api.mkdir(parents=True, exist_ok=True)
    url = f"{base_url}/api"
    landing = {
        "type": "Catalog", "id": "fake-api", "description": "canned STAC API", "stac_version": "1.1.0",
        "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
        "links": [
            {"rel": "self", "href": f"{url}/landing.json", "type": "application/json"},
            {"rel": "root", "href": f"{url}/landing.json", "type": "application/json"},
            {"rel": "search", "href": f"{url}/search", "type": "application/geo+json", "method": "POST"},
            {"rel": "search", "href": f"{url}/search", "type": "application/geo+json", "method": "GET"},
        ],
    }
    (api / "landing.json").write_text(json.dumps(landing))
    (api / "search").write_text(json.dumps({"type": "FeatureCollection", "features": items, "links": []}))
    return f"{url}/landing.json"
