"""Cloud masks from any STAC catalog: the classification extension, mask roles, the user's clear values.

Catalogs, images and masks are written here (pystac, rasterio; seeded), plus the semi-real Rennes series of the
shared fixture when the real data are there.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
from shapely.geometry import box, mapping

from sitewatch.errors import ImageryError, SitewatchWarning, SourceError
from sitewatch.geo import to_crs
from sitewatch.masks import clear_from_scl
from sitewatch.settings import get_settings
from sitewatch.sources import get_source, qa_pixel_to_scl, read_scene_window, read_scl_window
from sitewatch.sources.presets import (
    QA_CLOUD,
    QA_FILL,
    MaskDecoding,
    classes_decoding,
    clear_from_qa_pixel,
    with_clear_values,
)
from sitewatch.stack import Grid
from sitewatch.store import Store
from sitewatch.types import Scene

from .cli_runner import run_cli
from .conftest import CRS, ORIGIN
from .stac_helpers import BANDS, save_catalog, scene_data, write_cog

SIZE = 64
WHEN = datetime(2023, 6, 1, 2, 15, tzinfo=UTC)
CLASSES = [
    {"value": 0, "name": "clear", "description": "clear"},
    {"value": 1, "name": "cloud", "description": "cloud (incl. thin haze edges)"},
    {"value": 2, "name": "cloud_shadow", "description": "cloud shadow"},
]
# Landsat C2 QA_PIXEL as Planetary Computer describes it (classification:bitfields)
LANDSAT_BITFIELDS = [
    {"name": "fill", "offset": 0, "length": 1,
     "classes": [{"name": "not_fill", "value": 0}, {"name": "fill", "value": 1}]},
    {"name": "dilated_cloud", "offset": 1, "length": 1,
     "classes": [{"name": "not_dilated", "value": 0}, {"name": "dilated", "value": 1}]},
    {"name": "cirrus", "offset": 2, "length": 1,
     "classes": [{"name": "not_cirrus", "value": 0}, {"name": "cirrus", "value": 1}]},
    {"name": "cloud", "offset": 3, "length": 1,
     "classes": [{"name": "not_cloud", "value": 0}, {"name": "cloud", "value": 1}]},
    {"name": "cloud_shadow", "offset": 4, "length": 1,
     "classes": [{"name": "not_shadow", "value": 0}, {"name": "shadow", "value": 1}]},
    {"name": "snow", "offset": 5, "length": 1,
     "classes": [{"name": "not_snow", "value": 0}, {"name": "snow", "value": 1}]},
    {"name": "clear", "offset": 6, "length": 1,
     "classes": [{"name": "not_clear", "value": 0}, {"name": "clear", "value": 1}]},
    {"name": "water", "offset": 7, "length": 1,
     "classes": [{"name": "not_water", "value": 0}, {"name": "water", "value": 1}]},
    {"name": "cloud_confidence", "offset": 8, "length": 2,
     "classes": [{"name": "not_set", "value": 0}, {"name": "low", "value": 1}, {"name": "medium", "value": 2},
                 {"name": "high", "value": 3}]},
]


def write_item(
    folder: Path, item_id: str, masks: dict[str, tuple[np.ndarray, dict[str, Any], list[str]]],
    when: datetime = WHEN, seed: int = 0,
) -> pystac.Item:
    """An item with a 6-band ``image`` COG and mask COGs (``masks``: key -> (array, extra fields, roles)),
    on a ``SIZE`` x ``SIZE`` 10 m grid at ``ORIGIN`` (EPSG:32652); masks without a nodata value."""
    img = write_cog(folder / item_id / "image.tif", scene_data(6, SIZE, seed), ORIGIN, crs=CRS, descriptions=BANDS)
    foot = to_crs(box(ORIGIN[0], ORIGIN[1] - SIZE * 10, ORIGIN[0] + SIZE * 10, ORIGIN[1]), CRS, "EPSG:4326")
    proj = {"proj:code": CRS, "proj:shape": [SIZE, SIZE],
            "proj:transform": [10.0, 0.0, ORIGIN[0], 0.0, -10.0, ORIGIN[1]]}
    item = pystac.Item(item_id, mapping(foot), list(foot.bounds), when, {**proj, "platform": "sentinel-2a"})
    item.add_asset("image", pystac.Asset(str(img), media_type=pystac.MediaType.COG, roles=["data"],
                                         extra_fields={"eo:bands": [{"name": b} for b in BANDS]}))
    for key, (arr, extra, roles) in masks.items():
        path = write_cog(folder / item_id / f"{key}.tif", arr[None], ORIGIN, crs=CRS, nodata=None)
        item.add_asset(key, pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=roles, extra_fields=extra))
    return item


def grid(pad: int = 0) -> Grid:
    """The items' own grid, widened by ``pad`` pixels on every side (off the rasters: no data)."""
    return Grid(CRS, (10.0, 0.0, ORIGIN[0] - 10 * pad, 0.0, -10.0, ORIGIN[1] + 10 * pad), SIZE + 2 * pad,
                SIZE + 2 * pad)


def search(cat: Path, **options: Any) -> list[Scene]:
    return get_source("stac", url=str(cat), **options).search(list(to_crs(
        box(ORIGIN[0], ORIGIN[1] - SIZE * 10, ORIGIN[0] + SIZE * 10, ORIGIN[1]), CRS, "EPSG:4326").bounds))


def mask_values(seed: int, high: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, (SIZE, SIZE)).astype(np.uint8)


@pytest.mark.parametrize("where", ["asset", "raster:bands", "bands"])
def test_classification_classes_say_what_is_clear(tmp_path, where):
    """The semi-real series' mask: 0 clear, 1 cloud, 2 cloud shadow, no nodata value (0 is a class)."""
    m = mask_values(1, 3)
    extra = ({"classification:classes": CLASSES} if where == "asset"
             else {where: [{"classification:classes": CLASSES, "data_type": "uint8"}]})
    cat = save_catalog([write_item(tmp_path / "src", "a", {"mask": (m, extra, ["cloud", "cloud-shadow"])})],
                       tmp_path / "stac", "masks")
    (scene,) = search(cat)
    assert scene.properties["mask_kind"] == "classes" and scene.mask_path and scene.mask_path.endswith("mask.tif")
    scl = read_scl_window(scene, grid())
    np.testing.assert_array_equal(clear_from_scl(scl), m == 0)
    assert (scl[m == 1] == 9).all() and (scl[m == 2] == 3).all()
    refl, clear = read_scene_window(scene, BANDS, grid())
    np.testing.assert_array_equal(clear, m == 0)
    wide = read_scl_window(scene, grid(pad=4))  # off the raster: no data, not "clear" (0 is a class here)
    assert (wide[:4] == 0).all() and (wide[:, :4] == 0).all()
    np.testing.assert_array_equal(wide[4:-4, 4:-4], scl)


def test_nodata_class_flag_and_raster_nodata_are_no_data(tmp_path):
    m = mask_values(2, 4)
    m[:5] = 254
    classes = [*CLASSES, {"value": 3, "name": "outside", "nodata": True}]
    extra = {"classification:classes": classes, "raster:bands": [{"nodata": 254}]}
    cat = save_catalog([write_item(tmp_path / "src", "a", {"mask": (m, extra, ["cloud"])})], tmp_path / "stac", "x")
    (scene,) = search(cat)
    scl = read_scl_window(scene, grid())
    assert (scl[m == 3] == 0).all() and (scl[m == 254] == 0).all()
    np.testing.assert_array_equal(clear_from_scl(scl), m == 0)


def test_an_unknown_class_name_is_not_clear_and_said(tmp_path):
    m = mask_values(3, 5)  # 3: a class sitewatch cannot name, 4: a value no class lists
    classes = [*CLASSES, {"value": 3, "name": "burnt_area"}]
    cat = save_catalog([write_item(tmp_path / "src", "a", {"mask": (m, {"classification:classes": classes}, [])})],
                       tmp_path / "stac", "x")
    with pytest.warns(SitewatchWarning, match="burnt_area.*not clear.*--clear-values"):
        (scene,) = search(cat)
    scl = read_scl_window(scene, grid())
    np.testing.assert_array_equal(clear_from_scl(scl), m == 0)
    assert (scl[(m == 3) | (m == 4)] == 1).all()
    # ... unless the user says otherwise
    (scene,) = search(cat, clear_values=[0, 3])
    np.testing.assert_array_equal(clear_from_scl(read_scl_window(scene, grid())), np.isin(m, [0, 3]))


def test_masks_known_by_their_roles_only_combine(tmp_path):
    cloud, shadow, valid = mask_values(4, 2) * 255, mask_values(5, 2), mask_values(6, 8)
    masks = {"clouds": (cloud, {}, ["cloud"]), "shadows": (shadow, {}, ["cloud-shadow"]),
             "valid": (valid, {}, ["data-mask"])}
    cat = save_catalog([write_item(tmp_path / "src", "a", masks)], tmp_path / "stac", "x")
    (scene,) = search(cat)
    assert [layer["asset"] for layer in scene.properties["mask_layers"]] == ["shadows", "valid"]
    assert scene.bands == BANDS  # mask assets are not taken for bands
    scl = read_scl_window(scene, grid())
    np.testing.assert_array_equal(clear_from_scl(scl), (cloud == 0) & (shadow == 0) & (valid != 0))
    assert (scl[valid == 0] == 0).all()
    assert (scl[(valid != 0) & (cloud != 0)] == 9).all()
    assert (scl[(valid != 0) & (cloud == 0) & (shadow != 0)] == 3).all()


def test_a_data_mask_alone_is_no_cloud_mask(tmp_path):
    cat = save_catalog([write_item(tmp_path / "src", "a", {"valid": (mask_values(6, 2), {}, ["data-mask"])})],
                       tmp_path / "stac", "x")
    (scene,) = search(cat)
    assert scene.mask_path is None and read_scl_window(scene, grid()) is None


def test_landsat_style_bitfields_read_as_qa_pixel(tmp_path):
    qa = np.random.default_rng(7).integers(0, 1 << 10, (SIZE, SIZE)).astype(np.uint16)
    dec = MaskDecoding("bitfields", bitfields=tuple(LANDSAT_BITFIELDS))
    np.testing.assert_array_equal(dec.to_scl(qa.astype(np.int32)), qa_pixel_to_scl(qa))
    extra = {"classification:bitfields": LANDSAT_BITFIELDS}
    cat = save_catalog([write_item(tmp_path / "src", "a", {"qa": (qa, extra, ["cloud"])})], tmp_path / "stac", "x")
    (scene,) = search(cat)
    assert scene.properties["mask_kind"] == "bitfields"
    np.testing.assert_array_equal(clear_from_scl(read_scl_window(scene, grid())), clear_from_qa_pixel(qa))


def test_sentinel2_scl_described_by_its_classes_reads_as_scl():
    names = ["no_data", "saturated_or_defective", "dark_area_pixels", "cloud_shadows", "vegetation",
             "not_vegetated", "water", "unclassified", "cloud_medium_probability", "cloud_high_probability",
             "thin_cirrus", "snow"]
    dec, unknown = classes_decoding([{"value": i, "name": n} for i, n in enumerate(names)])
    assert not unknown and dict(dec.classes) == {i: i for i in range(12)}


def test_clear_values_override_keeps_no_data_and_cloud_classes():
    dec = with_clear_values(MaskDecoding("scl"), [0, 4])
    codes = dec.to_scl(np.arange(-1, 13, dtype=np.int32))
    assert codes.tolist() == [0, 0, 1, 1, 3, 4, 1, 1, 1, 8, 9, 10, 11, 1]
    qa = with_clear_values(MaskDecoding("qa_pixel"), [QA_CLOUD])
    assert qa.nodata == QA_FILL and qa.to_scl(np.array([QA_CLOUD, 0])).tolist() == [4, 1]


def test_masks_of_scenes_stored_by_older_runs_still_read(tmp_path):
    assert MaskDecoding.from_properties({}) == MaskDecoding("scl")
    qa = np.full((SIZE, SIZE), 1 << 6, np.uint16)
    qa[:8] = QA_FILL
    qa[8:16] = 1 << 3
    path = write_cog(tmp_path / "qa.tif", qa[None], ORIGIN, crs=CRS, nodata=None)
    g = grid()
    old = Scene("old", str(path), WHEN, CRS, g.transform, SIZE, SIZE, (0, 0, 1, 1), BANDS, mask_path=str(path),
                properties={"mask_kind": "qa_pixel", "mask_nodata": 1})
    np.testing.assert_array_equal(read_scl_window(old, g), qa_pixel_to_scl(qa))
    bad = Scene("bad", str(path), WHEN, CRS, g.transform, SIZE, SIZE, (0, 0, 1, 1), BANDS, mask_path=str(path),
                properties={"mask_kind": "probability"})
    with pytest.raises(ImageryError, match="unknown mask kind 'probability'"):
        read_scl_window(bad, g)


def test_mask_asset_and_clear_values_from_the_command_line_reach_fetch(tmp_path):
    """`source add --mask-asset qa --clear-values 0,4,5` is stored, and `fetch` stores scenes decoded so."""
    qa = mask_values(8, 8)
    masks = {"qa": (qa, {}, []), "mask": (mask_values(9, 3), {"classification:classes": CLASSES}, ["cloud"])}
    cat = save_catalog([write_item(tmp_path / "src", "a", masks)], tmp_path / "stac", "x")
    home = tmp_path / "home"
    site = tmp_path / "site.geojson"
    site.write_text(json.dumps(mapping(to_crs(box(ORIGIN[0] + 20, ORIGIN[1] - 300, ORIGIN[0] + 300, ORIGIN[1] - 20),
                                              CRS, "EPSG:4326"))))
    def cli(*args: str) -> Any:
        return run_cli(*args, home=home, ok=False)

    assert cli("site", "add", "Base", "--geojson", str(site)).exit_code == 0
    r = cli("source", "add", "bad", "--stac", str(cat), "--clear-values", "zero,4")
    assert isinstance(r.exception, ValueError) and "like 0,4,5" in str(r.exception)
    r = cli("source", "add", "arch", "--stac", str(cat), "--mask-asset", "qa", "--clear-values", "5, 0,4")
    assert r.exit_code == 0, r.output
    store = Store(get_settings(home=home).database_url)
    kind, options = store.sources()["arch"]
    assert options["mask_asset"] == "qa" and options["clear_values"] == [0, 4, 5] and "bad" not in store.sources()
    r = cli("fetch")
    assert r.exit_code == 0 and "1 new" in r.output, r.output
    (scene,) = store.scenes()
    assert scene.mask_path and scene.mask_path.endswith("qa.tif") and "mask_layers" not in scene.properties
    np.testing.assert_array_equal(clear_from_scl(read_scl_window(scene, grid())), np.isin(qa, [0, 4, 5]))
    with pytest.raises(SourceError, match="no asset 'cloudmask'.*--mask-asset"):
        search(cat, mask_asset="cloudmask")


# -- the semi-real series of the shared fixture ------------------------------------------------------------

def test_semireal_series_masks_read_exactly(semireal_rennes):
    rennes = semireal_rennes
    """Through the library as a user would: the series' catalog, then every scene's mask on its own grid."""
    scenes = get_source("stac", url=str(rennes / "scenes" / "catalog.json")).search([-180, -90, 180, 90])
    truth = json.loads((rennes / "truth.json").read_text())
    assert [f"{s.datetime:%Y-%m-%d}" for s in scenes] == truth["dates"]
    fractions = []
    for s in scenes:
        with rasterio.open(rennes / "scenes" / f"{s.datetime:%Y-%m-%d}_mask.tif") as src:
            exact = src.read(1) == 0
            g = Grid(src.crs.to_string(), tuple(src.transform)[:6], src.width, src.height)
        clear = clear_from_scl(read_scl_window(s, g))
        np.testing.assert_array_equal(clear, exact)
        fractions.append(float(clear.mean()))
    assert sum(f >= 0.2 for f in fractions) >= 8  # "no date has 20 % clear pixels" was the bug
    assert min(fractions) == 0.0  # the full-cloud date
