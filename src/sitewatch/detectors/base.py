"""Detector registry and the pairwise detector interface.

A detector compares two co-registered images on one grid and returns a :class:`~sitewatch.types.ChangeMap`.
Images are float32 arrays ``(band, y, x)`` of surface reflectance (0..1), with the band names given
(``B02``, ``B03``, ``B04``, ``B08``, ``B11``, ``B12``, ... Sentinel-2 naming).  ``valid`` marks the pixels
that are clear in both images; detectors ignore the others (score 0, mask False).

Register a detector with :func:`register`; look it up by name with :func:`get_detector`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from .._registry import Registry
from ..errors import AllCloudError, DetectorNotFound, InvalidParameter, MissingBandError
from ..types import ChangeMap


class Detector(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def detect(
        self,
        before: np.ndarray,
        after: np.ndarray,
        bands: Sequence[str],
        valid: np.ndarray | None = None,
    ) -> ChangeMap:
        """Compare ``before`` and ``after``, float ``(band, y, x)`` reflectance on one grid (NaN = no data) whose
        bands are named ``bands``; ``valid`` (bool ``(y, x)``, optional) marks the usable pixels.  Pixels not
        valid, or without data in an image, get score 0 and mask False."""
        ...


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)`` (NDVI, MNDWI, ...); NaN or infinite where ``a + b`` is 0, without a warning."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a - b) / (a + b)


#: Fewest pixels valid in both images that a pairwise detector accepts to estimate scene statistics; the
#: tracker does not ask a detector about a date with fewer (see :func:`sitewatch.tracking.track_pixels`).
MIN_VALID_PIXELS = 16

_REGISTRY: Registry[Callable[..., Detector]] = Registry("change detector", DetectorNotFound)


def register(name: str) -> Callable[[Callable[..., Detector]], Callable[..., Detector]]:
    """Class decorator: make a detector available under ``name``."""
    return _REGISTRY.register(name)


def available() -> list[str]:
    """Names of the registered detectors, sorted."""
    return _REGISTRY.names()


def describe() -> dict[str, str]:
    """Name -> one-line description of every registered detector."""
    return {name: getattr(_REGISTRY[name], "description", "") for name in available()}


def get_detector(name: str, **params: Any) -> Detector:
    """Build the detector registered under ``name`` with ``params``; :class:`InvalidParameter` names a
    parameter the detector does not have (with those it has) or a value it refuses."""
    cls = _REGISTRY[name]
    if dataclasses.is_dataclass(cls):
        known = [f.name for f in dataclasses.fields(cls) if f.init]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise InvalidParameter(
                f"detector {name!r} has no parameter {', '.join(unknown)}; its parameters: {', '.join(known)}"
            )
    try:
        return cls(**params)
    except InvalidParameter:
        raise
    except ValueError as exc:
        raise InvalidParameter(f"detector {name!r}: {exc}") from None


def required_bands(detector: Detector) -> tuple[str, ...]:
    """The bands ``detector`` needs (its ``required_bands`` attribute; none named: any two or more bands)."""
    return tuple(getattr(detector, "required_bands", ()))


def engine_of(detector: Detector) -> str:
    """The engine that turns ``detector``'s comparisons into dated changes by default (its ``engine``
    attribute): ``tracker`` for a detector that rates each image on its own (``index``: its land-use cycle
    memory lives in the tracker), ``series`` for one that needs scene statistics of a pair (cva, irmad,
    urban, learned: composites of several clear looks give it clean images, see :mod:`sitewatch.series`)."""
    return str(getattr(detector, "engine", "series"))


def is_pixelwise(detector: Detector) -> bool:
    """Whether ``detector`` scores each pixel from that pixel's two spectra alone, with a fixed threshold (its
    ``pixelwise`` attribute; ``index``): no scene statistic, no window.  Such a detector gives a pixel the same
    score and mask whatever other pixels it is shown with, so a caller that needs a few pixels' verdicts may
    ask for those alone (the tracker's envelope does, :func:`sitewatch.tracking.track_pixels`)."""
    return bool(getattr(detector, "pixelwise", False))


def for_registered_stack(detector: Detector) -> Detector:
    """``detector`` without its own co-registration step, for images already registered onto one reference
    (a tracked stack is, see :func:`sitewatch.pipeline.coregister_stack`): measuring the shift again on every
    date would cost a phase correlation per date and find nothing to remove."""
    if dataclasses.is_dataclass(detector) and any(f.name == "coregister" for f in dataclasses.fields(detector)):
        return dataclasses.replace(detector, coregister=False)  # type: ignore[type-var]
    return detector


def missing_bands(required: Sequence[str], have: Sequence[str]) -> list[str]:
    """The bands of ``required`` that ``have`` lacks (B8/B08 style aliases accepted)."""
    got = {_norm(b) for b in have}
    return [b for b in required if _norm(b) not in got]


def params_of(detector: Detector) -> dict[str, Any]:
    """The parameters of a detector (its dataclass fields), for provenance."""
    if dataclasses.is_dataclass(detector) and not isinstance(detector, type):
        return dataclasses.asdict(detector)
    return {}


def band_index(bands: Sequence[str], name: str) -> int:
    """Index of ``name`` in ``bands``, accepting B8/B08 style aliases."""
    norm = [_norm(b) for b in bands]
    try:
        return norm.index(_norm(name))
    except ValueError:
        raise MissingBandError(
            f"band {name} is missing (have {', '.join(bands)}); name the bands of a GeoTIFF in its band "
            "descriptions (B02, B03, B04, B08, B11, B12, ...)"
        ) from None


def _norm(b: str) -> str:
    b = b.upper()
    if b.startswith("B") and b[1:].isdigit():
        return f"B{int(b[1:]):02d}"
    return b


def valid_mask(before: np.ndarray, after: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Pixels usable by a detector: finite in both images and inside ``valid``."""
    ok = np.isfinite(before).all(axis=0) & np.isfinite(after).all(axis=0)
    if valid is not None:
        ok &= valid.astype(bool)
    return ok


def check_inputs(
    before: np.ndarray, after: np.ndarray, bands: Sequence[str], valid: np.ndarray | None
) -> np.ndarray:
    """Check the shapes of a detector's inputs and return the mask of the pixels usable in both images.

    Raises ``ValueError`` for arrays that do not match and :class:`~sitewatch.errors.AllCloudError` when
    fewer than :data:`MIN_VALID_PIXELS` pixels are valid in both images.
    """
    if before.ndim != 3 or before.shape != after.shape:
        raise ValueError(
            f"before and after must be (band, y, x) arrays of one shape; got {before.shape} and "
            f"{after.shape}: put both images on one grid with the same bands first"
        )
    if before.shape[0] < 2:
        raise ValueError(f"a pairwise detector needs at least 2 bands, got {before.shape[0]}")
    if len(bands) != before.shape[0]:
        raise ValueError(f"{len(bands)} band names given for {before.shape[0]} bands")
    if valid is not None and valid.shape != before.shape[1:]:
        raise ValueError(f"valid mask has shape {valid.shape}, the images {before.shape[1:]}")
    ok = valid_mask(before, after, valid)
    n = int(ok.sum())
    if n < MIN_VALID_PIXELS:
        raise AllCloudError(
            f"only {n} pixel(s) have data in both images (need {MIN_VALID_PIXELS}); "
            "check that the two images overlap and are not masked out (clouds, nodata)"
        )
    return ok


def change_map(name: str, ok: np.ndarray, values: np.ndarray, threshold: float, params: dict[str, Any]) -> ChangeMap:
    """The :class:`ChangeMap` of detector ``name`` from the ``values`` of the pixels ``ok`` (in their order):
    the score, change where it is over ``threshold``, and score 0 and no change at the other pixels."""
    score = np.zeros(ok.shape, np.float32)
    score[ok] = values
    mask = np.zeros(ok.shape, bool)
    mask[ok] = values > threshold
    return ChangeMap(score=score, mask=mask, threshold=float(threshold), detector=name, params=params)
