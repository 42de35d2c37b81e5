"""detect-pair I/O on real (small, generated) GeoTIFFs, co-registration, and one real OSCD city.

The generated files are seeded and built by the code below: a smooth random texture per band at 10 m
(UTM 31N), with a square of new material in the AFTER image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import ndimage

from sitewatch import __version__
from sitewatch.coreg import apply_shift, estimate_shift
from sitewatch.errors import DetectorNotFound, ImageryError, MissingCRSError, NoOverlapError, SitewatchWarning
from sitewatch.pair import Image, PairResult, detect_pair, read_image

CRS = "EPSG:32631"
ORIGIN = (500_000.0, 5_000_000.0)
SIZE = 120  # pixels at 10 m
SQUARE = (slice(40, 72), slice(50, 82))  # even bounds: whole 20 m pixels
BANDS_10M = ("B02", "B03", "B04", "B08")
BANDS_20M = ("B05", "B11", "B12")
SHIFT_SPECTRUM = {"B02": 0.08, "B03": 0.1, "B04": 0.15, "B08": -0.2, "B05": 0.12, "B11": 0.2, "B12": 0.18}


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma: float = 2.0) -> np.ndarray:
    t = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return 0.25 + 0.08 * t / t.std()


def scene(changed: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Reflectance per band on the 10 m grid; AFTER (``changed``) has a gain, noise and the square."""
    rng = np.random.default_rng(seed)
    noise = np.random.default_rng(seed + (100 if changed else 200))
    out = {}
    for b in BANDS_10M + BANDS_20M:
        r = _texture(rng, (SIZE, SIZE))
        if changed:
            r = 1.1 * r + 0.01
            r[SQUARE] += SHIFT_SPECTRUM[b]
        out[b] = r + 0.004 * noise.standard_normal(r.shape)
    return out


def truth_mask() -> np.ndarray:
    m = np.zeros((SIZE, SIZE), bool)
    m[SQUARE] = True
    return m


def write(
    path: Path,
    data: np.ndarray,
    res: float = 10.0,
    crs: str | None = CRS,
    origin: tuple[float, float] = ORIGIN,
    descriptions: tuple[str, ...] | None = None,
    nodata: float | None = None,
) -> Path:
    """Write ``data`` (band, y, x) as a GeoTIFF with the given grid."""
    if data.ndim == 2:
        data = data[None]
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "transform": Affine(res, 0, origin[0], 0, -res, origin[1]),
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions or ()):
            dst.set_band_description(i + 1, d)
    return path


def to_dn(refl: np.ndarray) -> np.ndarray:
    return np.clip(np.round(refl * 10000), 1, 65535).astype(np.uint16)


def write_s2_folder(folder: Path, bands: dict[str, np.ndarray], prefix: str = "T31TCJ_20200101") -> Path:
    """Single-band uint16 files: 10 m bands as they are, 20 m bands block-averaged 2x2, B01 at 60 m."""
    folder.mkdir()
    for b, r in bands.items():
        if b in BANDS_20M:
            r20 = r.reshape(SIZE // 2, 2, SIZE // 2, 2).mean(axis=(1, 3))
            write(folder / f"{prefix}_{b}.tif", to_dn(r20), res=20.0)
        else:
            write(folder / f"{prefix}_{b}.tif", to_dn(r), res=10.0)
    b01 = bands["B02"].reshape(SIZE // 6, 6, SIZE // 6, 6).mean(axis=(1, 3))
    write(folder / f"{prefix}_B01.jp2.tif", to_dn(b01), res=60.0)  # not a band file: ignored
    write(folder / f"{prefix}_B01.tif", to_dn(b01), res=60.0)
    (folder / "notes.txt").write_text("not an image")
    return folder


def write_multiband(path: Path, bands: dict[str, np.ndarray], **kw: object) -> Path:
    names = tuple(bands)
    return write(path, np.stack([bands[b] for b in names]).astype(np.float32), descriptions=names, **kw)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


# ------------------------------------------------------------------------------------------------ read


def test_read_s2_folder_resamples_onto_the_finest_grid(tmp_path: Path) -> None:
    folder = write_s2_folder(tmp_path / "before", scene(False))
    img = read_image(folder)
    assert isinstance(img, Image)
    assert img.bands == ("B01", "B02", "B03", "B04", "B05", "B08", "B11", "B12")
    assert img.data.shape == (8, SIZE, SIZE) and img.data.dtype == np.float32
    assert img.transform == Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
    assert rasterio.crs.CRS.from_wkt(img.crs) == rasterio.crs.CRS.from_string(CRS)
    assert np.isfinite(img.data).all()
    assert 0.0 < float(img.data.min()) and float(img.data.max()) < 1.0  # reflectance, not DN
    # a 20 m band resampled to 10 m keeps its values (bilinear, no shift)
    b11 = img.data[img.bands.index("B11")]
    coarse = scene(False)["B11"].reshape(SIZE // 2, 2, SIZE // 2, 2).mean(axis=(1, 3))
    assert abs(float(b11.mean()) - float(coarse.mean())) < 1e-3
    assert np.corrcoef(b11.ravel(), np.kron(coarse, np.ones((2, 2))).ravel())[0, 1] > 0.95


def test_read_s2_folder_zero_is_nodata(tmp_path: Path) -> None:
    bands = scene(False)
    folder = write_s2_folder(tmp_path / "before", bands)
    dn = to_dn(bands["B04"])
    dn[7, 9] = 0  # Sentinel-2 NO_DATA
    write(folder / "T31TCJ_20200101_B04.tif", dn)
    img = read_image(folder)
    b04 = img.data[img.bands.index("B04")]
    assert np.isnan(b04[7, 9]) and np.isfinite(np.delete(b04.ravel(), 7 * SIZE + 9)).all()


def test_read_multiband_names_scaling_and_nodata(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    dn = rng.integers(100, 5000, (3, 20, 30)).astype(np.uint16)
    dn[:, 0, 0] = 0
    img = read_image(write(tmp_path / "a.tif", dn, nodata=0))
    assert img.bands == ("B1", "B2", "B3")
    assert np.isnan(img.data[:, 0, 0]).all()
    np.testing.assert_allclose(img.data[:, 5, 5], dn[:, 5, 5] / 10000, rtol=1e-6)
    refl = rng.uniform(0, 0.5, (2, 20, 30)).astype(np.float32)
    img = read_image(write(tmp_path / "b.tif", refl, descriptions=("B04", "B08")))
    assert img.bands == ("B04", "B08")
    np.testing.assert_array_equal(img.data, refl)  # floats kept as they are


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageryError, match="does not exist"):
        read_image(tmp_path / "missing.tif")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageryError, match="no Sentinel-2 band files"):
        read_image(tmp_path / "empty")
    (tmp_path / "text.tif").write_text("not a raster")
    with pytest.raises(ImageryError, match="text.tif"):
        read_image(tmp_path / "text.tif")


def test_truncated_tiff_is_an_imagery_error_naming_the_file(tmp_path: Path) -> None:
    path = write_multiband(tmp_path / "whole.tif", scene(False))
    raw = path.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageryError, match="cut.tif") as err:
        read_image(cut)
    assert "truncated" in str(err.value)


def test_tiff_without_crs_is_a_missing_crs_error(tmp_path: Path) -> None:
    path = write(tmp_path / "nocrs.tif", np.ones((2, 10, 10), np.float32), crs=None)
    with pytest.raises(MissingCRSError, match="nocrs.tif"):
        read_image(path)
    with pytest.raises(MissingCRSError):
        detect_pair(path, path, tmp_path / "out.tif", method="cva")


# ---------------------------------------------------------------------------------------------- detect


def check_output(result: PairResult, out: Path, before_grid: Image) -> np.ndarray:
    with rasterio.open(out) as src:
        assert src.count == 1 and src.dtypes[0] == "uint8"
        assert src.nodata is None
        assert src.crs == rasterio.crs.CRS.from_wkt(before_grid.crs)
        assert src.transform == before_grid.transform
        assert src.shape == before_grid.shape
        assert src.compression is not None and src.compression.value.upper() == "DEFLATE"
        assert src.profile["tiled"]
        tags = src.tags()
        mask = src.read(1)
    assert set(np.unique(mask)) <= {0, 1}
    assert tags["detector"] == result.method
    assert tags["sitewatch_version"] == __version__
    assert float(tags["threshold"]) == pytest.approx(result.threshold)
    assert "params" in tags and tags["before"] and tags["after"]
    assert result.shape == before_grid.shape
    assert result.changed_pixels == int(mask.sum())
    return mask.astype(bool)


@pytest.mark.parametrize("method", ["cva", "irmad"])
def test_detect_pair_multiband(tmp_path: Path, method: str) -> None:
    before = write_multiband(tmp_path / "before.tif", scene(False))
    after = write_multiband(tmp_path / "after.tif", scene(True))
    out = tmp_path / "out" / "change.tif"
    steps: list[tuple[int, int]] = []
    result = detect_pair(before, after, out, method=method, progress=lambda i, n: steps.append((i, n)))
    mask = check_output(result, out, read_image(before))
    assert iou(mask, truth_mask()) >= 0.8
    assert steps[-1][0] == steps[-1][1]
    assert result.bands == tuple(scene(False))
    assert 0 < result.changed_fraction < 0.2 and result.seconds > 0


@pytest.mark.parametrize("method", ["cva", "irmad"])
def test_detect_pair_s2_folders(tmp_path: Path, method: str) -> None:
    before = write_s2_folder(tmp_path / "before", scene(False))
    after = write_s2_folder(tmp_path / "after", scene(True), prefix="T31TCJ_20210101")
    out = tmp_path / "change.tif"
    result = detect_pair(before, after, out, method=method, score_path=tmp_path / "score.tif")
    mask = check_output(result, out, read_image(before))
    assert iou(mask, truth_mask()) >= 0.8
    assert "B01" not in result.bands and "B11" in result.bands  # atmospheric band left out
    with rasterio.open(tmp_path / "score.tif") as src:
        assert src.dtypes[0] == "float32" and src.shape == (SIZE, SIZE)
        assert src.read(1)[SQUARE].mean() > result.threshold


def test_after_on_another_grid_is_resampled_onto_before(tmp_path: Path) -> None:
    """AFTER's grid starts 30 pixels further east: BEFORE's grid is kept, its uncovered west strip is 0."""
    before = write_multiband(tmp_path / "before.tif", scene(False))
    shifted = {b: np.roll(r, -30, axis=1) for b, r in scene(True).items()}
    after = write_multiband(tmp_path / "after.tif", shifted, origin=(ORIGIN[0] + 300, ORIGIN[1]))
    result = detect_pair(before, after, tmp_path / "change.tif", method="cva")
    mask = check_output(result, tmp_path / "change.tif", read_image(before))
    assert not mask[:, :30].any()  # no data in AFTER there
    assert result.valid_pixels == SIZE * (SIZE - 30)
    assert iou(mask, truth_mask()) >= 0.8


def test_non_overlapping_pair_is_a_no_overlap_error(tmp_path: Path) -> None:
    before = write_multiband(tmp_path / "before.tif", scene(False))
    after = write_multiband(tmp_path / "after.tif", scene(True), origin=(ORIGIN[0] + 50_000, ORIGIN[1]))
    with pytest.raises(NoOverlapError, match="does not overlap"):
        detect_pair(before, after, tmp_path / "change.tif", method="cva")
    assert not (tmp_path / "change.tif").exists()


def test_pair_errors(tmp_path: Path) -> None:
    before = write_multiband(tmp_path / "before.tif", scene(False))
    one = write_multiband(tmp_path / "one.tif", {"B04": scene(True)["B04"], "B99": scene(True)["B08"]})
    with pytest.raises(ImageryError, match="share 1 band"):
        detect_pair(before, one, tmp_path / "change.tif", method="cva")
    with pytest.raises(DetectorNotFound):
        detect_pair(before, before, tmp_path / "change.tif", method="nope")
    with pytest.raises(ImageryError, match="does not exist"):
        detect_pair(before, tmp_path / "nothing", tmp_path / "change.tif", method="cva")


def test_detect_pair_with_coregistration(tmp_path: Path) -> None:
    """AFTER's content is offset by a fraction of a pixel; ``coregister`` measures and removes it."""
    before = write_multiband(tmp_path / "before.tif", scene(False))
    moved = {b: ndimage.shift(r, (0.4, -0.6), order=3, mode="nearest") for b, r in scene(True).items()}
    after = write_multiband(tmp_path / "after.tif", moved)
    result = detect_pair(before, after, tmp_path / "change.tif", method="cva", coregister=True)
    assert result.shift is not None
    assert result.shift == pytest.approx((-0.4, 0.6), abs=0.15)
    with rasterio.open(tmp_path / "change.tif") as src:
        assert src.tags()["coregistration_shift_dy_dx"]


def test_implausible_coregistration_shift_is_not_applied(tmp_path: Path) -> None:
    before = write_multiband(tmp_path / "before.tif", scene(False))
    moved = {b: np.roll(r, 6, axis=0) for b, r in scene(True).items()}
    after = write_multiband(tmp_path / "after.tif", moved)
    with pytest.warns(SitewatchWarning, match="implausible shift"):
        result = detect_pair(before, after, tmp_path / "change.tif", method="cva", coregister=True)
    assert result.shift is None


# ---------------------------------------------------------------------------------------------- coreg


def smooth_texture(shape: tuple[int, int] = (200, 220), seed: int = 0) -> np.ndarray:
    return ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 3.0)


@pytest.mark.parametrize("gradient", [True, False])
def test_estimate_shift_recovers_a_subpixel_shift(gradient: bool) -> None:
    ref = smooth_texture()
    true = (0.3, -0.7)
    # the moving image is the reference displaced by -true, so that shifting it by +true aligns it
    moving = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(ref), (-true[0], -true[1]))).real
    moving += 0.01 * ref.std() * np.random.default_rng(1).standard_normal(ref.shape)
    dy, dx = estimate_shift(ref, moving, gradient=gradient)
    assert abs(dy - true[0]) < 0.1 and abs(dx - true[1]) < 0.1
    aligned = apply_shift(moving, (dy, dx))
    inner = (slice(5, -5), slice(5, -5))
    assert np.nanmax(np.abs(aligned - ref)[inner]) < 0.1 * ref.std()


def test_estimate_shift_multiband_with_nodata_and_gain() -> None:
    ref = np.stack([smooth_texture(seed=2), smooth_texture(seed=3)])
    moving = 1.7 * ndimage.shift(ref, (0, -1.25, 0.5), order=3, mode="nearest") + 0.2
    moving[:, :20, :30] = np.nan
    valid = np.ones(ref.shape[1:], bool)
    valid[150:, 150:] = False
    dy, dx = estimate_shift(ref, moving, valid)
    assert abs(dy - 1.25) < 0.1 and abs(dx + 0.5) < 0.1


def test_apply_shift_is_nan_aware() -> None:
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    img[5, 5] = np.nan
    out = apply_shift(np.stack([img, img]), (0.5, 0.0))
    assert out.shape == (2, 10, 10) and out.dtype == np.float32
    assert np.isnan(out[:, 0]).all()  # shifted in from outside
    assert np.isnan(out[:, 5:7, 5]).all()  # interpolated from the NaN
    assert not np.isnan(out[:, 5:7, 4]).any()
    assert out[0, 3, 3] == pytest.approx((img[2, 3] + img[3, 3]) / 2)
    np.testing.assert_array_equal(apply_shift(img, (0.0, 0.0)), img)
    whole = apply_shift(img, (2.0, -3.0))
    assert whole[4, 2] == img[2, 5]


# ------------------------------------------------------------------------------------------- real data


def _data_root() -> Path:
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("SITEWATCH_DATA", default))


@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("method", ["cva", "irmad"])
def test_oscd_city(tmp_path: Path, method: str) -> None:
    """A real Sentinel-2 pair (OSCD, rennes): the map has the label's shape and finds some of its change."""
    city = "rennes"
    oscd = _data_root() / "oscd"
    images = oscd / "Onera Satellite Change Detection dataset - Images" / city
    labels = oscd / "Onera Satellite Change Detection dataset - Train Labels"
    label_path = labels / city / "cm" / f"{city}-cm.tif"
    if not (images / "imgs_1").is_dir() or not label_path.is_file():
        reason = f"OSCD city {city!r} not found under {oscd}; set SITEWATCH_DATA to the data folder"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    out = tmp_path / f"{city}-{method}.tif"
    result = detect_pair(images / "imgs_1", images / "imgs_2", out, method=method)
    with rasterio.open(label_path) as src:  # no georeferencing: same H x W as imgs_1 B02
        label = src.read(1) == 2  # 1 = no change, 2 = change
    with rasterio.open(out) as src:
        pred = src.read(1) == 1
    assert pred.shape == label.shape
    assert result.shape == label.shape
    tp = int((pred & label).sum())
    f1 = 2 * tp / (int(pred.sum()) + int(label.sum()))
    assert f1 > 0


def test_cli_and_library_share_the_default_pair_method() -> None:
    import inspect

    from sitewatch.cli import detect
    from sitewatch.pair import DEFAULT_PAIR_METHOD

    default = inspect.signature(detect.detect_pair).parameters["method"].default
    assert default == DEFAULT_PAIR_METHOD == "urban"
