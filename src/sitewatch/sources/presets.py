"""Collection presets: which STAC asset holds which band, the cloud mask and how to scale the numbers.

Bands are named the Sentinel-2 way everywhere in sitewatch (``B02`` blue, ``B03`` green, ``B04`` red, ``B08``
near infrared, ``B11``/``B12`` short-wave infrared); a preset maps those names to a collection's asset keys.
Masks are turned into Sentinel-2 scene classification (SCL) codes, so one masking rule serves every mission:
Landsat's ``QA_PIXEL`` bit flags are converted by :func:`qa_pixel_to_scl`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = [
    "Preset",
    "PRESETS",
    "get_preset",
    "COMMON_NAMES",
    "QA_FILL",
    "QA_DILATED_CLOUD",
    "QA_CIRRUS",
    "QA_CLOUD",
    "QA_SHADOW",
    "QA_SNOW",
    "QA_WATER",
    "clear_from_qa_pixel",
    "qa_pixel_to_scl",
]

MaskKind = Literal["scl", "qa_pixel"]

#: STAC ``eo`` common band names -> sitewatch (Sentinel-2) band names.
COMMON_NAMES: dict[str, str] = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge": "B05",
    "nir": "B08",
    "nir08": "B8A",
    "nir09": "B09",
    "cirrus": "B10",
    "swir16": "B11",
    "swir22": "B12",
}


@dataclass(frozen=True)
class Preset:
    """How to read one collection.  ``bands``: sitewatch band -> candidate asset keys, first match wins."""

    name: str
    collections: tuple[str, ...]
    bands: dict[str, tuple[str, ...]]
    mask_assets: tuple[str, ...]
    mask_kind: MaskKind
    scale: float
    offset: float = 0.0
    #: added to ``offset`` when the item's processing baseline is >= 04.00 and its assets do not say their
    #: own offset (Sentinel-2 L2A from baseline 04.00 stores reflectance x 10000 + 1000).
    baseline_offset: float = 0.0
    description: str = ""
    nodata: dict[str, int] = field(default_factory=dict)

    def asset_for(self, band: str, keys: set[str] | dict[str, object]) -> str | None:
        return next((k for k in self.bands.get(band, ()) if k in keys), None)

    def matches(self, keys: set[str] | dict[str, object]) -> bool:
        """True if an item with these asset keys has every band of this preset."""
        return all(self.asset_for(b, keys) for b in self.bands)


SENTINEL2_L2A = Preset(
    name="sentinel-2-l2a",
    collections=("sentinel-2-l2a",),
    bands={
        "B02": ("blue", "B02"),
        "B03": ("green", "B03"),
        "B04": ("red", "B04"),
        "B08": ("nir", "B08"),
        "B11": ("swir16", "B11"),
        "B12": ("swir22", "B12"),
    },
    mask_assets=("scl", "SCL"),
    mask_kind="scl",
    scale=1e-4,
    baseline_offset=-0.1,
    description="Sentinel-2 L2A: Earth Search (blue, ..., scl) and Planetary Computer (B02, ..., SCL) asset keys",
)

LANDSAT_C2_L2 = Preset(
    name="landsat-c2-l2",
    collections=("landsat-c2-l2",),
    bands={
        "B02": ("blue",),
        "B03": ("green",),
        "B04": ("red",),
        "B08": ("nir08",),
        "B11": ("swir16",),
        "B12": ("swir22",),
    },
    mask_assets=("qa_pixel",),
    mask_kind="qa_pixel",
    scale=2.75e-5,
    offset=-0.2,
    description="Landsat Collection 2 Level-2 surface reflectance, QA_PIXEL bit masks",
    nodata={"qa_pixel": 1},
)

PRESETS: dict[str, Preset] = {p.name: p for p in (SENTINEL2_L2A, LANDSAT_C2_L2)}


def get_preset(name: str | Preset | None) -> Preset | None:
    if name is None or isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"no collection preset named {name!r}; choose one of: {', '.join(PRESETS)}") from None


# Landsat Collection 2 QA_PIXEL bits
QA_FILL = 1 << 0
QA_DILATED_CLOUD = 1 << 1
QA_CIRRUS = 1 << 2
QA_CLOUD = 1 << 3
QA_SHADOW = 1 << 4
QA_SNOW = 1 << 5
QA_WATER = 1 << 7
_QA_NOT_CLEAR = QA_FILL | QA_DILATED_CLOUD | QA_CIRRUS | QA_CLOUD | QA_SHADOW | QA_SNOW


def clear_from_qa_pixel(qa: np.ndarray) -> np.ndarray:
    """True where a Landsat C2 ``QA_PIXEL`` value flags no fill, cloud, dilated cloud, cirrus, shadow or snow."""
    return (np.asarray(qa).astype(np.uint16) & _QA_NOT_CLEAR) == 0


def qa_pixel_to_scl(qa: np.ndarray) -> np.ndarray:
    """Landsat ``QA_PIXEL`` -> Sentinel-2 SCL codes: 0 fill, 9 cloud, 8 dilated cloud, 10 cirrus, 3 shadow,
    11 snow, 6 water, 4 clear land.  :func:`sitewatch.masks.clear_from_scl` of the result equals
    :func:`clear_from_qa_pixel`."""
    qa = np.asarray(qa).astype(np.uint16)
    scl = np.full(qa.shape, 4, np.uint8)
    for bit, code in (
        (QA_WATER, 6), (QA_SNOW, 11), (QA_SHADOW, 3), (QA_CIRRUS, 10), (QA_DILATED_CLOUD, 8), (QA_CLOUD, 9),
        (QA_FILL, 0),
    ):
        scl[(qa & bit) != 0] = code
    return scl
