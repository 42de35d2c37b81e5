"""detect-pair window by window (sitewatch.windowed): the same change as in memory, in bounded memory.

The images are the seeded generated scenes of tests/test_pair.py (a square of new material in AFTER), cut into
many small windows (``WINDOW_PX`` lowered) so that every pass crosses window edges; and one real OSCD city.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine

from sitewatch import windowed
from sitewatch.errors import ImageryError, NoOverlapError
from sitewatch.pair import detect_pair, read_image

from .cli_runner import run_cli
from .test_pair import (
    ORIGIN,
    SIZE,
    check_output,
    iou,
    scene,
    truth_mask,
    write,
    write_multiband,
    write_s2_folder,
)


@pytest.fixture(autouse=True)
def small_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """32 px windows and a 2 x 2 sampling lattice: a 120 px image is 16 windows, sampled on 4 blocks."""
    monkeypatch.setattr(windowed, "WINDOW_PX", 32)
    monkeypatch.setattr(windowed, "SAMPLE_SIDE", 2)
    monkeypatch.setattr(windowed, "SAMPLE_MIN", 1000)


def _mask(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1).astype(bool)


def test_windows_tile_the_grid_in_whole_blocks() -> None:
    wins = windowed.windows(1000, 700, (256, 256), side=512)
    covered = np.zeros((1000, 700), int)
    for w in wins:
        assert w.row_off % 256 == 0 and w.col_off % 256 == 0
        covered[int(w.row_off):int(w.row_off + w.height), int(w.col_off):int(w.col_off + w.width)] += 1
    assert (covered == 1).all()
    lattice = windowed.sample_windows(10980, 10980, (512, 512), 4)
    assert len(lattice) == 16 and len({(w.row_off, w.col_off) for w in lattice}) == 16
    rows = sorted({int(w.row_off) // 512 for w in lattice})
    assert rows[0] > 0 and rows[-1] < 21  # spread over the grid, not its first blocks
    assert len(windowed.sample_windows(300, 300, (256, 256), 4)) == 1  # a 512 px sample window: the whole grid
    strips = windowed.sample_windows(5000, 4000, (1, 4000), 4)  # a strip file: windows of 512 whole rows
    assert len(strips) == 4 and all(w.width == 4000 and w.height == 512 for w in strips)


@pytest.mark.parametrize("method", ["cva", "irmad"])
def test_windowed_finds_the_change_found_in_memory(tmp_path: Path, method: str) -> None:
    before = write_multiband(tmp_path / "before.tif", scene(False))
    after = write_multiband(tmp_path / "after.tif", scene(True))
    steps: list[tuple[int, int]] = []
    mem = detect_pair(before, after, tmp_path / "mem.tif", method=method, windowed=False)
    win = detect_pair(before, after, tmp_path / "win.tif", method=method, windowed=True,
                      score_path=tmp_path / "score.tif", progress=lambda i, n: steps.append((i, n)))
    mask = check_output(win, tmp_path / "win.tif", read_image(before))
    assert win.valid_pixels == mem.valid_pixels == SIZE * SIZE
    assert iou(mask, truth_mask()) >= 0.8
    assert iou(mask, _mask(tmp_path / "mem.tif")) >= 0.95
    assert win.bands == mem.bands
    done = [i for i, _ in steps]
    assert done == sorted(set(done)) and steps[-1][0] == steps[-1][1] > 1  # the sampled windows, then each one
    with rasterio.open(tmp_path / "win.tif") as src:
        assert "fit_pixels" in src.tags()["params"]
    with rasterio.open(tmp_path / "score.tif") as src:
        score = src.read(1)
    assert np.isfinite(score).all()
    assert score[truth_mask()].mean() > win.threshold > np.median(score[~truth_mask()])


def _uint16_pair(tmp_path: Path) -> tuple[Path, Path]:
    """Two 4-band uint16 images (16 px blocks, nodata 0) with a changed square, and no data in one band of
    AFTER's first rows and in every band of BEFORE's last columns."""
    n = 160
    rng = np.random.default_rng(5)
    base = rng.integers(500, 3000, (4, n, n), dtype=np.uint16)
    new = (base * 1.1 + 50).astype(np.uint16)
    new[:, 60:100, 60:100] += 1500
    new[2, :20] = 0
    base[:, :, 150:] = 0
    profile = {"driver": "GTiff", "width": n, "height": n, "count": 4, "dtype": "uint16", "crs": "EPSG:32631",
               "transform": Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), "tiled": True, "blockxsize": 16,
               "blockysize": 16, "nodata": 0}
    for name, data in (("before", base), ("after", new)):
        with rasterio.open(tmp_path / f"{name}.tif", "w", **profile) as dst:
            dst.write(data)
    return tmp_path / "before.tif", tmp_path / "after.tif"


@pytest.mark.parametrize("method", ["cva", "irmad"])
def test_stored_integers_score_as_float_reflectance_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """Clean windows of integer files reach the model as stored (windows with no data as float32 with NaN):
    the same threshold and mask as every window read as float32 reflectance."""
    before, after = _uint16_pair(tmp_path)
    fast = detect_pair(before, after, tmp_path / "fast.tif", method=method, windowed=True, workers=2)
    monkeypatch.setattr(windowed._Reader, "_stored_dtype", lambda self, opened: None)
    slow = detect_pair(before, after, tmp_path / "slow.tif", method=method, windowed=True, workers=2)
    assert (fast.threshold, fast.valid_pixels, fast.changed_pixels) == (
        slow.threshold, slow.valid_pixels, slow.changed_pixels)
    assert fast.valid_pixels == 150 * 160 - 20 * 150
    assert (_mask(tmp_path / "fast.tif") == _mask(tmp_path / "slow.tif")).all()
    assert iou(_mask(tmp_path / "fast.tif"), np.pad(np.ones((40, 40), bool), 60)) >= 0.8


def test_windowed_reads_s2_folders_and_another_grid_through_warped_vrts(tmp_path: Path) -> None:
    """20 m bands and an AFTER whose grid starts 30 px further east are warped onto BEFORE's 10 m grid window
    by window; the uncovered strip has no data, so no change."""
    before = write_s2_folder(tmp_path / "before", scene(False))
    shifted = {b: np.roll(r, -30, axis=1) for b, r in scene(True).items()}
    after = write_multiband(tmp_path / "after.tif", shifted, origin=(ORIGIN[0] + 300, ORIGIN[1]))
    mem = detect_pair(before, after, tmp_path / "mem.tif", method="cva", windowed=False)
    win = detect_pair(before, after, tmp_path / "win.tif", method="cva", windowed=True)
    mask = check_output(win, tmp_path / "win.tif", read_image(before))
    assert not mask[:, :30].any()
    assert abs(win.valid_pixels - mem.valid_pixels) <= 2 * SIZE  # bilinear edges: at most a column apart
    assert iou(mask, truth_mask()) >= 0.8
    assert iou(mask, _mask(tmp_path / "mem.tif")) >= 0.9


def test_large_images_run_windowed_by_default_when_the_detector_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = write_multiband(tmp_path / "before.tif", scene(False))
    after = write_multiband(tmp_path / "after.tif", scene(True))
    monkeypatch.setattr(windowed, "STREAM_PIXELS", SIZE * SIZE - 1)
    seen: list[str] = []
    real = windowed.detect_windowed
    monkeypatch.setattr(windowed, "detect_windowed", lambda *a, **k: seen.append("windowed") or real(*a, **k))
    detect_pair(before, after, tmp_path / "a.tif", method="cva")
    assert seen == ["windowed"]
    detect_pair(before, after, tmp_path / "b.tif", method="index")  # runs in memory only: not windowed
    detect_pair(before, after, tmp_path / "c.tif", method="cva", coregister=True)  # needs memory
    monkeypatch.setattr(windowed, "STREAM_PIXELS", SIZE * SIZE)
    detect_pair(before, after, tmp_path / "d.tif", method="cva")
    assert seen == ["windowed"]


def test_the_command_line_runs_it_window_by_window_or_refuses(tmp_path: Path) -> None:
    """`sitewatch detect-pair --windowed --workers 1` writes the windowed map; `--windowed` with a detector
    that needs memory is one clear error line."""
    before = write_multiband(tmp_path / "before.tif", scene(False))
    after = write_multiband(tmp_path / "after.tif", scene(True))
    r = run_cli("detect-pair", before, after, "--out", tmp_path / "cli.tif", "--method", "cva", "--windowed",
                "--workers", "1")
    assert "changed pixel(s)" in r.stdout
    with rasterio.open(tmp_path / "cli.tif") as src:
        assert "fit_pixels" in src.tags()["params"]  # the windowed fit's record
    assert iou(_mask(tmp_path / "cli.tif"), truth_mask()) >= 0.8
    bad = run_cli("detect-pair", before, after, "--out", tmp_path / "bad.tif", "--method", "index", "--windowed",
                  ok=False)
    assert bad.exit_code != 0 and "runs in memory only" in bad.output
    assert not (tmp_path / "bad.tif").exists()


def test_windowed_errors(tmp_path: Path) -> None:
    before = write_multiband(tmp_path / "before.tif", scene(False))
    after = write_multiband(tmp_path / "after.tif", scene(True))
    with pytest.raises(ImageryError, match="in memory only"):
        detect_pair(before, after, tmp_path / "x.tif", method="index", windowed=True)
    with pytest.raises(ImageryError, match="co-registration needs both images in memory"):
        detect_pair(before, after, tmp_path / "x.tif", method="cva", windowed=True, coregister=True)
    empty = write(tmp_path / "empty.tif", np.full((7, SIZE, SIZE), -1.0, np.float32), nodata=-1.0,
                  descriptions=tuple(scene(False)))
    with pytest.raises(NoOverlapError, match="no pixel has data in both"):
        detect_pair(before, empty, tmp_path / "x.tif", method="cva", windowed=True)
    assert not (tmp_path / "x.tif").exists()


def test_a_truncated_image_is_an_imagery_error_and_writes_nothing(tmp_path: Path) -> None:
    before = write_multiband(tmp_path / "before.tif", scene(False))
    after = write_multiband(tmp_path / "after.tif", scene(True))
    rasterio.shutil.copy(after, tmp_path / "cog.tif", driver="COG", blocksize=32)  # its header first
    data = (tmp_path / "cog.tif").read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])  # the header survives, half of the pixels do not
    with pytest.raises(ImageryError, match="cut.tif: image data cannot be read"):
        detect_pair(before, cut, tmp_path / "x.tif", method="cva", windowed=True)
    assert not (tmp_path / "x.tif").exists()


def test_windowed_memory_stays_a_fraction_of_the_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2048 x 2048 pair of 8 bands (the two dates in float32: 268 MB): the arrays windowed detection
    allocates peak well under that (score, mask, a few windows and the fit's sample)."""
    monkeypatch.setattr(windowed, "WINDOW_PX", 256)
    monkeypatch.setattr(windowed, "SAMPLE_SIDE", 4)
    monkeypatch.setattr(windowed, "SAMPLE_MIN", 100_000)
    n, bands = 2048, 8
    rng = np.random.default_rng(3)
    base = rng.integers(500, 3000, (bands, n, n), dtype=np.uint16)
    new = base.copy()
    new[:, 900:1100, 900:1100] += 2000
    profile = {"driver": "GTiff", "width": n, "height": n, "count": bands, "dtype": "uint16", "crs": "EPSG:32631",
               "transform": Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), "tiled": True, "blockxsize": 256,
               "blockysize": 256}
    for name, data in (("before", base), ("after", new)):
        with rasterio.open(tmp_path / f"{name}.tif", "w", **profile) as dst:
            dst.write(data)
    del base, new
    stack = 2 * bands * n * n * 4
    tracemalloc.start()
    try:
        r = detect_pair(tmp_path / "before.tif", tmp_path / "after.tif", tmp_path / "c.tif", method="cva",
                        windowed=True, workers=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.changed_pixels >= 200 * 200 * 0.9
    assert peak < 0.4 * stack, f"windowed detection peaked at {peak / 1e6:.0f} MB of arrays, stack {stack / 1e6:.0f} MB"


@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("method", ["cva", "irmad"])
def test_oscd_city_windowed_scores_like_in_memory(real_data: Path, tmp_path: Path, method: str) -> None:
    """A real Sentinel-2 pair (OSCD rennes, 13 band files at 10/20/60 m): window by window, the F1 against the
    label is the one of the in-memory run within 0.03, and the two maps agree on 99 % of the pixels."""
    city = real_data / "oscd" / "Onera Satellite Change Detection dataset - Images" / "rennes"
    label_path = (real_data / "oscd" / "Onera Satellite Change Detection dataset - Train Labels" / "rennes" / "cm"
                  / "rennes-cm.tif")
    with rasterio.open(label_path) as src:
        label = src.read(1) == 2
    f1 = {}
    masks = {}
    for mode in (False, True):
        out = tmp_path / f"{mode}.tif"
        detect_pair(city / "imgs_1", city / "imgs_2", out, method=method, windowed=mode)
        masks[mode] = _mask(out)
        tp = int((masks[mode] & label).sum())
        f1[mode] = 2 * tp / (int(masks[mode].sum()) + int(label.sum()))
    assert f1[True] > 0
    assert abs(f1[True] - f1[False]) <= 0.03, f1
    assert (masks[True] == masks[False]).mean() >= 0.99
