"""The CLI as a user runs it: real files, exit codes and one-line errors (in this process, through the shared
runner; the entry points themselves in a new process)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sitewatch import __version__

from .cli_runner import run_cli as run
from .conftest import ORIGIN


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def _site_geojson(tmp_path):
    from shapely.geometry import box, mapping

    from sitewatch.geo import to_crs

    x0, y0 = ORIGIN
    poly = to_crs(box(x0 + 20, y0 - 620, x0 + 620, y0 - 20), "EPSG:32652", "EPSG:4326")
    p = tmp_path / "site.geojson"
    p.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": mapping(poly)}))
    return p


def test_full_cli_flow(tmp_path, home, make_series):
    paths, _, dates = make_series(n=6, change_at=2)
    run("site", "add", "Base One", "--geojson", _site_geojson(tmp_path), "--alias", "B1", "--notes", "test",
        home=home)
    assert "Base One" in run("site", "list", home=home).stdout
    out = run("ingest", paths[0].parent, home=home).stdout
    assert "6 new" in out
    assert "0 new, 6 already" in run("ingest", paths[0].parent, home=home).stdout
    out = run("detect", "--site", "B1", home=home).stdout
    assert "1 change(s)" in out and "confirmed" in out
    assert "confirmed" in run("site", "show", "Base One", home=home).stdout
    gj = tmp_path / "d.geojson"
    run("export", "-f", "geojson", "-o", gj, home=home)
    fc = json.loads(gj.read_text())
    assert len(fc["features"]) == 1
    props = fc["features"][0]["properties"]
    assert props["first_seen_before"].startswith(dates[2].strftime("%Y-%m-%d"))
    assert props["status"] == "confirmed" and props["area_m2"] > 0
    gpkg = tmp_path / "d.gpkg"
    run("export", "-f", "gpkg", "-o", gpkg, home=home)
    assert gpkg.stat().st_size > 0
    rep = tmp_path / "report"
    run("report", "Base One", "-o", rep, home=home)
    assert "Base One" in (rep / "index.html").read_text()
    # detector parameters: checked before anything is read, recorded with the run
    p = run("detect", "--site", "B1", "--param", "bogus=1", home=home, ok=False)
    assert p.returncode == 1 and "'index' has no parameter bogus; its parameters: threshold" in p.stderr
    p = run("detect", "--site", "B1", "--param", "threshold", home=home, ok=False)
    assert p.returncode == 1 and "--param wants KEY=VALUE" in p.stderr
    run("detect", "--site", "B1", "--param", "threshold=0.55", home=home)
    from sitewatch.settings import get_settings
    from sitewatch.store import Store

    assert Store(get_settings(home=home).database_url).latest_run("Base One").params["detector"]["threshold"] == 0.55
    run("site", "remove", "Base One", home=home)
    assert "Base One" not in run("site", "list", home=home).stdout


def test_errors_are_one_line_and_nonzero(tmp_path, home):
    p = run("site", "show", "nowhere", home=home, ok=False)
    assert p.returncode == 1
    assert p.stderr.strip().startswith("error:") and "nowhere" in p.stderr
    assert "Traceback" not in p.stderr
    bad = tmp_path / "bad.geojson"
    bad.write_text("{oops")
    p = run("site", "add", "x", "--geojson", bad, home=home, ok=False)
    assert p.returncode == 1 and "not valid JSON" in p.stderr
    p = run("detect", "--site", "x", "--method", "nope", home=home, ok=False)
    assert p.returncode == 1
    p = run("--verbose", "site", "show", "nowhere", home=home, ok=False)
    assert p.returncode != 0 and "Traceback" in p.stderr


def test_methods_lists_every_registered_detector(home):
    from sitewatch.detectors import available

    out = run("methods", home=home).stdout
    for name in available():
        assert name in out


def test_usage_errors_show_usage_and_exit_2(home):
    p = run("detect", "--bogus", home=home, ok=False)
    assert p.returncode == 2 and "No such option: --bogus" in p.stderr and "Traceback" not in p.stderr
    p = run("site", home=home, ok=False)  # a group without its command: its help
    assert p.returncode == 2 and "promote" in p.output and "Traceback" not in p.stderr


# A separate process is the point of this test: the entry points as installed (`python -m sitewatch`, the
# `sitewatch` console script of pyproject's [project.scripts]) and the exit codes and stderr a parent process sees.
@pytest.mark.slow
def test_entry_points_in_a_new_process(home):
    def proc(*cmd):
        return subprocess.run([*map(str, cmd)], capture_output=True, text=True, timeout=300)

    p = proc(sys.executable, "-m", "sitewatch", "--version")
    assert p.returncode == 0 and p.stdout.strip() == f"sitewatch {__version__}", p.stderr
    p = proc(sys.executable, "-m", "sitewatch", "--home", home, "site", "show", "nowhere")
    assert p.returncode == 1 and p.stderr.strip().startswith("error:") and "Traceback" not in p.stderr
    p = proc(sys.executable, "-m", "sitewatch", "--home", home, "detect", "--bogus")
    assert p.returncode == 2 and "No such option" in p.stderr and "Traceback" not in p.stderr
    script = Path(sys.executable).parent / "sitewatch"
    assert script.is_file(), f"the console script {script} is not installed (pip install -e .)"
    p = proc(script, "--home", home, "site", "list")
    assert p.returncode == 0 and "Watchlist" in p.stdout, p.stderr
