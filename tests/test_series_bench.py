"""The time-series benchmark (benchmarks/series_bench.py): parsing, pooling and the run's bookkeeping.

The fast tests parse a scorer output written here, pool hand-computed counts, and run the whole benchmark with
stand-ins for the semi-real tools and for the ``sitewatch`` executable (small Python scripts written to
tmp_path), one of whose methods fails the way ``detect`` fails on an all-cloud pair.  The ``realdata`` test runs
the real thing on the smallest city with one method.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from sitewatch.detectors import base as detector_base
from sitewatch.detectors.base import band_index

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ is a package at the repo root, not installed
    sys.path.insert(0, str(REPO))

from benchmarks import series_bench as sb  # noqa: E402
from benchmarks.datasets import data_root  # noqa: E402

SCORER_OUTPUT = """\
series   rennes: 14 dates, onset interval 2016-07-09 .. 2016-08-05, truth 4932 px (532095 m2)
input    det.geojson: 65 features, crs EPSG:4326, 0 non-polygonal skipped, 0 undated, 1489 px detected (160638 m2) \
on the grid
pixels   TP=811 FP=678 FN=4121  P=0.5447 R=0.1644 F1=0.2526
dating   share of true-positive area: ok=0.7879 early=0.1862 late=0.0074 other=0.0185 undated=0.0000
early    detected area claimed before 2016-08-05: 19955 m2 (of which on true change 16287 m2)
F1=0.2526 dated_ok=0.7879 early_m2=19955
"""


def _score(tp: int, fp: int, fn: int, ok: float, early_m2: float, px_m2: float = 100.0) -> sb.Score:
    truth = tp + fn
    dating = {"ok": ok, "early": 1 - ok, "late": 0.0, "other": 0.0, "undated": 0.0}
    return sb.Score(tp, fp, fn, truth, truth * px_m2, 1, tp + fp, dating, early_m2, 0.0, ok)


# ---------------------------------------------------------------------------------- parsing and pooling


def test_parse_score() -> None:
    s = sb.parse_score(SCORER_OUTPUT)
    assert (s.tp, s.fp, s.fn) == (811, 678, 4121)
    assert (s.truth_px, s.truth_m2, s.features, s.detected_px) == (4932, 532095.0, 65, 1489)
    assert s.dating == {"ok": 0.7879, "early": 0.1862, "late": 0.0074, "other": 0.0185, "undated": 0.0}
    assert (s.f1, s.dated_ok, s.early_m2) == (0.2526, 0.7879, 19955.0)
    assert s.tp_m2 == pytest.approx(811 * 532095 / 4932)
    d = sb.summary(s)
    assert d["f1"] == pytest.approx(2 * 811 / (2 * 811 + 678 + 4121))  # the scorer's 0.2526, unrounded
    assert d["early_share"] == pytest.approx(19955 / 532095)
    with pytest.raises(ValueError, match="pixels"):
        sb.parse_score(SCORER_OUTPUT.replace("pixels ", "pix "))


def test_pool_by_hand() -> None:
    a = _score(30, 10, 10, ok=1.0, early_m2=0.0)  # 40 truth px of 100 m2; TP area 3000 m2
    b = _score(10, 30, 50, ok=0.5, early_m2=800.0, px_m2=50.0)  # 60 truth px of 50 m2; TP area 500 m2
    p = sb.pool([a, b])
    assert (p["tp"], p["fp"], p["fn"]) == (40, 40, 60)
    assert p["precision"] == pytest.approx(0.5) and p["recall"] == pytest.approx(0.4)
    assert p["f1"] == pytest.approx(80 / 180)
    assert p["dated_ok"] == pytest.approx((1.0 * 3000 + 0.5 * 500) / 3500)  # weighted by true-positive area
    assert p["dating"]["early"] == pytest.approx(0.5 * 500 / 3500)
    assert p["early_m2"] == 800.0 and p["early_share"] == pytest.approx(800 / (4000 + 3000))
    assert sb.pool([])["f1"] == 0.0 and sb.pool([])["dated_ok"] == 0.0


def test_pooled_held_out_and_failures() -> None:
    cells = [
        sb.Cell("pisa", "index", "nomask", dev=True, score=_score(30, 10, 10, 1.0, 0.0)),
        sb.Cell("bercy", "index", "nomask", dev=False, score=_score(10, 30, 50, 0.5, 800.0)),
        sb.Cell("paris", "index", "nomask", dev=False, error="detect: AllCloudError: only 0 pixel(s)"),
        sb.Cell("bercy", "cva-oracle", "mask", dev=False, score=_score(20, 20, 40, 1.0, 0.0)),
        sb.Cell("paris", "index", "mask", dev=False, error="detect: no date has 20% clear pixels"),
    ]
    rows = {(p["method"], p["variant"], p["pool"]): p for p in sb.pooled(cells)}
    everything, held = rows["index", "nomask", "all"], rows["index", "nomask", "held_out"]
    assert everything["cities"] == ["bercy", "pisa"] and everything["failed"] == ["paris"]
    assert (everything["tp"], everything["fp"], everything["fn"]) == (40, 40, 60)
    assert held["cities"] == ["bercy"] and (held["tp"], held["fp"], held["fn"]) == (10, 30, 50)
    assert held["f1_vs_cva_oracle"] == pytest.approx((20 / 100) / (40 / 100))
    failed = rows["index", "mask", "all"]
    assert failed["cities"] == [] and failed["f1"] is None and failed["f1_vs_cva_oracle"] is None


def test_error_message_of_a_failed_command() -> None:
    wrapped = "warning: scene x covers 100% of the site\nerror: site 'r': no date has 20% clear pixels;\n  lower it\n"
    assert sb.Done(1, "", wrapped, 0.1).message == "site 'r': no date has 20% clear pixels; lower it"
    assert sb.Done(1, "", wrapped, 0.1).warnings == ["scene x covers 100% of the site"]
    trace = "Traceback (most recent call last):\n  File x\nKeyError: 'mask'\n"
    assert sb.Done(1, "", trace, 0.1).message == "KeyError: 'mask'"
    assert sb.Done(3, "", "", 0.1).message == "exit status 3"
    assert sb.call([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.5).returncode == -1


def test_without_masks_copies_the_catalog_tree(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    item_dir = scenes / "coll" / "item-1"
    item_dir.mkdir(parents=True)
    (scenes / "catalog.json").write_text(json.dumps({"type": "Catalog", "id": "c"}))
    (scenes / "2016-01-05.tif").write_bytes(b"image")
    (scenes / "2016-01-05_mask.tif").write_bytes(b"mask")
    item = {
        "type": "Feature", "id": "item-1", "bbox": [1, 2, 3, 4],
        "stac_extensions": ["https://stac-extensions.github.io/classification/v2.0.0/schema.json"],
        "assets": {"image": {"href": "../../2016-01-05.tif"}, "mask": {"href": "../../2016-01-05_mask.tif"}},
    }
    (item_dir / "item-1.json").write_text(json.dumps(item))
    dest = sb.without_masks(scenes, tmp_path / "nomask")
    copied = json.loads((dest / "coll" / "item-1" / "item-1.json").read_text())
    assert list(copied["assets"]) == ["image"] and copied["stac_extensions"] == []
    assert (dest / "2016-01-05.tif").read_bytes() == b"image" and not (dest / "2016-01-05_mask.tif").exists()
    assert "mask" in json.loads((item_dir / "item-1.json").read_text())["assets"]  # the original is untouched


# -------------------------------------------------------------------------------- a run with stand-ins

FAKE_BUILD = """
import json, sys, pathlib
city, out = sys.argv[1], pathlib.Path(sys.argv[2])
item = out / "scenes" / "coll" / "i1"
item.mkdir(parents=True)
(out / "scenes" / "catalog.json").write_text(json.dumps({"type": "Catalog"}))
(item / "i1.json").write_text(json.dumps({"type": "Feature", "bbox": [2.0, 48.0, 2.1, 48.1],
    "assets": {"image": {"href": "x.tif"}, "mask": {"href": "x_mask.tif"}}}))
(out / "truth.json").write_text(json.dumps({"city": city, "grid": {"height": 10, "width": 10},
    "onset_after": "2016-07-09", "onset_before": "2016-08-05"}))
"""

# TP = 10 per feature; the CVA stand-ins write 4 features
FAKE_SCORE = """
import json, sys
n = len(json.load(open(sys.argv[2]))["features"])
tp = 10 * n
print("series   x: 14 dates, onset interval a .. b, truth 100 px (10000 m2)")
print(f"input    {sys.argv[2]}: {n} features, crs EPSG:4326, 0 non-polygonal skipped, 0 undated, {tp + 2} px detected")
print(f"pixels   TP={tp} FP=2 FN={100 - tp}  P=0 R=0 F1=0")
print("dating   share of true-positive area: ok=0.5000 early=0.2500 late=0.2500 other=0.0000 undated=0.0000")
print(f"F1={2 * tp / (2 * tp + 2 + 100 - tp):.4f} dated_ok=0.5000 early_m2={100 * n}")
"""

FAKE_BASELINE = """
import json, sys
json.dump({"type": "FeatureCollection", "features": [{}] * 4}, open(sys.argv[2], "w"))
"""

# methods good, bad and rededge (which the registry, given a stand-in, says needs B05); the catalog with masks gives 3
# detections, the one without gives 1; `detect --method bad` fails like an all-cloud pair
FAKE_SITEWATCH = """
import json, pathlib, sys
args = sys.argv[1:]
if args[0] == "methods":
    print("good: a detector that works\\n  over two lines\\nbad: one that fails\\nrededge: needs B05")
    sys.exit(0)
home, cmd, rest = pathlib.Path(args[1]), args[2], args[3:]
home.mkdir(parents=True, exist_ok=True)
if cmd == "source":
    items = list(pathlib.Path(rest[rest.index("--stac") + 1]).parent.rglob("i1.json"))
    masked = "mask" in json.loads(items[0].read_text())["assets"]
    (home / "masked").write_text(str(masked))
elif cmd == "site":
    assert json.loads(pathlib.Path(rest[rest.index("--geojson") + 1]).read_text())["type"] == "Polygon"
elif cmd == "detect" and rest[rest.index("--method") + 1] == "bad":
    print("warning: scene i1 is cloudy", file=sys.stderr)
    print("error: AllCloudError: only 0 pixel(s) have data\\n  in both images", file=sys.stderr)
    sys.exit(1)
elif cmd == "export":
    n = 3 if (home / "masked").read_text() == "True" else 1
    out = rest[rest.index("--out") + 1]
    json.dump({"type": "FeatureCollection", "features": [{}] * n}, open(out, "w"))
"""


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@dataclass(frozen=True)
class _RedEdge:
    """A detector that needs a band the semi-real series lack (none of the real ones does any more)."""

    required_bands: ClassVar[tuple[str, ...]] = ("B05",)

    def detect(self, before, after, bands, valid=None):  # noqa: ANN001, ANN201
        band_index(bands, "B05")


@pytest.mark.slow
def test_run_with_stand_ins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(detector_base._REGISTRY._items, "rededge", _RedEdge)
    tools = tmp_path / "tools"
    tools.mkdir()
    for name, body in (("build_series.py", FAKE_BUILD), ("score_series.py", FAKE_SCORE),
                       ("baseline_cva.py", FAKE_BASELINE)):
        _script(tools / name, body)
    sitewatch = _script(tmp_path / "sitewatch", FAKE_SITEWATCH)
    data = tmp_path / "data"
    (data / "oscd").mkdir(parents=True)
    (data / "eolearn_testeopatch").mkdir()
    out = tmp_path / "series.json"
    argv = ["--cities", "bercy,pisa", "--methods", "good,bad,rededge", "--jobs", "2", "--data-root", str(data),
            "--tools", str(tools), "--sitewatch", str(sitewatch), "--out", str(out)]

    assert sb.main(argv) == 1  # the failing method is recorded, not raised
    text = capsys.readouterr().out
    assert "AllCloudError" in text and "band B05 is missing" in text
    doc = json.loads(out.read_text())
    assert doc["dev_cities"] == ["pisa", "rennes"] and doc["held_out_cities"] == ["bercy"]
    assert [(m["name"], m["run"]) for m in doc["methods"]] == [("good", True), ("bad", True), ("rededge", False)]
    assert doc["git"] and doc["machine"]["cpu_count"] == os.cpu_count()
    cells = {(r["city"], r["method"], r["variant"]): r for r in doc["results"]}
    assert len(cells) == 2 * (2 * 2 + 2)  # 2 cities x (2 methods x 2 variants + 2 baselines)
    assert cells["pisa", "good", "mask"]["tp"] == 30 and cells["pisa", "good", "nomask"]["tp"] == 10
    assert cells["pisa", "good", "mask"]["dev"] and not cells["bercy", "good", "mask"]["dev"]
    bad = cells["bercy", "bad", "nomask"]
    assert bad["error"] == "detect: AllCloudError: only 0 pixel(s) have data in both images"
    assert bad["warnings"] == ["scene i1 is cloudy"] and "tp" not in bad
    assert cells["bercy", "cva-step", "mask"]["tp"] == 40 and cells["bercy", "cva-oracle", "mask"]["error"] is None
    pooled = {(p["method"], p["variant"], p["pool"]): p for p in doc["pooled"]}
    assert pooled["good", "mask", "all"]["tp"] == 60 and pooled["good", "mask", "held_out"]["cities"] == ["bercy"]
    assert pooled["good", "nomask", "all"]["f1_vs_cva_oracle"] == pytest.approx((40 / 224) / (160 / 284))
    assert pooled["bad", "mask", "all"]["failed"] == ["bercy", "pisa"]
    assert {c["city"]: c["shape"] for c in doc["cities"]} == {"bercy": [10, 10], "pisa": [10, 10]}
    assert all(c["wall_seconds"] > 0 and c["build_seconds"] >= 0 for c in doc["cities"])
    assert doc["complete"] and not any(c["resumed"] for c in doc["cities"])

    # a run stopped after bercy left its JSON; --resume takes bercy from it and runs pisa only
    partial = {**doc, "complete": False, "cities": [c for c in doc["cities"] if c["city"] == "bercy"],
               "results": [r for r in doc["results"] if r["city"] == "bercy"]}
    (tmp_path / "partial.json").write_text(json.dumps(partial))
    again = tmp_path / "again.json"
    assert sb.main([*argv[:-1], str(again), "--resume", str(tmp_path / "partial.json")]) == 1
    redo = json.loads(again.read_text())
    assert {c["city"]: c["resumed"] for c in redo["cities"]} == {"bercy": True, "pisa": False}
    def untimed(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]

    assert redo["results"][:6] == doc["results"][:6]  # bercy's cells as they were, timings included
    assert untimed(redo["results"]) == untimed(doc["results"])  # pisa's measured again
    assert untimed(redo["pooled"]) == untimed(doc["pooled"]) and redo["resumed_from"] == str(tmp_path / "partial.json")
    stale = {**partial, "options": {**partial["options"], "seed": 1}}
    (tmp_path / "stale.json").write_text(json.dumps(stale))
    assert sb.main([*argv, "--resume", str(tmp_path / "stale.json")]) == 2
    assert "not comparable" in capsys.readouterr().err


def test_bad_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sb.main(["--cities", "atlantis"]) == 2
    assert "atlantis" in capsys.readouterr().err
    assert sb.main(["--cities", "bercy", "--data-root", str(tmp_path / "none")]) == 2
    assert "SITEWATCH_DATA" in capsys.readouterr().err
    assert sb.main(["--cities", "bercy", "--keep", str(REPO / "benchmarks" / "tmp-series")]) == 2
    assert "inside the repository" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
@pytest.mark.slow
def test_real_series_smallest_city(tmp_path: Path) -> None:
    """bercy (395 x 360) with the index method, both variants, and the CVA baselines, through the real CLI."""
    root = data_root()
    missing = [p for p in (root / "oscd", root / "eolearn_testeopatch", sb.TOOLS / "build_series.py")
               if not p.exists()]
    if missing:
        reason = f"{missing[0]} not found; set SITEWATCH_DATA to the data folder (tools in ../shared/tools)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    out = tmp_path / "series.json"
    assert sb.main(["--cities", "bercy", "--methods", "index", "--out", str(out)]) in (0, 1)
    doc = json.loads(out.read_text())
    cells = {(r["method"], r["variant"]): r for r in doc["results"]}
    assert set(cells) == {("index", "mask"), ("index", "nomask"), ("cva-oracle", "mask"), ("cva-step", "mask")}
    oracle = cells["cva-oracle", "mask"]
    assert oracle["error"] is None and oracle["f1"] > 0.05 and oracle["dated_ok"] == 1.0  # 0.133 when written
    assert oracle["early_m2"] == 0.0
    assert cells["index", "mask"]["error"] is None  # the classification-extension masks are read
    assert cells["index", "nomask"]["error"] is None  # sitewatch finds the clouds itself
    assert all(r["error"] or r["truth_px"] > 0 for r in doc["results"])
    (city,) = doc["cities"]
    assert city["shape"] == [395, 360] and city["wall_seconds"] > 0


def test_learned_runs_each_city_with_the_six_band_fold_that_never_saw_it() -> None:
    assert sb.fold_params("urban", "bercy") == []
    (flag, value) = sb.fold_params("learned", "bercy")
    fold = Path(value.removeprefix("model="))
    assert flag == "--param" and fold == sb.FOLDS / "loco6-bercy.onnx" and fold.is_file()
    meta = json.loads(fold.with_suffix(".json").read_text())
    assert meta["held_out"] == "bercy" and "bercy" not in meta["train_cities"]
    assert tuple(meta["bands"]) == sb.BANDS
    with pytest.raises(FileNotFoundError, match="--bands 6"):
        sb.fold_params("learned", "atlantis")
