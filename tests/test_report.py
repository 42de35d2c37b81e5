"""Tests for the static HTML report (sitewatch.report), on a small synthetic stack with known changes."""

from __future__ import annotations

import dataclasses
import html
import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from PIL import Image
from pyproj import CRS
from rasterio.transform import from_origin
from shapely.geometry import box

from sitewatch.geo import WGS84, to_crs
from sitewatch.report import describe_activity, write_report
from sitewatch.types import Change, Scene, Site, SiteResult

CRS_WKT = CRS.from_epsg(32652).to_wkt()
X0, Y0, RES, SIZE = 300_000.0, 4_200_000.0, 10.0, 100
TRANSFORM = tuple(from_origin(X0, Y0, RES, RES))[:6]
BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
DATES = tuple(datetime(2023, m, 10, 2, 15, 31, tzinfo=UTC) for m in (1, 3, 5, 7))
SQUARE = (40, 60, 40, 60)  # rows, cols of change 1: bright from DATES[2]
SMALL = (10, 20, 10, 25)  # rows, cols of change 2: bright from DATES[3]; DATES[2] is cloudy over it
CLOUD = (0, 40, 0, 40)
ROLES = ("before", "first", "latest")


def iso(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def pixel_box_wgs84(r0: int, r1: int, c0: int, c1: int) -> Any:
    """The WGS84 polygon of a block of pixels of the test grid."""
    return to_crs(box(X0 + c0 * RES, Y0 - r1 * RES, X0 + c1 * RES, Y0 - r0 * RES), CRS_WKT, WGS84)


def make_stack() -> xr.Dataset:
    rng = np.random.default_rng(0)
    refl = rng.uniform(0.04, 0.10, size=(len(DATES), len(BANDS), SIZE, SIZE)).astype(np.float32)
    clear = np.ones((len(DATES), SIZE, SIZE), dtype=bool)
    r0, r1, c0, c1 = SQUARE
    refl[2:, :, r0:r1, c0:c1] = 0.35
    r0, r1, c0, c1 = SMALL
    refl[3:, :, r0:r1, c0:c1] = 0.40
    r0, r1, c0, c1 = CLOUD
    refl[2, :, r0:r1, c0:c1] = 0.8
    clear[2, r0:r1, c0:c1] = False
    refl[1, :, 90:, 90:] = np.nan  # a no-data corner
    clear[1, 90:, 90:] = False
    times = np.array([np.datetime64(d.replace(tzinfo=None), "ns") for d in DATES])
    return xr.Dataset(
        {
            "reflectance": (("time", "band", "y", "x"), refl),
            "clear": (("time", "y", "x"), clear),
        },
        coords={
            "time": times,
            "band": list(BANDS),
            "y": Y0 - RES * (np.arange(SIZE) + 0.5),
            "x": X0 + RES * (np.arange(SIZE) + 0.5),
        },
        attrs={"crs": CRS_WKT, "transform": TRANSFORM},
    )


def make_scenes() -> tuple[Scene, ...]:
    bounds = (X0, Y0 - SIZE * RES, X0 + SIZE * RES, Y0)
    return tuple(
        Scene(
            scene_id=f"S2B_MSIL2A_{d:%Y%m%dT%H%M%S}_T52SCG",
            path=f"/data/s2/S2B_{d:%Y%m%d}.tif",
            datetime=d,
            crs=CRS_WKT,
            transform=TRANSFORM,
            width=SIZE,
            height=SIZE,
            bounds=bounds,
            bands=BANDS,
            platform="sentinel-2b",
            source="local",
        )
        for d in DATES
    )


def make_change(change_id: str, pixels: tuple[int, int, int, int], after: int | None, before: int) -> Change:
    r0, r1, c0, c1 = pixels
    return Change(
        change_id=change_id,
        site="Test Yard",
        geometry=pixel_box_wgs84(*pixels),
        area_m2=(r1 - r0) * (c1 - c0) * RES * RES,
        first_seen_after=DATES[after] if after is not None else None,
        first_seen_before=DATES[before],
        last_seen=DATES[-1],
        status="confirmed",
        n_observations=len(DATES) - before,
        score=0.93,
        confidence=0.8,
        method="pairwise:ndbi",
        provenance={
            "scenes": [f"S2B_MSIL2A_{d:%Y%m%dT%H%M%S}_T52SCG" for d in DATES[before:]],
            "dates": list(DATES[before:]),
            "detector": "ndbi",
            "params": {"threshold": np.float32(0.25)},
        },
    )


def make_result(changes: tuple[Change, ...] | None = None, stack: Any = "default", **kw: Any) -> SiteResult:
    if changes is None:
        changes = (make_change("chg-0002", SMALL, 2, 3), make_change("chg-0001", SQUARE, 1, 2))
    area = [sum(c.area_m2 for c in changes if c.first_seen_before <= d) for d in DATES]
    fields: dict[str, Any] = dict(
        site=Site(
            name="Test Yard",
            geometry=pixel_box_wgs84(5, 95, 5, 95),
            aliases=("Yard 7", "Objekt <B>"),
            notes="Dry dock & slipway, watched since 2022.",
            added_by="analyst1",
        ),
        changes=changes,
        dates=DATES,
        clear_fraction=(1.0, 0.99, 0.84, 1.0),
        changed_area_m2=tuple(area),
        scenes=make_scenes(),
        method="pairwise:ndbi",
        params={"threshold": 0.25, "min_area_m2": 200},
        activity="active",
        stack=make_stack() if isinstance(stack, str) else stack,
        version="0.1.0",
    )
    fields.update(kw)
    return SiteResult(**fields)


def provenance_json(page: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="provenance">(.*?)</script>', page, re.S)
    assert m, "no provenance JSON block"
    return json.loads(m.group(1))


def chip_index(prov: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The change chips of a page by (change id, composite, role)."""
    return {(c["change_id"], c["composite"], c["role"]): c for c in prov["chips"] if c["role"] != "overview"}


def load(out: Path, chip: dict[str, Any]) -> np.ndarray:
    with Image.open(out / chip["file"]) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        return np.asarray(im).astype(int)


def inside(chip: dict[str, Any], img: np.ndarray, pixels: tuple[int, int, int, int], inset: int = 3) -> Any:
    """The slice of a chip image inside a block of stack pixels (minus ``inset`` pixels each side)."""
    r0, _, c0, c1 = chip["window"]
    scale = img.shape[1] / (c1 - c0)
    pr0, pr1, pc0, pc1 = pixels
    return np.s_[
        int((pr0 - r0 + inset) * scale) : int((pr1 - r0 - inset) * scale),
        int((pc0 - c0 + inset) * scale) : int((pc1 - c0 - inset) * scale),
    ]


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("report")
    index = write_report(make_result(), out)
    page = index.read_text("utf-8")
    return out, page, provenance_json(page)


def test_index_written_with_summary(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    out, page, _ = rendered
    assert (out / "index.html").is_file()
    assert "<h1>Test Yard</h1>" in page
    assert "Yard 7" in page and "Objekt &lt;B&gt;" in page and "<B>" not in page
    assert "Dry dock &amp; slipway" in page
    assert "active" in page and "first seen in the last 6 months" in page
    assert "2023-01-10T02:15:31Z" in page and "2023-07-10T02:15:31Z" in page  # date range, ISO UTC


def test_each_change_listed_in_first_seen_order(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    _, page, _ = rendered
    assert page.index("chg-0001") < page.index("chg-0002")  # sorted by first_seen_before
    assert "40,000" in page and "15,000" in page  # areas in m²
    assert "2023-03-10T02:15:31Z &ndash; 2023-05-10T02:15:31Z" in page  # chg-0001 first-seen interval
    assert "2023-05-10T02:15:31Z &ndash; 2023-07-10T02:15:31Z" in page  # chg-0002


def test_provenance_json_block(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    _, _, prov = rendered
    assert prov["sitewatch_version"] == "0.1.0"
    assert prov["method"] == "pairwise:ndbi" and prov["params"]["threshold"] == 0.25
    ids = [s["scene_id"] for s in prov["scenes"]]
    assert ids == [s.scene_id for s in make_scenes()]
    assert prov["scenes"][0]["datetime"] == "2023-01-10T02:15:31Z"
    assert prov["scenes"][0]["path"] == "/data/s2/S2B_20230110.tif"
    feats = prov["changes"]["features"]
    assert [f["id"] for f in feats] == ["chg-0001", "chg-0002"]
    assert feats[0]["properties"]["provenance"]["detector"] == "ndbi"
    assert feats[0]["properties"]["provenance"]["params"]["threshold"] == 0.25
    assert feats[0]["properties"]["first_seen_after"] == "2023-03-10T02:15:31Z"
    assert prov["site"]["aliases"] == ["Yard 7", "Objekt <B>"]


def test_provenance_rendered_as_tables(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    _, page, _ = rendered
    start = page.index('id="provenance-section"')
    section = page[start : page.index("</section>", start)]  # the tables, not the JSON block after them
    for scene in make_scenes():
        assert scene.scene_id in section and scene.path in section
    assert "sentinel-2b" in section and "min_area_m2" in section
    assert '"ndbi"' in html.unescape(section) and '"ndbi"' not in section  # a JSON value, quotes escaped


def test_links_are_local_and_exist(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    out, page, _ = rendered
    assert not re.search(r"https?://", page), "the page must not reference the network"
    parser = _Collector()
    parser.feed(page)
    images = [link for link in parser.links if link.endswith(".png")]
    assert "timeline.png" in images and "chips/overview.png" in images
    for link in parser.links:
        assert link.startswith("#") or (out / link).is_file(), link


def test_chips_show_the_change(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    out, _, prov = rendered
    chips = chip_index(prov)
    before, first = chips["chg-0001", "true-colour", "before"], chips["chg-0001", "true-colour", "first"]
    assert before["time"] == "2023-03-10T02:15:31Z" and first["time"] == "2023-05-10T02:15:31Z"
    assert before["stretch"] == first["stretch"]  # one stretch for the looks at a change
    assert len(set(map(tuple, before["stretch"].values()))) == 1  # ... and for the three bands
    imgs = {role: load(out, chip) for role, chip in (("before", before), ("first", first))}
    assert min(imgs["before"].shape[:2]) >= 200  # upscaled to ~256 px
    r0, r1, c0, c1 = before["window"]
    assert r1 - r0 >= 48 and c1 - c0 >= 48
    assert r0 <= SQUARE[0] - 20 and r1 >= SQUARE[1] + 20  # a margin of >= 200 m
    scale = imgs["before"].shape[1] / (c1 - c0)
    inner = inside(before, imgs["before"], SQUARE)
    assert imgs["first"][inner].mean() > imgs["before"][inner].mean() + 80
    magenta = (imgs["first"] == (255, 0, 255)).all(axis=-1)
    assert magenta.sum() > 100  # the outline is drawn
    ys, xs = np.nonzero(magenta)  # ... around the square
    assert abs(xs.min() / scale + c0 - SQUARE[2]) < 1.5 and abs(ys.max() / scale + r0 - SQUARE[1]) < 1.5


def test_three_looks_per_change(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    out, page, prov = rendered
    chips = chip_index(prov)
    # chg-0001: first seen DATES[2]; the latest mostly clear look is the last date
    looks = [chips["chg-0001", "true-colour", role] for role in ROLES]
    assert [c["time"] for c in looks] == ["2023-03-10T02:15:31Z", "2023-05-10T02:15:31Z", "2023-07-10T02:15:31Z"]
    assert [c["file"] for c in looks] == [f"chips/01-chg-0001-{r}.png" for r in ROLES]
    assert looks[2]["scene_ids"] == ["S2B_MSIL2A_20230710T021531_T52SCG"]
    assert len({json.dumps(c["stretch"]) for c in looks}) == 1  # one stretch for the three dates
    for change in make_result().changes:  # before < first == first_seen_before <= latest
        got = {r: chips.get((change.change_id, "true-colour", r)) for r in ROLES}
        times = {r: datetime.fromisoformat(c["time"]) for r, c in got.items() if c}
        assert times["before"] < times["first"] == change.first_seen_before
        assert times.get("latest", times["first"]) >= times["first"]
    # chg-0002 is first seen on the last date: no later look, and the page says why
    assert ("chg-0002", "true-colour", "latest") not in chips
    assert "No latest image: there is no image after the first-seen one, which is the latest look." in page
    before, latest = looks[0], looks[2]
    img_before, img_latest = load(out, before), load(out, latest)
    inner = inside(before, img_before, SQUARE)
    assert np.abs(img_latest[inner] - img_before[inner]).mean() > 80  # the latest look shows the change
    section = page[page.index('id="change-1"') : page.index('id="change-2"')]
    figures = re.findall(r'<img src="(chips/[^"]+)"', section)
    expected = [f"chips/01-chg-0001-{r}.png" for r in ROLES] + [f"chips/01-chg-0001-swir-{r}.png" for r in ROLES]
    assert figures == expected  # true colour then SWIR, each before | first seen | latest
    assert "<strong>Latest</strong> 2023-07-10T02:15:31Z<br>scene S2B_MSIL2A_20230710T021531_T52SCG" in section


def test_latest_look_of_a_growing_change(tmp_path: Path) -> None:
    """A pile that starts small and grows to its outline: the latest look shows what the first one hides."""
    stack = make_stack()
    r0, r1, c0, c1 = SQUARE
    refl = stack["reflectance"].values
    refl[:, :, r0:r1, c0:c1] = np.random.default_rng(1).uniform(0.04, 0.10, size=(4, len(BANDS), 20, 20))
    refl[1:, :, r0 + 8 : r0 + 12, c0 + 8 : c0 + 12] = 0.35  # 4 x 4 px at DATES[1] ...
    refl[2:, :, r0 + 5 : r0 + 15, c0 + 5 : c0 + 15] = 0.35  # ... 10 x 10 px at DATES[2] ...
    refl[3:, :, r0:r1, c0:c1] = 0.35  # ... and the whole outline at DATES[3]
    pile = make_change("pile", SQUARE, 0, 1)
    page = write_report(make_result(changes=(pile,), stack=stack), tmp_path).read_text("utf-8")
    chips = chip_index(provenance_json(page))
    before, first, latest = (chips["pile", "true-colour", r] for r in ROLES)
    assert (before["time"], first["time"], latest["time"]) == tuple(iso(DATES[i]) for i in (0, 1, 3))
    imgs = [load(tmp_path, c) for c in (before, first, latest)]
    area = inside(before, imgs[0], (r0, r1, c0, c1), inset=2)  # inside the outline ...
    core = inside(before, imgs[0], (r0 + 7, r1 - 7, c0 + 7, c1 - 7), inset=0)  # ... and the centre
    changed = [np.abs(img[area] - imgs[0][area]).mean() for img in imgs[1:]]
    assert changed[0] < 40 < 80 < changed[1]  # the first look hardly differs, the latest clearly does
    assert np.abs(imgs[1][core] - imgs[0][core]).mean() > 80  # the first look does show the small start

    # a cloudy last date over the pile: the latest look is the last mostly clear one, and it says so
    stack["clear"].values[3, 20:80, 20:80] = False
    stack["reflectance"].values[3, :, 20:80, 20:80] = 0.8
    page = write_report(make_result(changes=(pile,), stack=stack), tmp_path / "cloudy").read_text("utf-8")
    chips = chip_index(provenance_json(page))
    assert chips["pile", "true-colour", "latest"]["time"] == iso(DATES[2])
    assert f"latest mostly clear image; last seen {iso(DATES[3])}" in page


def test_swir_row(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    out, page, prov = rendered
    chips = chip_index(prov)
    for cid, roles in (("chg-0001", ROLES), ("chg-0002", ROLES[:2])):
        swir = [chips[cid, "swir", r] for r in roles]
        true = [chips[cid, "true-colour", r] for r in roles]
        assert [c["time"] for c in swir] == [c["time"] for c in true]  # the same dates as true colour
        assert all(c["bands"] == ["B12", "B08", "B04"] for c in swir)
        assert all(set(c["stretch"]) == {"B12", "B08", "B04"} for c in swir)
        assert len({json.dumps(c["stretch"]) for c in swir}) == 1  # one stretch per band, shared by the dates
        assert all("one range per band" in c["stretch_method"] for c in swir)
        n = "01" if cid == "chg-0001" else "02"
        assert [c["file"] for c in swir] == [f"chips/{n}-{cid}-swir-{r}.png" for r in roles]
        img = load(out, swir[-1])
        assert (img == (255, 0, 255)).all(axis=-1).sum() > 100  # with the outline
    assert "SWIR false colour</strong> (R, G, B = B12, B08, B04)" in page


def test_swir_row_reveals_a_green_painted_roof(tmp_path: Path) -> None:
    """Vegetation-coloured in true colour, the roof is bright in B12 and dark in B08: not green in SWIR."""
    stack = make_stack()
    veg = {"B02": 0.03, "B03": 0.06, "B04": 0.03, "B08": 0.35, "B11": 0.15, "B12": 0.07}
    roof = {**veg, "B08": 0.12, "B11": 0.30, "B12": 0.25}
    noise = np.random.default_rng(2).normal(1.0, 0.05, size=stack["reflectance"].shape).astype(np.float32)
    r0, r1, c0, c1 = SQUARE
    for k, band in enumerate(BANDS):
        stack["reflectance"].values[:, k] = veg[band] * noise[:, k]
        stack["reflectance"].values[2:, k, r0:r1, c0:c1] = roof[band] * noise[2:, k, r0:r1, c0:c1]
    stack["clear"].values[:] = True
    change = make_change("green-roof", SQUARE, 1, 2)
    page = write_report(make_result(changes=(change,), stack=stack), tmp_path).read_text("utf-8")
    chips = chip_index(provenance_json(page))
    img = {
        (comp, r): load(tmp_path, chips["green-roof", comp, r]) for comp in ("true-colour", "swir") for r in ROLES[:2]
    }
    roof_px = inside(chips["green-roof", "swir", "before"], img["swir", "before"], SQUARE)
    colour = {r: img["true-colour", r][roof_px].reshape(-1, 3).mean(axis=0) for r in ("before", "first")}
    assert np.abs(colour["first"] - colour["before"]).max() < 10  # the same colour in true colour
    red, green = (img["swir", "first"][roof_px][..., k].mean() for k in (0, 1))
    assert red > green + 100  # bright in B12, dark in B08
    red, green = (img["swir", "before"][roof_px][..., k].mean() for k in (0, 1))
    assert green > red + 100  # vegetation before


@pytest.mark.parametrize("drop", ["B12", "B08"])
def test_swir_row_skipped_without_its_bands(tmp_path: Path, drop: str) -> None:
    stack = make_stack()
    stack = stack.sel(band=[b for b in BANDS if b != drop])
    page = write_report(make_result(stack=stack), tmp_path).read_text("utf-8")
    prov = provenance_json(page)
    assert {c["composite"] for c in prov["chips"]} == {"true-colour"}
    assert not list(tmp_path.glob("chips/*swir*"))
    assert f"No SWIR false colour row: the image stack has no band {drop}." in page
    assert (tmp_path / "chips/01-chg-0001-latest.png").is_file()


def test_swir_row_skipped_when_a_band_has_no_data(tmp_path: Path) -> None:
    stack = make_stack()
    stack["reflectance"].loc[{"band": "B12"}] = np.nan
    page = write_report(make_result(stack=stack), tmp_path).read_text("utf-8")
    assert "No SWIR false colour row: band B12 has no data here." in page
    assert (tmp_path / "chips/01-chg-0001-first.png").is_file()


def test_provenance_lists_every_chip(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    out, _, prov = rendered
    files = {c["file"] for c in prov["chips"]}
    assert files == {f"chips/{p.name}" for p in (out / "chips").glob("*.png")}  # every chip, once
    assert len(files) == len(prov["chips"]) == 1 + 6 + 4  # overview; chg-0001: 2 x 3; chg-0002: 2 x 2
    scene_ids = {s.scene_id for s in make_scenes()}
    for chip in prov["chips"]:
        assert chip["time"] in {iso(d) for d in DATES}
        assert chip["scene_ids"] and set(chip["scene_ids"]) <= scene_ids
        assert chip["scene_ids"] == [f"S2B_MSIL2A_{chip['time'][:19].replace('-', '').replace(':', '')}_T52SCG"]
        r0, r1, c0, c1 = chip["window"]
        assert 0 <= r0 < r1 <= SIZE and 0 <= c0 < c1 <= SIZE
        xmin, ymin, xmax, ymax = chip["bounds"]
        assert (xmin, ymax, xmax, ymin) == (X0 + c0 * RES, Y0 - r0 * RES, X0 + c1 * RES, Y0 - r1 * RES)
        west, south, east, north = chip["bounds_wgs84"]
        assert 120 < west < east < 130 and 30 < south < north < 40
        assert sorted(chip["stretch"]) == sorted(chip["bands"])
        assert all(lo < hi for lo, hi in chip["stretch"].values())
        assert chip["stretch_method"].startswith("2-98 % percentile stretch")
        assert chip["composite"] in {"true-colour", "swir"} and chip["role"] in {"overview", *ROLES}


def test_before_chip_falls_back_to_nearest_clear_image(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    _, page, prov = rendered
    chips = chip_index(prov)
    # chg-0002 is dated after DATES[2], but DATES[2] is cloudy over it: use DATES[1], and say so.
    assert chips["chg-0002", "true-colour", "before"]["time"] == "2023-03-10T02:15:31Z"
    assert chips["chg-0002", "true-colour", "first"]["time"] == "2023-07-10T02:15:31Z"
    assert "nearest usable image to 2023-05-10T02:15:31Z" in page


def test_overview_and_timeline(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    out, _, prov = rendered
    overview = next(c for c in prov["chips"] if c["role"] == "overview")
    assert overview["time"] == "2023-07-10T02:15:31Z"  # the last clear date
    with Image.open(out / "chips/overview.png") as im:
        assert max(im.size) >= 400
        assert ((np.asarray(im) == (255, 0, 255)).all(axis=-1)).sum() > 100
    with Image.open(out / "timeline.png") as im:
        assert im.format == "PNG" and im.size[0] > 400


def test_no_changes(tmp_path: Path) -> None:
    result = make_result(changes=(), activity="dormant")
    page = write_report(result, tmp_path).read_text("utf-8")
    assert "No change detected" in page
    assert provenance_json(page)["changes"]["features"] == []
    assert "No change was detected between 2023-01-10 and 2023-07-10." in page
    assert (tmp_path / "chips/overview.png").is_file() and (tmp_path / "timeline.png").is_file()


def test_without_stack(tmp_path: Path) -> None:
    page = write_report(make_result(stack=None), tmp_path / "nested" / "out").read_text("utf-8")
    assert "No image stack" in page
    assert "chg-0001" in page and "chg-0002" in page
    assert not (tmp_path / "nested/out/chips").exists()
    assert provenance_json(page)["chips"] == [] and provenance_json(page)["stack"] is None


def test_no_dates_and_no_data(tmp_path: Path) -> None:
    result = make_result(
        changes=(), stack=None, dates=(), clear_fraction=(), changed_area_m2=(), scenes=(), activity="no data"
    )
    page = write_report(result, tmp_path).read_text("utf-8")
    assert "no data" in page and "cannot be assessed" in page and "No dates to plot" in page


def test_change_outside_stack_and_no_before_image(tmp_path: Path) -> None:
    far = dataclasses.replace(make_change("far-away", SQUARE, 1, 2), geometry=pixel_box_wgs84(500, 520, 0, 20))
    first = make_change("from-start", SQUARE, None, 0)
    page = write_report(make_result(changes=(far, first)), tmp_path).read_text("utf-8")
    assert "outside the image stack" in page
    assert "No before image: it is in the first image." in page
    assert (tmp_path / "chips/01-from-start-first.png").is_file()
    assert (tmp_path / "chips/01-from-start-latest.png").is_file()


def test_text_is_escaped(tmp_path: Path) -> None:
    evil = '<img src=x onerror="alert(1)"> & </script>'
    base = make_result()
    change = dataclasses.replace(base.changes[1], change_id=evil, provenance={"note": evil})
    result = dataclasses.replace(base, site=dataclasses.replace(base.site, name=evil), changes=(change,))
    page = write_report(result, tmp_path).read_text("utf-8")
    assert evil not in page and "<img src=x" not in page
    assert page.count("</script>") == 1
    prov = provenance_json(page)
    assert prov["site"]["name"] == evil and prov["changes"]["features"][0]["properties"]["provenance"]["note"] == evil
    assert all(Path(tmp_path, c["file"]).is_file() for c in prov["chips"])


def test_describe_activity() -> None:
    one = make_result(changes=(make_change("a", SQUARE, 1, 2),))
    assert describe_activity(one).startswith("The only detected change was first seen in the last 6 months")
    old = (make_change("a", SQUARE, None, 0), make_change("b", SMALL, None, 0))
    later = DATES + (datetime(2024, 6, 1, tzinfo=UTC),)
    text = describe_activity(make_result(changes=old, dates=later, clear_fraction=(1.0,) * 5))
    assert text.startswith(
        "None of the 2 detected changes was first seen in the last 6 months of the series (since 2023-12-01)"
    )
    # as in the pipeline, the series ends at its last clear-enough date: a cloudy last date does not count
    text = describe_activity(make_result(changes=old, dates=later, clear_fraction=(1.0,) * 4 + (0.05,)))
    assert text.startswith("2 of the 2 detected changes were first seen")
    assert "the most recent was first seen on 2023-01-10" in text


def test_overview_ignores_pixels_outside_the_site_mask(tmp_path: Path) -> None:
    stack = make_stack()
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    inside = (yy - 49.5) ** 2 + (xx - 49.5) ** 2 <= 50**2  # a round site: 78 % of its bounding square
    stack["clear"] = stack["clear"] & xr.DataArray(inside, dims=("y", "x"))
    page = write_report(make_result(stack=stack), tmp_path).read_text("utf-8")
    overview = next(c for c in provenance_json(page)["chips"] if c["role"] == "overview")
    assert overview["time"] == "2023-07-10T02:15:31Z" and overview["clear_fraction"] == 1.0


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the text (entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_hostile_text_is_escaped_in_every_page(tmp_path: Path) -> None:
    """A site name, change id, status, notes, provenance and scene fields with markup in them are shown as
    text on every page written, and add no element nor attribute."""
    evil = "\"'><script>alert(1)</script><b onmouseover=x>"
    base = make_result()
    scenes = tuple(dataclasses.replace(s, platform=evil, path=f"/data/{evil}.tif") for s in base.scenes)
    changes = tuple(
        dataclasses.replace(c, change_id=f"{evil}{k}", status=evil, provenance={evil: evil})
        for k, c in enumerate(base.changes)
    )
    site = dataclasses.replace(base.site, name=evil, aliases=(evil,), notes=evil, reason=evil, added_by=evil)
    result = dataclasses.replace(base, site=site, changes=changes, scenes=scenes, method=evil, activity=evil,
                                 params={evil: evil}, version=evil)  # fmt: skip
    write_report(result, tmp_path)
    pages = sorted(tmp_path.rglob("*.html"))
    assert pages == [tmp_path / "index.html"]  # the report is one page; any new page is checked here too
    for page in pages:
        text = page.read_text("utf-8")
        parser = _Elements()
        parser.feed(text)
        scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
        assert scripts == [{"type": "application/json", "id": "provenance"}], page
        assert not [tag for tag, _ in parser.tags if tag == "b"], page  # no element from the text
        assert not [a for _, attrs in parser.tags for a in attrs if a.startswith("on")], page  # nor attribute
        assert "<script>alert" not in text and "<b onmouseover" not in text, page
        shown = "".join(parser.text)
        assert shown.count(evil) >= 5, page  # the text is shown, escaped
        prov = provenance_json(text)
        assert prov["site"]["name"] == evil and prov["sitewatch_version"] == evil
        assert {f["id"] for f in prov["changes"]["features"]} == {c.change_id for c in changes}
        assert all((tmp_path / c["file"]).is_file() and "<" not in c["file"] for c in prov["chips"])


def test_render_report_names_each_chip_and_anchor(tmp_path: Path) -> None:
    """render_report: the page's anchors and the chips of each change, as other modules link to them."""
    from sitewatch.render import change_anchor
    from sitewatch.report import render_report

    report = render_report(make_result(), tmp_path)
    page = report.index.read_text("utf-8")
    assert report.anchors == {"chg-0001": "change-1", "chg-0002": "change-2"} and change_anchor(2) == "change-2"
    assert all(f'id="{a}"' in page and f'href="#{a}"' in page for a in report.anchors.values())
    assert report.timeline == tmp_path / "timeline.png" and report.timeline.is_file()
    records = provenance_json(page)["chips"]
    assert [c.record()["file"] for c in report.chips] == [c["file"] for c in records]  # the page's chips, in order
    first = report.chips_of("chg-0001")
    assert [c.file for c in first] == [f"chips/01-chg-0001-{r}.png" for r in ROLES] + [
        f"chips/01-chg-0001-swir-{r}.png" for r in ROLES
    ]
    assert all(c.path == tmp_path / c.file and c.path.is_file() and c.anchor == "change-1" for c in first)
    assert [c.role for c in report.chips if c.change_id is None] == ["overview"]

    # a change first seen earlier renumbers the others: only the chips of this report are linked, not the
    # files an earlier report left under the old numbers
    early = make_change("chg-0000", SMALL, None, 0)
    again = render_report(make_result(changes=(*make_result().changes, early)), tmp_path)
    assert again.anchors["chg-0001"] == "change-2"
    assert [c.file for c in again.chips_of("chg-0001")][0] == "chips/02-chg-0001-before.png"
    assert (tmp_path / "chips/01-chg-0001-before.png").is_file()  # left from the first report, not linked
    assert all(c.file.startswith("chips/02-") for c in again.chips_of("chg-0001"))
