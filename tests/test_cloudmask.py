"""Cloud and shadow detection without a mask (sitewatch.cloudmask) on a real semi-real series and on small
synthetic scenes: accuracy against the exact masks, tiling without seams, no-data, and the fallback path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sitewatch import cloudmask
from sitewatch.cloudmask import CLEAR, CLOUD, NODATA, SHADOW, classify, detect_clear
from sitewatch.masks import spectral_clear

from .conftest import BANDS, REPO, ROOF, VEG

TOOL = REPO.parent / "shared" / "tools" / "semireal" / "build_series.py"
CITY = "rennes"

# IoU of cloud + shadow against the exact masks, pooled over the 14 dates of the rennes series (seed 0), as
# measured by benchmarks/cloudmask_bench.py (no buffer): spectral 0.944, model 0.961; floors 0.03 below
FLOOR = {"spectral": 0.91, "model": 0.93}

# the U-Nets run on whole scenes and the semi-real series is built: minutes, so out of `make test-fast`
pytestmark = pytest.mark.slow


def _ci_or_skip(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true requires it)")
    pytest.skip(reason)


def _need_model() -> None:
    if not cloudmask.model_available(BANDS):
        _ci_or_skip("ukis-csmask is not installed: pip install -e '.[clouds]'")


@pytest.fixture(scope="module")
def series(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The semi-real rennes series (14 dates, seed 0), built by the shared fixture tool into a temp folder."""
    if not TOOL.is_file():
        _ci_or_skip(f"the semi-real series builder {TOOL} is missing")
    out = tmp_path_factory.mktemp("semireal") / CITY
    subprocess.run(
        [sys.executable, str(TOOL), CITY, str(out), "--oscd", str(real_data / "oscd"),
         "--eopatch", str(real_data / "eolearn_testeopatch" / "TestEOPatch")],
        check=True, stdout=subprocess.DEVNULL,
    )
    return out


def _dates(series: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    meta = json.loads((series / "truth.json").read_text())
    out = []
    for d in meta["dates"]:
        with rasterio.open(series / "scenes" / f"{d}.tif") as src:
            img = src.read().astype(np.float32) * 1e-4
        with rasterio.open(series / "scenes" / f"{d}_mask.tif") as src:
            out.append((d, img, src.read(1)))
    return out


def _iou(series: Path, method: str) -> float:
    inter = union = 0
    for _, img, mask in _dates(series):
        flagged = np.isin(classify(img, BANDS, method=method), (CLOUD, SHADOW))  # type: ignore[arg-type]
        inter += int((flagged & (mask > 0)).sum())
        union += int((flagged | (mask > 0)).sum())
    return inter / union


def _cloudy(series: Path) -> np.ndarray:
    """The partly cloudy date with the most cloud and shadow (not the fully cloudy one)."""
    best = max((d for d in _dates(series) if (d[2] > 0).mean() < 0.95), key=lambda d: (d[2] > 0).mean())
    return best[1]


@pytest.mark.realdata
def test_spectral_matches_exact_masks(series: Path) -> None:
    assert _iou(series, "spectral") >= FLOOR["spectral"]


@pytest.mark.realdata
def test_model_matches_exact_masks(series: Path) -> None:
    _need_model()
    assert _iou(series, "model") >= FLOOR["model"]


@pytest.mark.realdata
@pytest.mark.parametrize("method", ["spectral", "model"])
def test_change_area_kept_on_clear_dates(series: Path, method: str) -> None:
    """New roofs must not be called cloud: on the clear dates, < 1 % of the true-change area is flagged."""
    if method == "model":
        _need_model()
    with rasterio.open(series / "truth.tif") as src:
        change = src.read(1) == 1
    for d, img, mask in _dates(series):
        if (mask == 0).all():
            clear = detect_clear(img, BANDS, method=method)  # type: ignore[arg-type]
            assert (~clear & change).sum() <= 0.01 * change.sum(), d


def _big(series: Path) -> np.ndarray:
    """The cloudiest partly cloudy date mirrored out to 1200 x 1200 px: 400 x 400 at the model's 30 m, 3 x 3
    tiles of 256 with 64 px overlap."""
    img = _cloudy(series)
    return np.pad(img, ((0, 0), (0, 1200), (0, 1200)), mode="symmetric")[:, :1200, :1200].copy()


@pytest.mark.realdata
def test_tiles_leave_no_seams(series: Path) -> None:
    """Pixels near a tile border (or the end of a cross-fade) get the class a run gives them where they lie
    elsewhere in their tiles: cropping 288 px (96 model pixels, half a tile step) moves every border."""
    _need_model()
    big = _big(series)
    o, m = 288, 48  # the crop, and a margin away from the crop's own edges (the model sees them mirrored)
    a = cloudmask.model_probabilities(big, BANDS)[:, o + m:-m, o + m:-m].argmax(axis=0)
    b = cloudmask.model_probabilities(big[:, o:, o:], BANDS)[:, m:-m, m:-m].argmax(axis=0)
    agree = a == b
    # tile edges and cross-fade ends of the whole run, in model pixels (tiles start at -OVERLAP every 192)
    starts = np.arange(-cloudmask.OVERLAP, 400, cloudmask.TILE - cloudmask.OVERLAP)
    lines = np.concatenate([starts, starts + cloudmask.OVERLAP, starts + cloudmask.TILE - cloudmask.OVERLAP - 1,
                            starts + cloudmask.TILE - 1])
    near = (np.abs(np.arange(1200)[:, None] // 3 - lines[None]).min(axis=1) <= 8)[o + m:1200 - m]
    near2 = near[:, None] | near[None, :]
    assert agree.mean() > 0.95  # the rest is context: a U-Net sees 7.7 km around each pixel
    assert agree[near2].mean() >= agree.mean() - 0.01


@pytest.mark.realdata
def test_split_image_gives_the_same_classes(series: Path) -> None:
    _need_model()
    big = _big(series)
    whole = classify(big, BANDS, method="model")
    halves = np.concatenate([classify(big[:, :, :600], BANDS, method="model"),
                             classify(big[:, :, 600:], BANDS, method="model")], axis=1)
    assert (whole == halves).mean() > 0.99


@pytest.mark.realdata
@pytest.mark.parametrize("method", ["spectral", "model"])
def test_nan_is_not_clear(series: Path, method: str) -> None:
    if method == "model":
        _need_model()
    img = _cloudy(series).copy()
    img[:, 100:180, 200:330] = np.nan
    img[3, 10:20, 10:20] = np.nan  # one band missing is no data too
    cls = classify(img, BANDS, method=method)  # type: ignore[arg-type]
    clear = detect_clear(img, BANDS, method=method)  # type: ignore[arg-type]
    assert (cls[100:180, 200:330] == NODATA).all() and (cls[10:20, 10:20] == NODATA).all()
    assert not clear[100:180, 200:330].any() and not clear[10:20, 10:20].any()
    assert clear.mean() > 0.3  # the rest is still judged


# ------------------------------------------------------------------------ small synthetic scenes, no data


def _scene(size: int = 200, seed: int = 0) -> np.ndarray:
    """Vegetation with a 20 x 20 roof and a 100 x 80 thick white cloud whose shadow lies 15 px to the NW."""
    rng = np.random.default_rng(seed)
    img = np.broadcast_to(VEG[:, None, None], (6, size, size)).copy()
    img *= rng.uniform(0.9, 1.1, (1, size, size)).astype(np.float32)
    img[:, 20:40, 20:40] = ROOF[:, None, None]
    img[:, 65:145, 75:175] *= 0.55  # the shadow, under and beside the cloud
    img[:, 80:160, 90:190] = np.array([0.45, 0.44, 0.45, 0.47, 0.30, 0.22], np.float32)[:, None, None]
    return img + rng.normal(0, 0.004, img.shape).astype(np.float32)


def test_spectral_finds_cloud_and_shadow_not_roof() -> None:
    cls = classify(_scene(), BANDS, method="spectral")
    assert (cls[85:155, 95:185] == CLOUD).all()
    assert (cls[68:78, 78:170] == SHADOW).mean() > 0.9
    assert (cls[20:40, 20:40] == CLEAR).all()
    assert (cls[:10, 150:] == CLEAR).all()


def test_fallback_without_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ukis-csmask, auto is the spectral test and the model path says what to install."""
    img = _scene()
    spectral = detect_clear(img, BANDS, method="spectral")
    monkeypatch.setattr(cloudmask, "_package_dir", lambda: None)
    assert not cloudmask.model_available(BANDS)
    assert np.array_equal(detect_clear(img, BANDS), spectral)
    assert np.array_equal(spectral_clear(img, BANDS), spectral)
    with pytest.raises(ModuleNotFoundError, match=r"sitewatch\[clouds\]"):
        classify(img, BANDS, method="model")


def test_fallback_without_model_bands() -> None:
    """Three visible bands: no model can run, auto falls back to the spectral test (no shadow without B08)."""
    img = _scene()[:3]
    assert not cloudmask.model_available(BANDS[:3])
    cls = classify(img, BANDS[:3])
    assert np.array_equal(cls, classify(img, BANDS[:3], method="spectral"))
    assert (cls[85:155, 95:185] == CLOUD).all() and not (cls == SHADOW).any()


def test_buffer_widens_cloud() -> None:
    img = _scene()
    tight = detect_clear(img, BANDS, method="spectral", buffer=0)
    wide = detect_clear(img, BANDS, method="spectral", buffer=3)
    assert (wide <= tight).all() and tight.sum() - wide.sum() > 3 * 2 * (100 + 80)


def test_all_nan_image() -> None:
    img = np.full((6, 40, 50), np.nan, np.float32)
    assert not detect_clear(img, BANDS, method="spectral").any()
    if cloudmask.model_available(BANDS):
        assert not detect_clear(img, BANDS, method="model").any()


def test_bad_arguments() -> None:
    img = _scene(64)
    with pytest.raises(ValueError, match="product"):
        classify(img, BANDS, product="l3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method"):
        classify(img, BANDS, method="fmask")  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        classify(img[2:], BANDS[2:])  # no B02, B03
