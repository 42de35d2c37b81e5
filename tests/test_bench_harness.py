"""The benchmark harness (benchmarks/): scores on tiny labelled pairs whose answer is known by hand.

The tiny pairs are laid out like OSCD (and like Landsat Taizhou) in tmp_path: Sentinel-2 band files of a
uniform vegetated scene, with a square of roof in AFTER, and the label TIFF (1 = no change, 2 = change).
Test detectors registered for the duration of a test predict exactly the square, or the square shifted by a
known offset, so precision and recall can be computed by hand.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ is a package at the repo root, not installed
    sys.path.insert(0, str(REPO))

from benchmarks import harness  # noqa: E402
from benchmarks import run as bench_run  # noqa: E402
from benchmarks.datasets import (  # noqa: E402
    OSCD_IMAGES,
    OSCD_LABELS,
    DataNotFound,
    Pair,
    data_root,
    discover,
)

from sitewatch.detectors import base  # noqa: E402
from sitewatch.types import ChangeMap  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
VEG = np.array([0.03, 0.06, 0.03, 0.35, 0.18, 0.08], np.float32)
ROOF = np.array([0.22, 0.25, 0.27, 0.30, 0.33, 0.28], np.float32)

# city -> (height, width), change square (row, col, size)
CITIES = {
    "alpha": ((40, 40), (10, 12, 8)),  # 1600 px, 64 changed
    "bravo": ((30, 50), (3, 40, 5)),  # 1500 px, 25 changed
    "zulu": ((60, 60), (20, 20, 10)),  # 3600 px: the largest, left out by --quick
}


# ------------------------------------------------------------------------------------------- fixtures


def _scene(shape: tuple[int, int], square: tuple[int, int, int] | None) -> np.ndarray:
    img = np.broadcast_to(VEG[:, None, None], (len(VEG), *shape)).copy()
    if square is not None:
        r, c, n = square
        img[:, r : r + n, c : c + n] = ROOF[:, None, None]
    return img


def _truth(shape: tuple[int, int], square: tuple[int, int, int]) -> np.ndarray:
    r, c, n = square
    t = np.zeros(shape, bool)
    t[r : r + n, c : c + n] = True
    return t


def write_oscd_city(root: Path, city: str, shape: tuple[int, int], square: tuple[int, int, int], label: bool = True):
    """One OSCD-like city: imgs_1/imgs_2 folders of single-band uint16 files, and its cm label."""
    folder = root / "oscd" / OSCD_IMAGES / city
    for sub, img in (("imgs_1", _scene(shape, None)), ("imgs_2", _scene(shape, square))):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for k, band in enumerate(BANDS):
            profile = {
                "driver": "GTiff",
                "dtype": "uint16",
                "count": 1,
                "height": shape[0],
                "width": shape[1],
                "crs": "EPSG:32631",
                "transform": from_origin(500000.0, 5000000.0, 10.0, 10.0),
            }
            with rasterio.open(folder / sub / f"T31TEST_{band}.tif", "w", **profile) as dst:
                dst.write(np.round(img[k] * 10000).astype(np.uint16), 1)
    if label:
        cm = root / "oscd" / OSCD_LABELS / city / "cm"
        cm.mkdir(parents=True, exist_ok=True)
        codes = np.where(_truth(shape, square), 2, 1).astype(np.uint8)  # OSCD: 1 = no change, 2 = change
        profile = {"driver": "GTiff", "dtype": "uint8", "count": 1, "height": shape[0], "width": shape[1]}
        with rasterio.open(cm / f"{city}-cm.tif", "w", **profile) as dst:  # no georeferencing, like OSCD
            dst.write(codes, 1)


@pytest.fixture
def oscd_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for city, (shape, square) in CITIES.items():
        write_oscd_city(root, city, shape, square)
    write_oscd_city(root, "nolabel", (20, 20), (5, 5, 4), label=False)  # a test city: images, no label
    return root


@dataclass(frozen=True)
class ShiftedTruth:
    """Test detector: the pixels whose spectrum changed by more than 0.05, moved by (dy, dx) pixels."""

    name: ClassVar[str] = "test-shifted"
    description: ClassVar[str] = "test: true change shifted"
    dy: int = 0
    dx: int = 0

    def detect(
        self, before: np.ndarray, after: np.ndarray, bands: Sequence[str], valid: np.ndarray | None = None
    ) -> ChangeMap:
        truth = np.abs(after - before).max(axis=0) > 0.05
        mask = np.roll(truth, (self.dy, self.dx), axis=(0, 1))
        return ChangeMap(mask.astype(np.float32), mask, 0.5, self.name, asdict(self))


FIT_CALLS: list[list[str]] = []


@dataclass(frozen=True)
class Learned:
    """Test learned detector: detects nothing until ``fit`` returns a usable threshold."""

    name: ClassVar[str] = "test-learned"
    description: ClassVar[str] = "test: learned threshold"
    threshold: float = 99.0

    def fit(self, pairs: Sequence[Pair]) -> dict[str, Any]:
        FIT_CALLS.append([p.name for p in pairs])
        assert all(p.load_label().shape == p.shape for p in pairs)  # training sees images and labels
        return {"threshold": 0.05}

    def detect(
        self, before: np.ndarray, after: np.ndarray, bands: Sequence[str], valid: np.ndarray | None = None
    ) -> ChangeMap:
        score = np.abs(after - before).max(axis=0)
        mask = score > self.threshold
        return ChangeMap(score.astype(np.float32), mask, self.threshold, self.name, asdict(self))


@dataclass(frozen=True)
class Pretrained:
    """Test learned detector with fold models trained beforehand: ``fit`` picks the one without the held-out
    pair; ``model`` names it, ``trained_on`` is what it was trained on (``leak`` claims the held-out pair too)."""

    name: ClassVar[str] = "test-pretrained"
    description: ClassVar[str] = "test: pretrained fold models"
    model: str = ""
    leak: bool = False

    def fit(self, pairs: Sequence[Pair], held_out: Pair | None = None) -> dict[str, Any]:
        assert held_out is not None and held_out.name not in [p.name for p in pairs]
        return {"model": f"without-{held_out.name}"}

    @property
    def trained_on(self) -> list[str]:
        held = self.model.removeprefix("without-")
        return sorted({"alpha", "bravo", "zulu", "extra"} - ({""} if self.leak else {held}))

    def detect(
        self, before: np.ndarray, after: np.ndarray, bands: Sequence[str], valid: np.ndarray | None = None
    ) -> ChangeMap:
        score = np.abs(after - before).max(axis=0)
        return ChangeMap(score.astype(np.float32), score > 0.05, 0.05, self.name, asdict(self))


@dataclass(frozen=True)
class NeedsRedEdge:
    """Test detector that needs B05, which the tiny pairs lack."""

    name: ClassVar[str] = "test-rededge"
    description: ClassVar[str] = "test: needs B05"

    def detect(
        self, before: np.ndarray, after: np.ndarray, bands: Sequence[str], valid: np.ndarray | None = None
    ) -> ChangeMap:
        base.band_index(bands, "B05")
        raise AssertionError("unreachable")


@pytest.fixture
def test_detectors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base._REGISTRY._items, "test-shifted", ShiftedTruth)
    monkeypatch.setitem(base._REGISTRY._items, "test-learned", Learned)
    monkeypatch.setitem(base._REGISTRY._items, "test-pretrained", Pretrained)
    monkeypatch.setitem(base._REGISTRY._items, "test-rededge", NeedsRedEdge)
    FIT_CALLS.clear()


# -------------------------------------------------------------------------------------------- scoring


def test_confusion_counts_by_hand() -> None:
    pred = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0]], np.uint8)
    label = np.array([[1, 0, 1], [0, 1, -1], [-1, 0, 0]], np.int8)  # -1: not labelled
    assert harness.confusion(pred, label) == (2, 1, 1, 3)
    assert harness.confusion(pred.astype(bool), label > 0) == (2, 2, 1, 4)  # a bool label has no unlabelled
    with pytest.raises(ValueError, match="shape"):
        harness.confusion(pred, label[:2])


def test_scores_by_hand() -> None:
    s = harness.scores(6, 2, 3)
    assert s["precision"] == pytest.approx(6 / 8)
    assert s["recall"] == pytest.approx(6 / 9)
    assert s["f1"] == pytest.approx(12 / 17)
    assert s["iou"] == pytest.approx(6 / 11)
    assert harness.scores(5, 0, 0) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "iou": 1.0}
    assert harness.scores(0, 0, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "iou": 0.0}


def test_shifted_square_by_hand() -> None:
    truth = _truth((40, 40), (10, 12, 8))
    pred = np.roll(truth, (1, 2), axis=(0, 1))
    tp, fp, fn, tn = harness.confusion(pred, truth.astype(np.int8))
    assert (tp, fp, fn, tn) == (42, 22, 22, 1600 - 86)  # overlap 7 rows x 6 columns
    s = harness.scores(tp, fp, fn)
    assert s["precision"] == s["recall"] == pytest.approx(42 / 64)
    assert s["iou"] == pytest.approx(42 / 86)


# ------------------------------------------------------------------------------------------ discovery


def test_discover_oscd_layout(oscd_root: Path) -> None:
    pairs = discover(oscd_root)
    assert [p.name for p in pairs] == ["alpha", "bravo", "zulu"]  # "nolabel" has no label: skipped
    alpha = pairs[0]
    assert alpha.dataset == "oscd" and alpha.shape == (40, 40) and alpha.pixels == 1600
    label = alpha.load_label()
    assert label.dtype == np.int8 and set(np.unique(label)) == {0, 1}
    assert (label == 1).sum() == 64


def test_discover_missing_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataNotFound, match="does not exist"):
        discover(tmp_path / "nowhere")
    with pytest.raises(DataNotFound, match="no labelled pair"):
        discover(tmp_path)
    monkeypatch.setenv("SITEWATCH_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path) == tmp_path


# ----------------------------------------------------------------------------------------- end to end


def test_duplicate_labels_rejected(oscd_root: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        harness.run(discover(oscd_root)[:1], ["cva", harness.DetectorSpec("cva", {"threshold": 3.0})])


@pytest.mark.usefixtures("test_detectors")
def test_run_hand_computed_pooled(oscd_root: Path) -> None:
    pairs = [p for p in discover(oscd_root) if p.name in ("alpha", "bravo")]
    spec = harness.DetectorSpec("test-shifted", {"dy": 1, "dx": 2}, name="shifted")
    result = harness.run(pairs, ["test-shifted", spec])
    assert [d["label"] for d in result.detectors] == ["test-shifted", "shifted", "cva"]
    assert result.detectors[1]["params"] == {"dy": 1, "dx": 2}
    assert result.detectors[2]["baseline"] and result.detectors[2]["params"]["threshold"] == "otsu"
    assert result.row("test-shifted", "alpha").scores["f1"] == 1.0
    a, b = result.row("shifted", "alpha"), result.row("shifted", "bravo")
    assert (a.tp, a.fp, a.fn, a.tn) == (42, 22, 22, 1514)  # 8x8 square moved (1, 2): overlap 7 x 6
    assert (b.tp, b.fp, b.fn) == (12, 13, 13)  # 5x5 square moved (1, 2): overlap 4 x 3
    pooled = {p["detector"]: p for p in result.pooled()}
    p = pooled["shifted"]
    assert (p["tp"], p["fp"], p["fn"]) == (54, 35, 35)
    assert p["precision"] == p["recall"] == pytest.approx(54 / 89)
    assert p["f1"] == pytest.approx(108 / 178)
    assert p["f1_vs_baseline"] == pytest.approx(108 / 178)  # the baseline is perfect here
    assert pooled["cva"]["f1_vs_baseline"] == 1.0 and pooled["cva"]["time_vs_baseline"] == 1.0
    assert p["time_vs_baseline"] == pytest.approx(p["seconds"] / pooled["cva"]["seconds"])


@pytest.mark.usefixtures("test_detectors")
def test_learned_detector_is_scored_leave_one_city_out(oscd_root: Path) -> None:
    pairs = discover(oscd_root)
    result = harness.run(pairs, ["test-learned"], baseline=None)
    assert result.baseline is None
    assert sorted(FIT_CALLS) == [["alpha", "bravo"], ["alpha", "zulu"], ["bravo", "zulu"]]
    for r in result.rows:
        assert r.trained_on == [p.name for p in pairs if p.name != r.pair]  # never its own city
        assert r.fitted_params == {"threshold": 0.05}
        assert r.scores["f1"] == 1.0
    assert result.detectors[0]["learned"] and result.detectors[0]["evaluation"] == "leave-one-pair-out"


@pytest.mark.usefixtures("test_detectors")
def test_pretrained_fold_models_never_score_their_training_pairs(oscd_root: Path) -> None:
    pairs = discover(oscd_root)
    result = harness.run(pairs, ["test-pretrained"], baseline=None)
    for r in result.rows:
        assert r.error is None and r.fitted_params == {"model": f"without-{r.pair}"}
        assert r.trained_on == sorted({"alpha", "bravo", "zulu", "extra"} - {r.pair})  # the model's own record
        assert r.scores["f1"] == 1.0
    leaky = harness.run(pairs, [harness.DetectorSpec("test-pretrained", {"leak": True})], baseline=None)
    assert all(r.error and "trained on" in r.error and not r.tp for r in leaky.rows)


@pytest.mark.usefixtures("test_detectors")
def test_missing_bands_skip_a_pair_without_failing(oscd_root: Path) -> None:
    pairs = discover(oscd_root)[:2]
    result = harness.run(pairs, ["test-rededge", "cva"], baseline=None)
    skipped = [r for r in result.rows if r.detector == "test-rededge"]
    assert all(r.skipped and "B05" in r.skipped and r.error is None for r in skipped)
    assert not result.errors
    (pooled,) = [p for p in result.pooled() if p["detector"] == "test-rededge"]
    assert (pooled["pairs"], pooled["failed"], pooled["skipped"], pooled["tp"]) == (0, 0, 2, 0)


def test_failure_is_recorded_not_raised(oscd_root: Path) -> None:
    pairs = discover(oscd_root)[:1]
    result = harness.run(pairs, [harness.DetectorSpec("cva", {"threshold": "bogus"})], baseline=None)
    (row,) = result.rows
    assert row.error and "otsu" in row.error


def test_partial_labels_taizhou_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENVI pair with differing band descriptions and BMP masks: only the labelled pixels are scored."""
    monkeypatch.setitem(base._REGISTRY._items, "test-shifted", ShiftedTruth)
    folder = tmp_path / "landsat_taizhou_cd" / "Taizhou"
    folder.mkdir(parents=True)
    shape, square = (40, 40), (10, 10, 8)
    for name, img in (("2000TM", _scene(shape, None)), ("2003TM", _scene(shape, square))):
        profile = {
            "driver": "ENVI",
            "dtype": "uint8",
            "count": 6,
            "height": 40,
            "width": 40,
            "crs": "EPSG:32651",
            "transform": from_origin(203325.0, 3604935.0, 30.0, 30.0),
        }
        with rasterio.open(folder / name, "w", **profile) as dst:
            dst.write(np.round(img * 255).astype(np.uint8))
            dst.descriptions = tuple(f"Band {k} ({name})" for k in range(6))  # differ between the dates
    change = np.zeros(shape, np.uint8)
    change[10:14, 10:18] = 255  # 32 changed pixels labelled change
    unchanged = np.zeros(shape, np.uint8)
    unchanged[30:40, :] = 255  # 400 unchanged pixels labelled unchanged
    unchanged[16:18, 10:18] = 255  # 16 changed pixels wrongly labelled unchanged: false positives
    unchanged[10, 10] = 255  # in both masks: ambiguous, not scored
    for name, mask in (("change.bmp", change), ("unchanged.bmp", unchanged)):
        with rasterio.open(folder / name, "w", driver="BMP", dtype="uint8", count=1, height=40, width=40) as dst:
            dst.write(mask, 1)

    pairs = discover(tmp_path)
    assert [(p.name, p.dataset) for p in pairs] == [("taizhou", "taizhou")]
    label = pairs[0].load_label()
    assert (label == 1).sum() == 31 and (label == 0).sum() == 416 and (label == -1).sum() == 1600 - 447
    result = harness.run(pairs, ["test-shifted"], baseline=None)
    row = result.row("test-shifted", "taizhou")
    assert row.error is None
    assert (row.tp, row.fp, row.fn, row.tn) == (31, 16, 0, 400)
    assert row.scores["precision"] == pytest.approx(31 / 47) and row.scores["recall"] == 1.0


# -------------------------------------------------------------------------------------------- the CLI


def test_cli_end_to_end(oscd_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    code = bench_run.main(["--data-root", str(oscd_root), "--detectors", "cva", "--quick", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "Pooled" in text and "alpha" in text and "zulu" not in text
    doc = json.loads(out.read_text())
    assert doc["sitewatch_version"]
    assert doc["machine"]["cpu_count"] == os.cpu_count()
    assert {"python", "numpy", "rasterio"} <= set(doc["machine"])
    assert doc["baseline"] == "cva"
    assert doc["detectors"] == [
        {
            "label": "cva",
            "method": "cva",
            "params": {"threshold": "otsu", "scale": "date"},
            "coregister": False,
            "learned": False,
            "evaluation": "unsupervised (no training)",
            "baseline": True,
        }
    ]
    assert [p["name"] for p in doc["pairs"]] == ["alpha", "bravo"]  # the 2 smallest
    assert {r["pair"]: r["f1"] for r in doc["results"]} == {"alpha": 1.0, "bravo": 1.0}
    (pooled,) = doc["pooled"]
    assert (pooled["tp"], pooled["fp"], pooled["fn"]) == (64 + 25, 0, 0)
    assert pooled["f1_vs_baseline"] == 1.0
    assert doc["total_seconds"] > 0


def test_cli_errors(tmp_path: Path, oscd_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_run.main(["--data-root", str(tmp_path / "missing"), "--out", str(tmp_path / "x.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert bench_run.main(["--data-root", str(oscd_root), "--cities", "atlantis"]) == 2
    assert "atlantis" in capsys.readouterr().err
    assert bench_run.main(["--data-root", str(oscd_root), "--detectors", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


# ------------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_oscd_city(tmp_path: Path) -> None:
    """One real OSCD city through the harness: CVA at Otsu finds a good part of rennes's change."""
    root = data_root()
    label = root / "oscd" / OSCD_LABELS / "rennes" / "cm" / "rennes-cm.tif"
    if not label.is_file():
        reason = f"OSCD city rennes not found under {root}; set SITEWATCH_DATA to the data folder"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    pairs = [p for p in discover(root, ["oscd"]) if p.name == "rennes"]
    result = harness.run(pairs, ["cva"])
    row = result.row("cva", "rennes")
    assert row.error is None
    assert row.tp + row.fp + row.fn + row.tn == 339 * 563
    assert row.scores["f1"] > 0.3  # 0.50 when written
