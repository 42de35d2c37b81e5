"""Every detector through the monitoring flow on real Sentinel-2 surfaces: the semi-real Rennes series.

As a user would: `source add --stac <catalog>`, `site add`, `fetch`, `detect`, `export`, then the fixture's own
scorer (`score_series.py`).  Rennes is one of the declared dev cities (with pisa): the floors below are set
under what it measured, not tuned on the other cities.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio
from shapely.geometry import box, mapping

from sitewatch.errors import MissingBandError
from sitewatch.pipeline import detect_site
from sitewatch.settings import get_settings
from sitewatch.store import Store

from .cli_runner import run_cli
from .conftest import SEMIREAL

pytestmark = pytest.mark.realdata


def _score(series: Path, detections: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, str(SEMIREAL / "score_series.py"), str(series), str(detections)],
                         check=True, capture_output=True, text=True, timeout=300).stdout
    last = out.strip().splitlines()[-1]
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", last)}


@pytest.fixture(scope="module")
def rennes_home(semireal_rennes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sitewatch home with the series' catalog as a source, its extent as a site, and its scenes fetched."""
    home = tmp_path_factory.mktemp("rennes-home")
    with rasterio.open(semireal_rennes / "truth.tif") as src:
        extent = box(*src.bounds)
    site = home / "site.geojson"
    site.write_text(json.dumps(mapping(extent)))
    for args in (["source", "add", "semireal", "--stac", str(semireal_rennes / "scenes" / "catalog.json")],
                 ["site", "add", "rennes", "--geojson", str(site)], ["fetch"]):
        r = run_cli(*args, home=home, ok=False)
        assert r.exit_code == 0, (args, r.output, r.exception)
    return home


def test_urban_through_the_cli_finds_and_dates_the_construction(rennes_home, semireal_rennes, tmp_path):
    r = run_cli("detect", "--site", "rennes", "--method", "urban", home=rennes_home, ok=False)
    assert r.exit_code == 0, (r.output, r.exception)
    out = tmp_path / "detections.geojson"
    r = run_cli("export", "--site", "rennes", "--out", out, home=rennes_home, ok=False)
    assert r.exit_code == 0, (r.output, r.exception)
    # monitoring goes on from it with the same method and engine: nothing new, nothing run again
    r = run_cli("monitor", "--once", "--no-fetch", "--method", "urban", home=rennes_home, ok=False)
    assert r.exit_code == 0 and "rennes: unchanged" in r.output, (r.output, r.exception)
    s = _score(semireal_rennes, out)
    # measured 2026-12-02 (series engine, masks given): F1 0.58, dated_ok 1.00, early 1,510 m2 of 532,095 m2
    assert s["F1"] >= 0.45, s
    assert s["dated_ok"] >= 0.95, s
    assert s["early_m2"] <= 0.01 * 532_095, s


@pytest.mark.parametrize("method", ["cva", "irmad", "index"])
def test_every_other_method_runs_on_real_surfaces(rennes_home, semireal_rennes, method, tmp_path):
    from sitewatch.export import export_changes

    store = Store(get_settings(home=rennes_home).database_url)
    r = detect_site(store, "rennes", method)
    assert r.changes, method
    s = _score(semireal_rennes, export_changes(list(r.changes), tmp_path / "d.geojson", "geojson"))
    assert s["F1"] > 0.05 and s["dated_ok"] >= 0.8, (method, s)


def test_learned_runs_its_six_band_model_on_real_surfaces(rennes_home, semireal_rennes, tmp_path):
    from sitewatch.detectors.learned import MODEL_FILE, default_model
    from sitewatch.export import export_changes

    store = Store(get_settings(home=rennes_home).database_url)
    # the ten-band model, asked for, names the bands the series lacks
    with pytest.raises(MissingBandError, match=r"B05, B06, B07, B8A missing"):
        detect_site(store, "rennes", "learned", detector_params={"model": str(default_model().with_name(MODEL_FILE))})
    # the shipped six-band model saw rennes in training: the fold trained without it is scored instead
    fold = Path(__file__).resolve().parents[1] / "benchmarks" / "models" / "loco6-rennes.onnx"
    r = detect_site(store, "rennes", "learned", detector_params={"model": str(fold)})
    assert r.params["detector"]["model_bands"] == ["B02", "B03", "B04", "B08", "B11", "B12"]
    s = _score(semireal_rennes, export_changes(list(r.changes), tmp_path / "d.geojson", "geojson"))
    # measured 2026-12-04 (benchmarks/series_bench.py, masks given): F1 0.577, dated_ok 1.000
    assert s["F1"] >= 0.45 and s["dated_ok"] >= 0.95, s
