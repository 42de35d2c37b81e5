"""Collection presets: which STAC asset holds which band, the cloud mask and how to scale the numbers.

Bands are named the Sentinel-2 way everywhere in sitewatch (``B02`` blue, ``B03`` green, ``B04`` red, ``B08``
near infrared, ``B11``/``B12`` short-wave infrared); a preset maps those names to a collection's asset keys.
Masks are turned into Sentinel-2 scene classification (SCL) codes, so one masking rule serves every mission:
Landsat's ``QA_PIXEL`` bit flags are converted by :func:`qa_pixel_to_scl`, any other mask by a
:class:`MaskDecoding` (built from the STAC classification extension, the asset's roles or the user's clear
values; see :func:`mask_decoding`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

import numpy as np

from ..masks import SCL_CLEAR, SCL_CLEAR_LAND, SCL_CLOUD_HIGH, SCL_CLOUD_SHADOW, SCL_DEFECTIVE, SCL_NODATA, SCL_SNOW_ICE

__all__ = [
    "Preset",
    "PRESETS",
    "get_preset",
    "COMMON_NAMES",
    "CLASS_NAME_CODES",
    "MASK_ROLES",
    "MaskDecoding",
    "bitfields_decoding",
    "class_code",
    "classes_decoding",
    "roles_decoding",
    "with_clear_values",
    "worst_scl",
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
DecodingKind = Literal["scl", "qa_pixel", "classes", "bitfields"]

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


# -- any other mask: the STAC classification extension, mask roles, the user's clear values ------------------

#: Class names (STAC classification extension) -> SCL code.  Names are compared lower-cased, with spaces and
#: hyphens read as underscores.  Sentinel-2 SCL's own class names are here with their own codes, so an SCL
#: raster described by its classes reads as it does as SCL.  A name that is not here is not clear.
CLASS_NAME_CODES: dict[str, int] = {
    **dict.fromkeys(("nodata", "no_data", "fill", "fill_value"), SCL_NODATA),
    **dict.fromkeys(("saturated_or_defective", "saturated", "defective"), SCL_DEFECTIVE),
    **dict.fromkeys(("dark_area_pixels", "dark_area", "dark_features"), 2),
    **dict.fromkeys(("cloud_shadow", "cloud_shadows", "shadow", "shadows"), SCL_CLOUD_SHADOW),
    **dict.fromkeys(("clear", "clear_land", "clear_sky", "land", "vegetation"), SCL_CLEAR_LAND),
    **dict.fromkeys(("not_vegetated", "bare_soil", "bare_soils", "bare"), 5),
    **dict.fromkeys(("water", "clear_water"), 6),
    "unclassified": 7,
    **dict.fromkeys(("cloud_medium_probability", "cloud_medium", "dilated_cloud"), 8),
    **dict.fromkeys(("cloud", "clouds", "cloud_high", "cloud_high_probability", "opaque_cloud"), SCL_CLOUD_HIGH),
    **dict.fromkeys(("thin_cirrus", "cirrus", "haze", "thin_cloud"), 10),
    **dict.fromkeys(("snow", "snow_ice", "snow_or_ice", "ice"), SCL_SNOW_ICE),
}

#: Asset roles of mask rasters (STAC best practices) and, for a mask without classes, what a non-zero value is.
ROLE_CODES: dict[str, int] = {"cloud": SCL_CLOUD_HIGH, "cloud-shadow": SCL_CLOUD_SHADOW, "snow-ice": SCL_SNOW_ICE}
MASK_ROLES: tuple[str, ...] = (*ROLE_CODES, "data-mask")

_NEGATED = re.compile(r"(not|no|non)[_\s-]")  # "not_cloud", "no cloud"

# how bad an SCL code is, to combine statements (bit fields, several mask rasters): the worst one wins
_RANK = np.full(256, 3, np.uint8)  # codes SCL does not have rank as "defective"
for _rank, _codes in enumerate(((4,), (2, 5, 7), (6,), (1,), (11,), (3,), (10,), (8,), (9,), (0,))):
    _RANK[list(_codes)] = _rank


def worst_scl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel, the worse of two SCL codes: no data, then cloud, cirrus, shadow, snow, defective, water, clear."""
    a, b = np.asarray(a, np.uint8), np.asarray(b, np.uint8)
    return np.where(_RANK[b] > _RANK[a], b, a)


def class_code(name: str) -> int | None:
    """The SCL code of a class name, or None when sitewatch does not know the name."""
    return CLASS_NAME_CODES.get(re.sub(r"[\s\-]+", "_", str(name).strip().lower()))


@dataclass(frozen=True)
class MaskDecoding:
    """How the values of one mask raster become SCL codes.

    ``kind``: ``"scl"`` (the values are SCL codes), ``"qa_pixel"`` (Landsat C2 bit flags, see
    :func:`qa_pixel_to_scl`), ``"classes"`` (``classes`` maps a value to its SCL code, ``default`` is the code
    of every other value) or ``"bitfields"`` (``bitfields`` of the STAC classification extension: each field's
    class is named as in :data:`CLASS_NAME_CODES`, the worst wins, a pixel no field names is clear).
    ``nodata``: the raster value without data; None: the raster's own nodata, else 0 for ``"scl"``, 1 (fill)
    for ``"qa_pixel"`` and none at all for the others (0 may be a class).
    """

    kind: DecodingKind = "scl"
    classes: Mapping[int, int] = field(default_factory=dict)
    default: int = SCL_DEFECTIVE
    bitfields: tuple[Mapping[str, Any], ...] = ()
    nodata: float | None = None

    def to_scl(self, values: np.ndarray) -> np.ndarray:
        """SCL codes (uint8) of raw mask values; negative values (no data, as the reader marks it) -> 0."""
        values = np.asarray(values)
        if self.kind == "scl":
            return np.where(values < 0, SCL_NODATA, values).astype(np.uint8)
        u, inverse = np.unique(values, return_inverse=True)
        if self.kind == "qa_pixel":
            codes = qa_pixel_to_scl(np.clip(u, 0, None))
        elif self.kind == "bitfields":
            codes = _bitfield_codes(np.clip(u, 0, None).astype(np.int64), self.bitfields)
        elif self.kind == "classes":
            codes = np.array([self.classes.get(int(v), self.default) for v in u], np.uint8)
        else:
            raise ValueError(f"unknown mask kind {self.kind!r} (expected one of {', '.join(get_args(DecodingKind))})")
        codes = np.where(u < 0, SCL_NODATA, codes).astype(np.uint8)
        return codes[inverse.reshape(values.shape)]

    def to_properties(self, prefix: str = "mask_") -> dict[str, Any]:
        """This decoding as JSON-able scene properties (``mask_kind``, ``mask_classes``, ...)."""
        out: dict[str, Any] = {f"{prefix}kind": self.kind}
        if self.kind == "classes":
            out[f"{prefix}classes"] = {str(k): int(v) for k, v in sorted(self.classes.items())}
            out[f"{prefix}default"] = int(self.default)
        if self.kind == "bitfields":
            out[f"{prefix}bitfields"] = [dict(b) for b in self.bitfields]
        if self.nodata is not None:
            out[f"{prefix}nodata"] = self.nodata
        return out

    @classmethod
    def from_properties(cls, props: Mapping[str, Any], prefix: str = "mask_") -> MaskDecoding:
        """The decoding that :meth:`to_properties` wrote (scenes of older runs: ``scl`` or ``qa_pixel``)."""
        kind = props.get(f"{prefix}kind") or "scl"
        if kind not in get_args(DecodingKind):
            raise ValueError(f"unknown mask kind {kind!r} (expected one of {', '.join(get_args(DecodingKind))})")
        classes = {int(k): int(v) for k, v in (props.get(f"{prefix}classes") or {}).items()}
        return cls(
            kind=cast(DecodingKind, kind), classes=classes, default=int(props.get(f"{prefix}default", SCL_DEFECTIVE)),
            bitfields=tuple(props.get(f"{prefix}bitfields") or ()), nodata=props.get(f"{prefix}nodata"),
        )


def classes_decoding(classes: Sequence[Mapping[str, Any]]) -> tuple[MaskDecoding, list[str]]:
    """The decoding of a ``classification:classes`` list, and the class names it does not know (not clear).

    A class is named by ``name`` (else ``description``); one flagged ``nodata: true`` is no data.  Values
    that no class lists are not clear.
    """
    table: dict[int, int] = {}
    unknown: list[str] = []
    for c in classes:
        value = int(c["value"])
        if c.get("nodata") is True:
            table[value] = SCL_NODATA
            continue
        name = c.get("name") or c.get("description") or ""
        code = class_code(name)
        if code is None and c.get("description"):
            code = class_code(c["description"])
        if code is None:
            unknown.append(f"{value} {name!r}" if name else str(value))
            code = SCL_DEFECTIVE
        table[value] = code
    return MaskDecoding("classes", table, SCL_DEFECTIVE), unknown


def bitfields_decoding(bitfields: Sequence[Mapping[str, Any]]) -> MaskDecoding:
    """The decoding of a ``classification:bitfields`` list (Landsat-style bit flags)."""
    fields = tuple(
        {"offset": int(b["offset"]), "length": int(b.get("length", 1)), "name": str(b.get("name", "")),
         "classes": [{"value": int(c["value"]), "name": str(c.get("name", ""))} for c in b.get("classes", [])]}
        for b in bitfields
    )
    return MaskDecoding("bitfields", bitfields=fields)


def _bitfield_codes(values: np.ndarray, bitfields: Sequence[Mapping[str, Any]]) -> np.ndarray:
    out = np.full(values.shape, SCL_CLEAR_LAND, np.uint8)
    for b in bitfields:
        v = (values >> int(b["offset"])) & ((1 << int(b.get("length", 1))) - 1)
        for c in b.get("classes", []):
            name = str(c.get("name", ""))
            code = class_code(name)
            # a one-bit flag set, its class named loosely ("dilated"): the field's name says what it flags
            flag = int(b.get("length", 1)) == 1 and int(c["value"]) == 1 and not _NEGATED.match(name.lower())
            if code is None and flag:
                code = class_code(str(b.get("name", "")))
            if code is not None:
                here = v == int(c["value"])
                out[here] = worst_scl(out[here], np.full(int(here.sum()), code, np.uint8))
    return out


def roles_decoding(roles: Iterable[str]) -> MaskDecoding | None:
    """The decoding of a mask known only by its asset roles: 0 clear, non-zero the worst role's class
    (``cloud``, ``cloud-shadow``, ``snow-ice``); a ``data-mask`` alone: 0 no data, non-zero data."""
    roles = set(roles)
    codes = [ROLE_CODES[r] for r in ROLE_CODES if r in roles]
    if codes:
        worst = max(codes, key=lambda c: int(_RANK[c]))
        return MaskDecoding("classes", {0: SCL_CLEAR_LAND}, worst)
    if "data-mask" in roles:
        return MaskDecoding("classes", {0: SCL_NODATA}, SCL_CLEAR_LAND)
    return None


def with_clear_values(decoding: MaskDecoding, clear_values: Collection[int]) -> MaskDecoding:
    """``decoding`` overridden by the user: ``clear_values`` are clear, every other value is not (its class
    kept when it names cloud, shadow or snow), no data stays no data."""
    if decoding.kind == "scl":
        classes: Mapping[int, int] = {i: i for i in range(12)}
    elif decoding.kind == "classes":
        classes = decoding.classes
    else:  # bit flags: what is not listed is not clear
        classes = {}
    table = {v: (SCL_DEFECTIVE if c in SCL_CLEAR else c) for v, c in classes.items()}
    for v in clear_values:
        if table.get(int(v)) != SCL_NODATA:
            table[int(v)] = SCL_CLEAR_LAND
    default = decoding.default if decoding.kind == "classes" and decoding.default not in SCL_CLEAR else SCL_DEFECTIVE
    nodata = decoding.nodata
    if nodata is None and decoding.kind == "qa_pixel":
        nodata = QA_FILL
    return MaskDecoding("classes", table, default, nodata=nodata)
