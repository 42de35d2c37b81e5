"""Shared fixtures: small real GeoTIFF scenes written by the tests, and the real-data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
VEG = np.array([0.03, 0.06, 0.03, 0.35, 0.18, 0.08], np.float32)
ROOF = np.array([0.22, 0.25, 0.27, 0.30, 0.33, 0.28], np.float32)
CRS = "EPSG:32652"
ORIGIN = (500000.0, 4580000.0)


# -- parallel runs (pytest-xdist; `make test`: -n auto --dist loadgroup --no-loadscope-reorder) and the fast
# tier (`make test-fast`: -m "not slow") ------------------------------------------------------------------------
#: fixtures of this file too costly to build once per worker: the tests that use one run in the same worker
#: (the semi-real Rennes series).  The demo world is not one of them: it is generated once per run and shared
#: by the workers (:func:`demo_run`), so the demo tests spread over the workers, each module in one.
SHARED_GROUPS = {"semireal_rennes": "semireal"}
#: fixtures that make a test slow (left out of `make test-fast`)
SLOW_FIXTURES = ("demo_run", "semireal_rennes")
#: the costliest units of work (xdist groups, else test modules), longest first as `--durations` measures them:
#: run first (`--no-loadscope-reorder`), they leave the many short tests to even out the workers' ends.  The
#: demo acceptance comes first of all: it builds the demo world that the other demo tests wait for.
HEAVY_FIRST = (
    "tests/test_demo_acceptance.py", "semireal", "demo-monitor", "tests/test_demo_methods.py",
    "tests/test_demo_wide.py", "tests/test_series_bench.py", "tests/test_demo_world.py", "tests/test_search.py",
    "tests/test_cloudmask.py", "tests/test_similar.py", "tests/test_web.py", "tests/test_stac_api.py",
    "tests/test_coreg_real.py", "tests/test_dask.py",
)


def _shares_a_fixture(item: pytest.Item) -> bool:
    """Whether the test uses a fixture of the tests' own (not pytest's) broader than the test: then the tests
    of its module run in one worker, which builds that fixture once (``--dist loadfile`` for them)."""
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        d = defs[-1]
        if d.scope != "function" and getattr(d.func, "__module__", "").startswith("tests."):
            return True
    return False


def _group_of(item: pytest.Item) -> str | None:
    """The test's group: its own ``xdist_group`` mark first (a module with a costly fixture of its own on top
    of a shared one, such as the monitor replay, runs beside the shared group), then the shared fixture's."""
    mark = item.get_closest_marker("xdist_group")
    if mark is not None:
        return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    names = getattr(item, "fixturenames", ())
    group = next((g for f, g in SHARED_GROUPS.items() if f in names), None)
    if group is None and _shares_a_fixture(item):
        group = item.nodeid.split("::")[0]
    return group


#: the modules whose tests reach the store only through the settings' database URL: the storage suite, which
#: `SITEWATCH_TEST_STORE=postgres` runs on PostgreSQL (see `_store_backend` below)
STORAGE_MODULES = ("tests/test_alerts.py", "tests/test_review.py", "tests/test_api.py", "tests/test_api_roles.py",
                   "tests/test_web_session.py", "tests/test_store_pipeline.py", "tests/test_alerts_growth.py",
                   "tests/test_store_spatial.py")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by the marks (`make test-fast`: -m "not slow")
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(f in getattr(item, "fixturenames", ()) for f in SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)
        if item.nodeid.split("::")[0] in STORAGE_MODULES:
            item.add_marker(pytest.mark.storage)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_Groups(), "sitewatch-xdist-groups")


class _Groups:
    """Names each test's xdist group (after xdist's own hook, which reads the marks) and puts the costliest
    units first (:data:`HEAVY_FIRST`)."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        _name_groups(config, items)
        rank = {unit: i for i, unit in enumerate(HEAVY_FIRST)}

        def unit_rank(item: pytest.Item) -> int:
            group = _group_of(item)
            module = item.nodeid.split("::")[0]
            return min(rank.get(group or "", len(rank)), rank.get(module, len(rank)))

        items.sort(key=unit_rank)  # stable: each unit's tests keep their order


def _name_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    loadgroup = bool(getattr(config.option, "loadgroup", False))  # set in xdist's workers by --dist loadgroup
    for item in items:
        group = _group_of(item)
        if group is None:
            continue
        item.add_marker(pytest.mark.xdist_group(group))
        if loadgroup and "@" not in item.nodeid:
            _name_group(item, group)


def _name_group(item: pytest.Item, group: str) -> None:
    """Suffix the test's node id with ``@group``, which is how xdist's loadgroup scheduler sees a group.

    xdist (3.8) does this itself by setting ``item._nodeid``, which pytest 9.2 no longer reads (node ids are
    a structured ``_id``): there every mark was ignored and each worker built the demo world again.
    """
    nodeid = f"{item.nodeid}@{group}"
    if hasattr(item, "_id"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(nodeid)
    else:
        item._nodeid = nodeid


def data_root() -> Path:
    """The real-imagery folder: env SITEWATCH_DATA, default ../shared/data beside the repo."""
    env = os.environ.get("SITEWATCH_DATA")
    return Path(env) if env else (REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def real_data() -> Path:
    root = data_root()
    if not root.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"real data folder {root} is missing (CI=true requires it; set SITEWATCH_DATA)")
        pytest.skip(f"real data folder {root} not found; set SITEWATCH_DATA to run this test")
    return root


def write_scene(
    folder: Path,
    when: datetime,
    image: np.ndarray,
    scl: np.ndarray | None = None,
    origin: tuple[float, float] = ORIGIN,
    crs: str | None = CRS,
    name: str | None = None,
) -> Path:
    """Write a 6-band uint16 (x10000) tiled GeoTIFF scene, with an optional ``_SCL`` mask beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    name = name or f"S2A_MSIL2A_{when:%Y%m%dT%H%M%S}_TEST"
    path = folder / f"{name}.tif"
    nb, h, w = image.shape
    profile = dict(
        driver="GTiff", width=w, height=h, count=nb, dtype="uint16", nodata=0, tiled=True,
        blockxsize=32, blockysize=32, compress="deflate", transform=from_origin(*origin, 10, 10),
    )
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.clip(image * 10000, 1, 65535).astype("uint16"))
        for i, b in enumerate(BANDS[:nb]):
            dst.set_band_description(i + 1, b)
        dst.update_tags(ACQUISITION_DATETIME=when.strftime("%Y-%m-%dT%H:%M:%SZ"), PLATFORM="sentinel-2a")
    if scl is not None:
        mprof = dict(profile, count=1, dtype="uint8", nodata=0)
        with rasterio.open(folder / f"{name}_SCL.tif", "w", **mprof) as dst:
            dst.write(scl.astype("uint8"), 1)
    return path


@pytest.fixture
def make_series(tmp_path: Path) -> Callable[..., tuple[list[Path], tuple[slice, slice], list[datetime]]]:
    """A series of small scenes: vegetation with a roof square appearing at ``change_at``."""

    def make(
        n: int = 6, change_at: int = 3, size: int = 64, cloudy: tuple[int, ...] = (), seed: int = 0,
        folder: Path | None = None,
    ) -> tuple[list[Path], tuple[slice, slice], list[datetime]]:
        rng = np.random.default_rng(seed)
        folder = folder or tmp_path / "scenes"
        square = (slice(20, 32), slice(24, 36))
        dates = [datetime(2023, 3, 1, 2, 15, tzinfo=UTC) + timedelta(days=30 * i) for i in range(n)]
        paths = []
        for i, d in enumerate(dates):
            img = np.broadcast_to(VEG[:, None, None], (6, size, size)).copy()
            img *= rng.uniform(0.9, 1.1, (1, size, size)).astype(np.float32)
            if i >= change_at:
                img[:, square[0], square[1]] = ROOF[:, None, None]
            img += rng.normal(0, 0.004, img.shape).astype(np.float32)
            scl = np.full((size, size), 4, np.uint8)
            if i in cloudy:
                scl[:] = 9
                img[:] = 0.7
            paths.append(write_scene(folder, d, img, scl))
        return paths, square, dates

    return make


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[tuple[str, int, int]]]:
    """`run_demo` once per worker, its world generated once per test session (about a minute and a half).

    Under xdist the first worker that needs the world generates it (and its catalog) in the session's shared
    folder, holding a lock; the others wait for it and link their own output's ``world`` to it, so
    ``run_demo`` reuses it there as it reuses any complete world.  Only the detection run is per worker.
    """
    from filelock import FileLock

    from sitewatch.demo import run_demo

    calls: list[tuple[str, int, int]] = []
    progress = lambda s, d, t: calls.append((s, d, t))  # noqa: E731
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # one process: nothing to share
        return run_demo(tmp_path_factory.mktemp("demo"), progress=progress), calls
    shared = base.parent / "demo-shared"
    with FileLock(str(base.parent / "demo-shared.lock")):
        if not (shared / "world-progress.json").exists():  # this worker generates the world, runs the demo there
            summary = run_demo(shared, progress=progress)
            world_steps = [c for c in calls if c[0] == "world"]
            (shared / "world-progress.json").write_text(json.dumps(world_steps))
            return summary, calls
    # the world's progress as its generation reported it, then this run's own
    calls.extend(tuple(c) for c in json.loads((shared / "world-progress.json").read_text()))
    out = tmp_path_factory.mktemp("demo")
    (out / "world").symlink_to(shared / "world", target_is_directory=True)
    return run_demo(out, progress=progress), calls


SEMIREAL = REPO.parent / "shared" / "tools" / "semireal"


@pytest.fixture(scope="session")
def semireal_rennes(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The semi-real Rennes series of the shared fixture (real OSCD surfaces, 14 cloudy dates, exact truth),
    built by its own builder into a temporary folder: ``scenes/catalog.json``, ``truth.tif``, ``truth.json``."""
    builder = SEMIREAL / "build_series.py"
    if not builder.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the semi-real series builder {builder} is missing (CI=true requires it)")
        pytest.skip(f"the semi-real series builder {builder} is not there")
    out = tmp_path_factory.mktemp("semireal") / "rennes"
    # the fixture's own builder script, run as its README says (a separate program, not a sitewatch command)
    subprocess.run([sys.executable, str(builder), "rennes", str(out)], check=True, capture_output=True,
                   env={**os.environ, "SITEWATCH_DATA": str(real_data)}, timeout=600)
    return out


# -- the storage suite on PostgreSQL ------------------------------------------------------------------------
#: `SITEWATCH_TEST_STORE=postgres`: the tests marked `storage` run with each home's store on a new database of a
#: PostgreSQL cluster started on 127.0.0.1 for the session (`make test` runs them so, after the whole suite; in
#: this process only: a command a test runs in a process of its own uses the home's SQLite file)
_PG_DATABASES = iter(range(1, 1_000_000))


@pytest.fixture(scope="session")
def _pg_cluster() -> Any:
    from .servers import have_postgres, postgres_cluster, require

    require("PostgreSQL 15", have_postgres())
    with postgres_cluster() as pg:
        yield pg


@pytest.fixture(autouse=True)
def _store_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `SITEWATCH_TEST_STORE=postgres`, a storage test's homes each get a new PostgreSQL database: the
    settings' database URL (unless one is given) names it instead of the home's SQLite file."""
    if os.environ.get("SITEWATCH_TEST_STORE") != "postgres" or request.node.get_closest_marker("storage") is None:
        return
    from sitewatch.settings import Settings

    pg = request.getfixturevalue("_pg_cluster")
    made: dict[str, str] = {}

    def url_of(settings: Settings) -> str:
        if settings.db_url:
            return settings.db_url
        home = str(Path(settings.home).resolve())
        if home not in made:
            made[home] = pg.create_database(f"t{os.getpid()}_{next(_PG_DATABASES)}")
        return made[home]

    monkeypatch.setattr(Settings, "database_url", property(url_of))
