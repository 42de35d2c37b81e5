"""sitewatch: watch places on Earth in multi-date satellite imagery.

Find what was built, dug or cleared at the sites on a watchlist, date it between two clear observations,
and publish the evidence.  The CLI (``sitewatch``) and every other face call the functions named here.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    AllCloudError,
    DetectorNotFound,
    ImageryError,
    InvalidSite,
    MissingCRSError,
    NoOverlapError,
    SiteNotFound,
    SitewatchError,
    SitewatchWarning,
    StoreError,
)
from .settings import Settings, get_settings  # noqa: E402
from .types import Change, ChangeMap, Scene, Site, SiteResult  # noqa: E402

__all__ = [
    "__version__",
    "AllCloudError",
    "Change",
    "ChangeMap",
    "DetectorNotFound",
    "ImageryError",
    "InvalidSite",
    "MissingCRSError",
    "NoOverlapError",
    "Scene",
    "Settings",
    "Site",
    "SiteNotFound",
    "SiteResult",
    "SitewatchError",
    "SitewatchWarning",
    "StoreError",
    "get_settings",
    "Store",
    "make_site",
    "ingest",
    "detect_site",
    "read_scene",
]


def __getattr__(name: str) -> object:
    # the heavier modules load on first use
    if name == "Store":
        from .store import Store

        return Store
    if name == "make_site":
        from .sites import make_site

        return make_site
    if name in ("ingest", "detect_site"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "read_scene":
        from .catalog import read_scene

        return read_scene
    raise AttributeError(f"module 'sitewatch' has no attribute {name!r}")
