"""Imagery sources, pluggable by name: find the scenes of a place and time, read their windows.

* ``local``: GeoTIFF/COG files and folders (:class:`LocalSource`);
* ``stac``: any STAC API or static STAC catalog, with presets for Sentinel-2 L2A and Landsat C2 L2
  (:class:`StacSource`).

``get_source(name, **options).search(geometry_wgs84, start, end)`` returns scenes; the readers
(:func:`read_reflectance_window`, :func:`read_scl_window`, ...) read any scene's site window, local or over
HTTP, from what the scene records.  :func:`write_static_catalog` publishes local scenes as a static catalog.
"""

from __future__ import annotations

from ._http import (
    DEFAULT_GDAL_OPTIONS,
    gdal_env,
    gdal_http_options,
    get_signer,
    planetary_computer_signer,
    register_signer,
)
from ._retry import RetryPolicy
from .base import (
    Source,
    SourceError,
    SourceNotFound,
    available_sources,
    describe_sources,
    get_source,
    register_source,
)
from .local import LocalSource
from .presets import PRESETS, Preset, clear_from_qa_pixel, get_preset, qa_pixel_to_scl
from .read import (
    read_band_window,
    read_bands_window,
    read_reflectance_window,
    read_scene_window,
    read_scl_window,
)
from .stac import StacSource, item_to_scene
from .stac_write import write_static_catalog

__all__ = [
    "DEFAULT_GDAL_OPTIONS",
    "LocalSource",
    "PRESETS",
    "Preset",
    "RetryPolicy",
    "Source",
    "SourceError",
    "SourceNotFound",
    "StacSource",
    "available_sources",
    "clear_from_qa_pixel",
    "describe_sources",
    "gdal_env",
    "gdal_http_options",
    "get_preset",
    "get_signer",
    "get_source",
    "item_to_scene",
    "planetary_computer_signer",
    "qa_pixel_to_scl",
    "read_band_window",
    "read_bands_window",
    "read_reflectance_window",
    "read_scene_window",
    "read_scl_window",
    "register_signer",
    "register_source",
    "write_static_catalog",
]
