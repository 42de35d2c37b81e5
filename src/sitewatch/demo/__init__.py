"""The demo: a synthetic, georeferenced Sentinel-2-like world and the whole pipeline run over it.

``run_demo(out)`` generates the world under ``out/world`` (or reuses it), makes ``out`` a sitewatch home
(store ``out/sitewatch.db``) with the known base on the watchlist as ``Yeongjeo-dong``, publishes the
scenes as a static STAC catalog (``out/world/stac``) and ingests them through the ``stac`` source,
detects and tracks changes, and writes ``out/report/index.html`` and ``out/detections.geojson``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..types import SiteResult

__all__ = ["DemoSummary", "run_demo", "BASE_NAME", "BASE_RADIUS_M"]

BASE_NAME = "Yeongjeo-dong"
BASE_RADIUS_M = 2000.0
DEMO_COLLECTION = "sitewatch-demo-s2-l2a"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DemoSummary:
    out: Path
    world: Path
    truth: Path
    report: Path
    detections: Path
    result: SiteResult


def run_demo(
    out: str | Path = "sitewatch-demo",
    seed: int = 7,
    method: str | None = None,
    progress: Progress | None = None,
    regenerate: bool = False,
) -> DemoSummary:
    """Generate (or reuse) the demo world under ``out`` and run the pipeline for the known base."""
    from ..catalog import read_scenes
    from ..export import export_changes
    from ..pipeline import DEFAULT_METHOD, detect_site, ingest_source
    from ..report import write_report
    from ..settings import get_settings
    from ..sites import make_site
    from ..sources import StacSource, write_static_catalog
    from ..store import Store
    from .world import BASE_LONLAT, generate_world, world_is_complete

    out = Path(out)
    world = out / "world"
    if regenerate or not world_is_complete(world):
        shutil.rmtree(world / "stac", ignore_errors=True)  # the catalog of an older world
        generate_world(world, seed=seed, progress=(lambda d, t: progress("world", d, t)) if progress else None)
    settings = get_settings(home=out)
    store = Store(settings.database_url)
    lon, lat = BASE_LONLAT
    store.add_site(
        make_site(
            BASE_NAME, lon=lon, lat=lat, radius_m=BASE_RADIUS_M,
            aliases=("Yeongjeo-dong missile base", "Yongjo-ri"),
            notes="Synthetic demo site: a missile operating base in a mountain valley (demo world).",
            added_by="sitewatch demo", reason="known base from open reporting",
        ),
        replace=True,
    )
    # the demo reads its world as production reads an archive: through a STAC catalog (a static one here)
    catalog = world / "stac" / "catalog.json"
    if not catalog.exists():
        write_static_catalog(read_scenes([world / "scenes"]), world / "stac", DEMO_COLLECTION,
                             title="sitewatch demo world", description="Synthetic Sentinel-2-like L2A scenes")
    ingest_source(StacSource(str(catalog), collections=[DEMO_COLLECTION]), store, [BASE_NAME])
    result = detect_site(store, BASE_NAME, method or DEFAULT_METHOD, progress=progress)
    report = write_report(result, out / "report")
    detections = export_changes(result.changes, out / "detections.geojson", "geojson")
    return DemoSummary(out=out, world=world, truth=world / "truth.geojson", report=report,
                       detections=detections, result=result)
