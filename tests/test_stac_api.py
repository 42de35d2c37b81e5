"""`fetch` against a real STAC API and a real file server (issue #4): stac-fastapi-pgstac over a throwaway
PostgreSQL/pgstac, nginx serving the COGs, both on 127.0.0.1 and started here (see :mod:`tests.servers`).

Items are built here from the demo world (26 dates, 2000 x 2800 pixel COGs) and from a real OSCD city
(Sentinel-2 L1C, one GeoTIFF per band), loaded through the API's Transactions extension; the demo world's
static catalog is served by the same nginx.  Without PostgreSQL/PostGIS or nginx (``scripts/system-deps.sh``)
these tests skip, except under ``CI=true``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.warp import transform_bounds
from shapely.affinity import scale
from shapely.geometry import box, mapping, shape

from sitewatch.catalog import read_scenes
from sitewatch.errors import SourceError
from sitewatch.geo import to_crs
from sitewatch.pipeline import fetch
from sitewatch.sites import make_site, read_geometry
from sitewatch.sources import StacSource, item_to_scene
from sitewatch.sources.stac_write import scene_to_item
from sitewatch.stack import load_stack, site_grid
from sitewatch.store import Store

from .cli_runner import run_cli
from .servers import (
    Nginx,
    StacApi,
    fault_proxy,
    have_nginx,
    have_postgres,
    have_stac_fastapi,
    nginx_server,
    pgstac_api,
    require,
)
from .stac_helpers import Faults

DEMO = "demo-s2-l2a"
OSCD = "oscd-s2-l1c"
SINCE = datetime(2024, 6, 1, tzinfo=UTC)
MAX_CLOUD = 50.0
OSCD_CITY = "rennes"


# -- servers and data --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def servers_installed() -> None:
    """Skip (fail under CI=true) without the servers, before any session fixture builds the demo world."""
    require("nginx", have_nginx())
    require("PostgreSQL 15 with PostGIS", have_postgres())
    require("stac-fastapi-pgstac", have_stac_fastapi(), "install the dev extra: pip install -e '.[dev]'")


pytestmark = pytest.mark.usefixtures("servers_installed")


@pytest.fixture(scope="module")
def www(tmp_path_factory) -> Path:
    """The folder nginx serves: links to the demo world and to real OSCD files."""
    return tmp_path_factory.mktemp("www")


@pytest.fixture(scope="module")
def nginx(www) -> Nginx:
    with nginx_server(www) as srv:
        yield srv


@pytest.fixture(scope="module")
def api() -> StacApi:
    with pgstac_api() as srv:
        yield srv


def _collection(cid: str, items: list[dict]) -> dict:
    bounds = [min(i["bbox"][k] for i in items) for k in (0, 1)] + [max(i["bbox"][k] for i in items) for k in (2, 3)]
    times = sorted(i["properties"]["datetime"] for i in items)
    return pystac.Collection(cid, f"test collection {cid}", pystac.Extent(
        pystac.SpatialExtent([bounds]), pystac.TemporalExtent([[datetime.fromisoformat(times[0]),
                                                                datetime.fromisoformat(times[-1])]])),
        license="other").to_dict(include_self_link=False)


@pytest.fixture(scope="module")
def demo(nginx, api, www, demo_run):
    """The demo world's scenes as API items whose assets nginx serves: (local scenes, items by id)."""
    world = demo_run[0].world
    (www / "demo").symlink_to(world, target_is_directory=True)
    scenes = read_scenes([world / "scenes"])
    items = {}
    for s in scenes:
        d = scene_to_item(s).to_dict(include_self_link=False)
        for asset in d["assets"].values():
            asset["href"] = f"{nginx.url}/demo/scenes/{Path(asset['href']).name}"
        items[s.scene_id] = d
    api.add_collection(_collection(DEMO, list(items.values())))
    api.add_items(DEMO, list(items.values()))
    return scenes, items


def _oscd_item(folder: Path, href_base: str, item_id: str, when: datetime) -> dict:
    """A per-band item over a real OSCD date folder (Planetary Computer style keys B02 ... B12)."""
    item = None
    for key in ("B02", "B03", "B04", "B08", "B11", "B12"):
        path = next(folder.glob(f"*_{key}.tif"))
        with rasterio.open(path) as src:
            if item is None:
                foot = box(*transform_bounds(src.crs, "EPSG:4326", *src.bounds))
                item = pystac.Item(item_id, mapping(foot), list(foot.bounds), when,
                                   {"proj:code": src.crs.to_string(), "platform": "sentinel-2a"}, collection=OSCD)
            extra = {"proj:shape": [src.height, src.width], "proj:transform": list(src.transform)[:6],
                     "raster:bands": [{"data_type": src.dtypes[0], "nodata": 0, "scale": 1e-4}]}
        item.add_asset(key, pystac.Asset(f"{href_base}/{folder.name}/{path.name}", media_type=pystac.MediaType.GEOTIFF,
                                         roles=["data"], extra_fields=extra))
    assert item is not None
    return item.to_dict(include_self_link=False)


@pytest.fixture(scope="module")
def oscd(nginx, api, www, real_data):
    """Both dates of a real OSCD city as API items over nginx: (city folder, items, local twins)."""
    city = real_data / "oscd" / "Onera Satellite Change Detection dataset - Images" / OSCD_CITY
    require(f"OSCD city {OSCD_CITY}", city.is_dir(), f"expected it under {real_data}")
    (www / "oscd").mkdir(exist_ok=True)
    (www / "oscd" / OSCD_CITY).symlink_to(city, target_is_directory=True)
    dates = dict(line.split(":") for line in (city / "dates.txt").read_text().split("\n") if ":" in line)
    items, local = [], []
    for i in (1, 2):
        when = datetime.strptime(dates[f"date_{i}"].strip(), "%Y%m%d").replace(tzinfo=UTC)
        iid = f"oscd-{OSCD_CITY}-{when:%Y%m%d}"
        items.append(_oscd_item(city / f"imgs_{i}", f"{nginx.url}/oscd/{OSCD_CITY}", iid, when))
        local.append(_oscd_item(city / f"imgs_{i}", str(city), iid, when))
    api.add_collection(_collection(OSCD, items))
    api.add_items(OSCD, items)
    return city, items, local


def _base_square(world: Path, fraction: float = 0.10):
    """A square site around the demo base whose grid covers ``fraction`` of a scene (lon/lat polygon)."""
    m = json.loads((world / "world.json").read_text())
    h, w = m["shape"]
    side = math.sqrt(fraction * h * w) * 10.0 * 0.98  # the lon/lat square's grid is a little larger
    x, y = m["base_utm"]
    return to_crs(box(x - side / 2, y - side / 2, x + side / 2, y + side / 2), m["crs"], "EPSG:4326")


def _expected(items: dict[str, dict], since: datetime, max_cloud: float) -> list[str]:
    """What a search must find: in the date range, not cloudier than ``max_cloud`` (computed independently)."""
    keep = [(i["properties"]["datetime"], iid) for iid, i in items.items()
            if datetime.fromisoformat(i["properties"]["datetime"]) >= since
            and i["properties"].get("eo:cloud_cover", 0) <= max_cloud]
    return [iid for _, iid in sorted(keep)]


def _store(tmp_path: Path, world: Path, api_url: str, **options) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'sitewatch.db'}")
    store.add_site(make_site("Base", _base_square(world)))
    store.add_source("pg", "stac", {"url": api_url, "collections": [DEMO], "max_cloud_cover": MAX_CLOUD, **options})
    return store


# -- the tests ---------------------------------------------------------------------------------------------


def test_fetch_from_pgstac_finds_loads_and_reads_only_the_window(api, nginx, demo, tmp_path, capsys):
    local, items = demo
    world = Path(local[0].path).parents[1]
    store = _store(tmp_path, world, api.url)
    site = store.get_site("Base")
    want = _expected(items, SINCE, MAX_CLOUD)
    cloudy = [iid for iid in _expected(items, SINCE, 101.0) if iid not in want]
    assert len(want) >= 5 and cloudy  # the date range holds clear and cloudy dates

    src = StacSource(api.url, collections=[DEMO], max_cloud_cover=MAX_CLOUD)
    assert [s.scene_id for s in src.search(site.geometry, SINCE)] == want
    assert sorted(src.skipped_cloudy) == sorted(cloudy)
    end = datetime(2024, 9, 30, tzinfo=UTC)  # a closed date range: the API filters, the client checks
    assert [s.scene_id for s in src.search(site.geometry, SINCE, end)] == [
        i for i in want if datetime.fromisoformat(items[i]["properties"]["datetime"]) <= end]
    elsewhere = to_crs(box(300000, 4400000, 310000, 4410000), "EPSG:32652", "EPSG:4326")
    assert src.search(elsewhere) == []  # no item there: the API's spatial filter

    nginx.clear()
    [summary] = fetch(store, since=SINCE)
    assert (summary.source, summary.found, summary.new, summary.existing) == ("pg", len(want), len(want), 0)
    assert summary.cloudy == len(cloudy)
    assert nginx.requests() == []  # searching reads JSON from the API only, no raster
    scenes = store.scenes(site)
    assert [s.scene_id for s in scenes] == want
    s0 = scenes[0]
    assert s0.source == "stac" and s0.properties["collection"] == DEMO and s0.properties["provider"]
    assert s0.path == items[s0.scene_id]["assets"]["image"]["href"] and s0.path.startswith(nginx.url)
    assert s0.properties["stac_item_href"] == f"{api.url}/collections/{DEMO}/items/{s0.scene_id}"

    # a second run: nothing new
    [again] = fetch(store, since=SINCE)
    assert (again.found, again.new, again.existing) == (len(want), 0, len(want))

    # load the site: only the blocks under its window travel
    grid = site_grid(site, 10.0, crs=s0.crs)
    assert grid.width * grid.height / (s0.width * s0.height) == pytest.approx(0.10, abs=0.01)
    nginx.clear()
    stack = load_stack(scenes, grid)
    reqs = nginx.requests()
    files = {f"/demo/scenes/{Path(p).name}": Path(p) for s in local if s.scene_id in want
             for p in (s.path, s.mask_path)}
    assert {r.path for r in reqs} == set(files)  # the fetched scenes and their masks, nothing else
    assert all(r.method in ("GET", "HEAD") and r.status in (200, 206) for r in reqs)
    served = {p: sum(r.bytes for r in reqs if r.path == p) for p in files}
    sizes = {p: f.stat().st_size for p, f in files.items()}
    fraction = sum(served.values()) / sum(sizes.values())
    with capsys.disabled():
        print(f"\nsite grid {grid.width}x{grid.height} of {s0.width}x{s0.height} pixels "
              f"({grid.width * grid.height / (s0.width * s0.height):.1%}): nginx served {sum(served.values())} "
              f"of {sum(sizes.values())} bytes ({fraction:.1%}) in {len(reqs)} requests for {len(want)} dates")
    assert fraction < 0.25
    assert max(served[p] / sizes[p] for p in files) < 0.25
    # what came over HTTP is what the files hold
    twins = [s for s in local if s.scene_id in want[:2]]
    ref = load_stack(twins, grid)
    np.testing.assert_array_equal(stack["reflectance"].values[:2], ref["reflectance"].values)
    np.testing.assert_array_equal(stack["clear"].values[:2], ref["clear"].values)
    assert list(stack.attrs["scene_ids"]) == want


def test_cli_fetch_from_the_api_and_the_static_catalog(api, nginx, demo, tmp_path):
    local, items = demo
    world = Path(local[0].path).parents[1]
    home = tmp_path / "home"
    geojson = tmp_path / "base.geojson"
    geojson.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": mapping(_base_square(world))}))

    def run(*args: object) -> str:
        return run_cli(*args, home=home).stdout

    want = _expected(items, SINCE, MAX_CLOUD)
    n = len(want)
    c = len([iid for iid in _expected(items, SINCE, 101.0) if iid not in want])
    assert c > 0
    run("site", "add", "Base", "--geojson", geojson)
    run("source", "add", "pg", "--stac", api.url, "--collection", DEMO, "--max-cloud", MAX_CLOUD)
    out = run("fetch", "--since", f"{SINCE:%Y-%m-%d}")
    assert f"pg: {n} scene(s) found, {n} new, 0 already in the store, {c} skipped as cloudy" in out
    out = run("fetch", "--since", f"{SINCE:%Y-%m-%d}")
    assert f"pg: {n} scene(s) found, 0 new, {n} already in the store, {c} skipped as cloudy" in out
    # the demo's static catalog, over nginx: the same scenes, nothing new
    catalog = f"{nginx.url}/demo/stac/catalog.json"
    run("source", "add", "static", "--stac", catalog, "--max-cloud", MAX_CLOUD)
    out = run("fetch", "--source", "static", "--since", f"{SINCE:%Y-%m-%d}")
    assert f"static: {n} scene(s) found, 0 new, {n} already in the store, {c} skipped as cloudy" in out
    scenes = Store(f"sqlite:///{home / 'sitewatch.db'}").scenes()
    assert [s.scene_id for s in scenes] == want
    assert all(s.path.startswith(f"{nginx.url}/demo/scenes/") for s in scenes)


@pytest.mark.realdata
def test_fetch_real_oscd_items_from_the_api(api, nginx, oscd, demo, tmp_path):
    city, items, local = oscd
    world = Path(demo[0][0].path).parents[1]
    store = _store(tmp_path, world, api.url)
    city_poly = read_geometry(city / f"{OSCD_CITY}.geojson")
    store.add_site(make_site("Rennes", scale(city_poly, 0.8, 0.8)))  # inside the images
    store.add_source("oscd", "stac", {"url": api.url, "collections": [OSCD], "preset": "sentinel-2-l2a"})
    [summary] = fetch(store, ["oscd"])
    assert (summary.found, summary.new) == (2, 2)
    rennes, base = store.get_site("Rennes"), store.get_site("Base")
    scenes = store.scenes(rennes)
    assert [s.scene_id for s in scenes] == [i["id"] for i in items]
    assert store.scenes(base) == []
    assert [s.datetime.date().isoformat() for s in scenes] == [i["properties"]["datetime"][:10] for i in items]
    assert fetch(store, ["oscd"])[0].new == 0
    # the demo collection has nothing over Rennes
    assert StacSource(api.url, collections=[DEMO]).search(rennes.geometry) == []
    s = scenes[0]
    assert set(s.properties["band_hrefs"]) == {"B02", "B03", "B04", "B08", "B11", "B12"}
    assert all(h.startswith(f"{nginx.url}/oscd/") for h in s.properties["band_hrefs"].values())
    # read over HTTP (10 m and 20 m bands, EPSG:4326 files onto the site's UTM grid) = read from the files
    grid = site_grid(rennes, 10.0, crs=s.crs)
    assert grid.crs.startswith("EPSG:326")
    stack = load_stack(scenes, grid)
    twins = [item_to_scene(pystac.Item.from_dict(d), "sentinel-2-l2a") for d in local]
    ref = load_stack(twins, grid)
    np.testing.assert_array_equal(stack["reflectance"].values, ref["reflectance"].values)
    assert np.isfinite(stack["reflectance"].values).mean() > 0.9
    assert shape(items[0]["geometry"]).contains(rennes.geometry.centroid)


# -- a flaky or failing API --------------------------------------------------------------------------------


FAST = {"retry_delay": 0.01, "timeout": 2, "max_retries": 2, "page_size": 3}


def test_api_failures_are_retried_then_clear_errors_and_change_nothing(api, demo, tmp_path):
    local, items = demo
    world = Path(local[0].path).parents[1]
    want = _expected(items, SINCE, MAX_CLOUD)
    with fault_proxy(api.url) as proxy:
        store = _store(tmp_path, world, proxy.url, **FAST)
        # two HTTP 500s on the first search page, then the answers: retried, nothing lost
        proxy.faults = Faults("status", 2, status=500, match="/search")
        [summary] = fetch(store, since=SINCE)
        assert (summary.found, summary.new) == (len(want), len(want))
        assert proxy.statuses("/search")[:3] == [500, 500, 200]
        assert len(proxy.statuses("next:")) >= 2  # the pages after the first (page size 3)
        # a truncated body once: retried
        proxy.faults = Faults("truncate", 1, match="/search")
        assert fetch(store, since=SINCE)[0].existing == len(want)

        before = store.counts(), [s.scene_id for s in store.scenes()]
        earlier = datetime(2023, 6, 1, tzinfo=UTC)  # a longer range: there would be scenes to add
        cases = [
            (Faults("status", -1, status=500, match="next:"), r"failed \(HTTP 500\) after 3 attempt"),
            (Faults("status", -1, status=503, match="/search"), r"failed \(HTTP 503\) after 3 attempt"),
            (Faults("delay", -1, delay=3.0, match="next:"), r"failed \(no usable answer\) after 3 attempt.*imed out"),
            (Faults("truncate", -1, match="/search"), r"failed \(no usable answer\) after 3 attempt"),
            (Faults("status", -1, status=404, match="/search"), r"failed \(HTTP 404\) after 1 attempt"),
        ]
        for faults, message in cases:
            proxy.faults = faults
            with pytest.raises(SourceError, match=message) as err:
                fetch(store, since=earlier)
            assert f"STAC request to {proxy.url}/search" in str(err.value)
            assert (store.counts(), [s.scene_id for s in store.scenes()]) == before
        proxy.faults = Faults()
        [summary] = fetch(store, since=earlier)  # the server is back
        assert summary.new > 0 and summary.found == len(_expected(items, earlier, MAX_CLOUD))

