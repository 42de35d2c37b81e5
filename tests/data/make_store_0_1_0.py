"""Writes ``store_0_1_0.sql``: a small database as the release before the ``store/`` package wrote it.

Run once, with the code of that release (commit cb4318d, ``git worktree add /tmp/old cb4318d``), from the repo
root: ``PYTHONPATH=/tmp/old/src:. python tests/data/make_store_0_1_0.py``.  The SQL dump (schema and rows) is
what tests/test_store_upgrade.py upgrades and reads with the current code; do not regenerate it with a newer
release, or the test no longer checks the upgrade from that one.
"""

from __future__ import annotations

import sqlite3
import tempfile
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from shapely.geometry import box
from tests.conftest import CRS, ORIGIN, ROOF, VEG, write_scene

from sitewatch.alerts import add_endpoint, set_rule
from sitewatch.areas import add_area
from sitewatch.catalog import read_scenes
from sitewatch.geo import to_crs
from sitewatch.monitor import monitor_once
from sitewatch.settings import get_settings
from sitewatch.sites import make_site
from sitewatch.store import Store

OUT = Path(__file__).with_name("store_0_1_0.sql")


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    square = (slice(20, 32), slice(24, 36))
    paths = []
    for i in range(5):
        d = datetime(2023, 3, 1, 2, 15, tzinfo=UTC) + timedelta(days=30 * i)
        img = np.broadcast_to(VEG[:, None, None], (6, 64, 64)).copy()
        img *= rng.uniform(0.9, 1.1, (1, 64, 64)).astype(np.float32)
        if i >= 3:
            img[:, square[0], square[1]] = ROOF[:, None, None]
        img += rng.normal(0, 0.004, img.shape).astype(np.float32)
        paths.append(write_scene(tmp / "scenes", d, img, np.full((64, 64), 4, np.uint8)))
    st = get_settings(home=tmp / "home")
    store = Store(st.database_url)
    x0, y0 = ORIGIN
    store.add_site(make_site("base", to_crs(box(x0 + 20, y0 - 620, x0 + 620, y0 - 20), CRS, "EPSG:4326"),
                             aliases=("the base",)))
    store.add_source("archive", "local", {"path": str(tmp / "scenes")})
    set_rule(store, "base", min_area_m2=100, quiet_hours="22-06")
    add_endpoint(store, "webhook", "http://127.0.0.1:9/hook", secret="s3cret")
    add_endpoint(store, "email", "ops@example.org", sites=["base"])
    add_area(store, "valley", around="base", radius_km=1.0, min_area_m2=500, added_by="tester", reason="why")
    store.add_scenes(read_scenes(paths[:4]))
    now = datetime(2023, 7, 1, 12, tzinfo=UTC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monitor_once(store, st, ["base"], "index", fetch=False, deliver=False, reports=False, now=now,
                     engine="tracker")
    url = st.database_url.removeprefix("sqlite:///")
    con = sqlite3.connect(url)
    OUT.write_text("\n".join(con.iterdump()) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
