"""A small learned change detector for Sentinel-2: a Siamese U-Net (FC-Siam-diff style) run with onnxruntime.

The network was trained on the OSCD cities (Daudt et al., IGARSS 2018) by ``make train``
(:mod:`sitewatch.train`, which needs the ``train`` extra: torch); at run time only onnxruntime is needed.
The weights ship with the package (``sitewatch/models/``) with a JSON file of metadata: the bands and their
normalisation, the training cities, the seed, the sitewatch version and git commit, and the
leave-one-city-out scores measured when it was trained.

Steps, each the same for every scene:

0. **Co-registration** (``coregister``, on by default): the residual translation of AFTER is measured by
   phase correlation and removed (:mod:`sitewatch.coreg`), exactly as for the ``urban`` detector.
1. **Normalisation, per image and per band** (:func:`normalise`): ``log`` of the reflectance, centred on its
   median and divided by its robust spread (1.4826 x MAD) over the valid pixels.  A gain between the dates,
   or between L1C top-of-atmosphere and L2A surface reflectance, is an offset of the log and disappears.
2. **Pair features** (:func:`pair_features`): per band, the difference of the two normalised dates in units
   of the scene's own no-change scatter (centred on its median, divided by 1.4826 x its MAD over the valid
   pixels, as the ``urban`` detector's z-scores), and two local chi-square maps of those z-scores (the
   visible bands and all bands, averaged over 3 x 3 pixels, ``log1p``).  They carry what a per-date
   normalisation cannot: how large a difference is compared with the rest of this scene's differences.
3. **Network**: both dates go through one shared encoder; the decoder sees the absolute differences of
   their features at every scale, with the pair features (averaged down to each scale), and gives the
   probability of change of every pixel.  The image is
   processed in overlapping tiles (``tile`` pixels; the margins of each tile are dropped), so memory is
   bounded whatever the image size.
4. **Decision**: change where the probability exceeds ``threshold``: by default the model's own, recorded in
   its metadata, the one with the best pooled F1 on its training cities (never on a city it is scored on).

Two models ship: one over the ten 10 m and 20 m bands B02, B03, B04, B05, B06, B07, B08, B8A, B11, B12 (in L1C
and L2A products alike; B01, B09, B10 are not used), and one over the six B02, B03, B04, B08, B11, B12 that
every detection run loads (and Landsat has), trained the same way on the same cities, run when the red-edge
bands are missing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import coreg
from ..constants import MAX_SHIFT
from ..errors import ImageryError
from ..types import ChangeMap
from .base import MIN_VALID_PIXELS, band_index, check_inputs, missing_bands, register

__all__ = [
    "MODEL_BANDS",
    "PAIR_CHANNELS",
    "SIX_BANDS",
    "LearnedDetector",
    "default_model",
    "load_metadata",
    "normalise",
    "pair_features",
    "predict",
    "prepare",
]

#: The bands the ten-band network reads, in this order.
MODEL_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
#: The bands the six-band network reads, in this order: the six every detection run loads (blue, green, red,
#: NIR and the two SWIR bands), which Landsat and the demo world have too, without Sentinel-2's red edge.
SIX_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
#: Reflectance floor before the log (deep shadow and water are noise below it).
FLOOR = 1e-3
#: Name of the shipped ten-band model in ``sitewatch/models``.
MODEL_FILE = "oscd_siamdiff.onnx"
#: Name of the shipped six-band model (:data:`SIX_BANDS`), used when the red-edge bands are missing.
SIX_MODEL_FILE = "oscd_siamdiff6.onnx"
#: Input size multiple required by the network (three 2x poolings).
_MULTIPLE = 8
#: Bands of the first chi-square map of :func:`pair_features` (the visible ones, as in the ``urban`` detector).
_VISIBLE = ("B02", "B03", "B04")
#: Channels of :func:`pair_features` for the ten-band model: one z-score per model band and two chi-square maps.
PAIR_CHANNELS = len(MODEL_BANDS) + 2


def default_model(bands: Sequence[str] = MODEL_BANDS) -> Path:
    """Path of the model shipped with the package for ``bands``: the ten-band model when they include
    :data:`MODEL_BANDS`, else the six-band one (:data:`SIX_BANDS`)."""
    name = MODEL_FILE if not missing_bands(MODEL_BANDS, bands) else SIX_MODEL_FILE
    return Path(str(resources.files("sitewatch") / "models" / name))


def load_metadata(model: str | Path) -> dict[str, Any]:
    """The JSON metadata next to ``model`` (``x.onnx`` -> ``x.json``); ``FileNotFoundError`` when either is
    missing."""
    meta = Path(model).with_suffix(".json")
    if not Path(model).is_file() or not meta.is_file():
        raise FileNotFoundError(
            f"learned model {model} (or its metadata {meta.name}) is missing; run `make train` to build it"
        )
    data: dict[str, Any] = json.loads(meta.read_text())
    return data


def _run_metadata(model: Path) -> dict[str, Any]:
    """:func:`load_metadata` for a run: a missing model is an :class:`~sitewatch.errors.ImageryError`."""
    try:
        return load_metadata(model)
    except FileNotFoundError as exc:
        raise ImageryError(str(exc)) from None


def normalise(img: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Per-band robust standardisation of ``log(max(img, FLOOR))`` over the pixels ``ok``; 0 outside them.

    ``img`` is float ``(band, y, x)`` reflectance; the result is float32 of the same shape.
    """
    out = np.zeros(img.shape, np.float32)
    for k in range(img.shape[0]):
        lg = np.log(np.maximum(np.nan_to_num(img[k], nan=FLOOR), FLOOR)).astype(np.float32)
        v = lg[ok]
        med = float(np.median(v))
        sigma = 1.4826 * float(np.median(np.abs(v - med)))
        if not sigma > 1e-6:
            sigma = float(np.std(v)) or 1.0
        out[k] = np.where(ok, np.clip((lg - med) / sigma, -10.0, 10.0), 0.0)
    return out


def pair_features(x1: np.ndarray, x2: np.ndarray, ok: np.ndarray | None = None) -> np.ndarray:
    """Scene-normalised differences of the normalised dates ``x1``/``x2`` ``(band, y, x)``: float32
    ``(band + 2, y, x)``, 0 outside ``ok`` (default: where any input is non-zero, as :func:`prepare`
    leaves the invalid pixels 0).  The bands are a model's (:data:`MODEL_BANDS` or :data:`SIX_BANDS`),
    which both begin with the visible B02, B03, B04.

    Channels: per band, ``x2 - x1`` centred on its median and divided by 1.4826 x its MAD over ``ok``
    (clipped to +-10); then ``log1p`` of the mean squared z-score of the visible bands and of all bands,
    averaged over a 3 x 3 window.  Computed over the whole scene (before tiling), so a tile sees the scene's
    statistics.
    """
    from scipy import ndimage

    if ok is None:
        ok = (x1 != 0).any(axis=0) | (x2 != 0).any(axis=0)
    z = np.zeros(x1.shape, np.float32)
    for k in range(x1.shape[0]):
        d = (x2[k] - x1[k]).astype(np.float32)
        v = d[ok]
        med = float(np.median(v)) if v.size else 0.0
        sigma = 1.4826 * float(np.median(np.abs(v - med))) if v.size else 1.0
        if not sigma > 1e-6:
            sigma = float(np.std(v)) if v.size else 1.0
            sigma = sigma if sigma > 1e-6 else 1.0
        z[k] = np.where(ok, np.clip((d - med) / sigma, -10.0, 10.0), 0.0)
    vis = [MODEL_BANDS.index(b) for b in _VISIBLE]  # the same first three in SIX_BANDS
    chi = []
    for sel in (vis, list(range(x1.shape[0]))):
        c = ndimage.uniform_filter((z[sel] ** 2).mean(axis=0), 3, mode="nearest")
        chi.append(np.where(ok, np.log1p(c), 0.0).astype(np.float32))
    return np.concatenate([z, np.stack(chi)]).astype(np.float32)


def prepare(
    before: np.ndarray,
    after: np.ndarray,
    bands: Sequence[str],
    valid: np.ndarray | None,
    coregister: bool = True,
    max_shift: float = MAX_SHIFT,
    model_bands: Sequence[str] = MODEL_BANDS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
    """The network's inputs: ``(x1, x2, ok, shift)``.

    Selects ``model_bands`` (raises :class:`~sitewatch.errors.MissingBandError` when one is missing),
    co-registers AFTER onto BEFORE (when ``coregister``; shifts over ``max_shift`` pixels are not applied) and
    normalises both dates (:func:`normalise`).  ``ok`` marks the pixels valid in both.  Training
    (:mod:`sitewatch.train`) uses this same function.
    """
    idx = [band_index(bands, b) for b in model_bands]
    ok = check_inputs(before, after, bands, valid)
    b = before[idx].astype(np.float32)
    a = after[idx].astype(np.float32)
    shift = (0.0, 0.0)
    if coregister:
        a, ok, shift = coreg.coregister(b, a, ok, max_shift, MIN_VALID_PIXELS)
    return normalise(b, ok), normalise(a, ok), ok, shift


@lru_cache(maxsize=4)
def _session(path: str, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads > 0:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def predict(
    session: Any, x1: np.ndarray, x2: np.ndarray, tile: int = 256, margin: int = 16, batch: int = 4
) -> np.ndarray:
    """Change probability ``(y, x)`` of normalised inputs ``(band, y, x)``, in overlapping tiles.

    Each tile is ``tile`` pixels square; its outer ``margin`` pixels are dropped (the network sees too little
    context there), so neighbouring tiles overlap by ``2 * margin``.  The image is mirror-padded at its edges.
    A model with a third input gets the :func:`pair_features` of the whole scene.
    """
    if tile % _MULTIPLE or tile <= 2 * margin:
        raise ValueError(f"tile must be a multiple of {_MULTIPLE} larger than 2 x margin, not {tile}")
    _, h, w = x1.shape
    step = tile - 2 * margin
    ny, nx = -(-h // step), -(-w // step)
    ph, pw = ny * step + 2 * margin - h, nx * step + 2 * margin - w
    pad = ((0, 0), (margin, ph - margin), (margin, pw - margin))
    names = [i.name for i in session.get_inputs()]
    arrays = [x1, x2]
    if len(names) > 2:
        arrays.append(pair_features(x1, x2))
    if min(h, w) > max(ph, pw, margin):
        padded = [np.pad(a, pad, mode="reflect") for a in arrays]
    else:  # an image smaller than the padding: mirror with repeats
        padded = [np.pad(a, pad, mode="symmetric") for a in arrays]
    out = np.zeros((ny * step, nx * step), np.float32)
    origins = [(iy * step, ix * step) for iy in range(ny) for ix in range(nx)]
    for k in range(0, len(origins), batch):
        chunk = origins[k : k + batch]
        feeds = {
            name: np.stack([p[:, y : y + tile, x : x + tile] for y, x in chunk])
            for name, p in zip(names, padded, strict=True)
        }
        (prob,) = session.run(None, feeds)
        for (y, x), pr in zip(chunk, prob[:, 0], strict=True):
            out[y : y + step, x : x + step] = pr[margin : margin + step, margin : margin + step]
    return out[:h, :w]


@register("learned")
@dataclass(frozen=True)
class LearnedDetector:
    """Siamese U-Net change probability (onnxruntime), thresholded at the model's own threshold.

    Parameters
    ----------
    model:
        Path of an ONNX model with its JSON metadata beside it (which names the bands it reads); ``None``
        (default): a model shipped with sitewatch, trained on the ten OSCD cities of the shared data: the
        ten-band one when the images have :data:`MODEL_BANDS`, else the six-band one (:data:`SIX_BANDS`).
    threshold:
        Probability above which a pixel is change; ``None`` (default): the model's own, chosen on its
        training cities (see its metadata).
    tile:
        Side (pixels) of the tiles the image is processed in (a multiple of 8); memory grows with it.
    coregister, max_shift:
        Measure and remove a residual translation of AFTER first, when it is at most ``max_shift`` pixels.
    threads:
        onnxruntime intra-op threads; 0 = its default (one per core).
    folds:
        Folder of leave-one-city-out models (``make train`` writes them to ``benchmarks/models``), used by
        :meth:`fit` in the benchmark; not used for detection.
    """

    name: ClassVar[str] = "learned"
    description: ClassVar[str] = (
        "Learned: small Siamese U-Net (FC-Siam-diff style, onnxruntime) over 10 Sentinel-2 bands (or 6 without "
        "the red edge) and their scene-normalised differences, trained on OSCD; per-pixel change probability, "
        "threshold chosen on the training cities. Needs B02, B03, B04, B08, B11, B12; uses B05, B06, B07, B8A "
        "when present."
    )

    model: str | None = None
    threshold: float | None = None
    tile: int = 256
    coregister: bool = True
    max_shift: float = MAX_SHIFT
    threads: int = 0
    folds: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.threshold is not None and not (
            isinstance(self.threshold, int | float) and 0.0 < float(self.threshold) < 1.0
        ):
            raise ValueError(f"learned threshold must be a probability in (0, 1), not {self.threshold!r}")
        if not (isinstance(self.tile, int) and self.tile >= 64 and self.tile % _MULTIPLE == 0):
            raise ValueError(f"learned tile must be a multiple of {_MULTIPLE}, at least 64, not {self.tile!r}")
        if not (isinstance(self.threads, int) and self.threads >= 0):
            raise ValueError(f"learned threads must be a non-negative integer, not {self.threads!r}")

    @property
    def required_bands(self) -> tuple[str, ...]:
        """The bands a run must have: those of :attr:`model` when one is given (as its metadata names them),
        else the six-band model's."""
        if self.model:
            try:
                return tuple(load_metadata(self.model).get("bands", MODEL_BANDS))
            except FileNotFoundError:  # said when detecting (ImageryError)
                return SIX_BANDS
        return SIX_BANDS

    @property
    def optional_bands(self) -> tuple[str, ...]:
        """The bands a run loads when every scene has them: the ten-band model's red edge (see
        :func:`default_model`); none when :attr:`model` is given."""
        return () if self.model else tuple(b for b in MODEL_BANDS if b not in SIX_BANDS)

    @property
    def model_path(self) -> Path:
        """The model of images with every band of :data:`MODEL_BANDS` (see :meth:`model_for`)."""
        return self.model_for(MODEL_BANDS)

    def model_for(self, bands: Sequence[str]) -> Path:
        """The model run on images of ``bands``: :attr:`model`, else the shipped one for them."""
        return Path(self.model) if self.model else default_model(bands)

    @property
    def metadata(self) -> dict[str, Any]:
        return load_metadata(self.model_path)

    @property
    def trained_on(self) -> list[str]:
        """Names of the cities the model was trained on (from its metadata)."""
        return list(self.metadata.get("train_cities", []))

    def provenance(self, bands: Sequence[str]) -> dict[str, Any]:
        """What a run on images of ``bands`` records of the model: its file, digest and bands (a site's
        detection run keeps it with its parameters)."""
        path = self.model_for(bands)
        meta = _run_metadata(path)
        return {"model_file": path.name, "model_sha256": meta.get("onnx_sha256"), "model_bands": meta.get("bands")}

    def fit(self, pairs: Sequence[Any], held_out: Any = None) -> dict[str, Any]:
        """The model to score ``held_out`` (a :class:`benchmarks.datasets.Pair`) with in the benchmark, as
        detector parameters: the fold model of :attr:`folds` trained without that pair
        (``{"model": path}``), else this detector's own model if it was not trained on it (``{}``).

        Nothing is trained here (``make train`` trains the folds); a pair is never scored by a model that saw
        it.  Raises ``FileNotFoundError`` when no model left the pair out.
        """
        name = getattr(held_out, "name", None)
        if name is None:
            raise ValueError("the learned detector's fit needs the held-out pair (held_out=...)")
        # the fold of the model that detect() would run on the pair's bands (its ``band_names`` or ``bands``
        # when it names them; else all of Sentinel-2's)
        have = getattr(held_out, "band_names", None) or getattr(held_out, "bands", None) or MODEL_BANDS
        own = load_metadata(self.model_for(have))
        bands = list(own["bands"])
        if self.folds:
            for meta_path in sorted(Path(self.folds).glob("*.json")):
                meta = json.loads(meta_path.read_text())
                if (meta.get("held_out") == name and name not in meta.get("train_cities", [])
                        and list(meta.get("bands", MODEL_BANDS)) == bands):
                    return {"model": str(meta_path.with_suffix(".onnx"))}
        if name not in own.get("train_cities", []):
            return {}
        raise FileNotFoundError(
            f"no model was trained without {name}: run `make train` (it writes the leave-one-city-out models to "
            "benchmarks/models) and give that folder as folds=..."
        )

    def detect(
        self,
        before: np.ndarray,
        after: np.ndarray,
        bands: Sequence[str],
        valid: np.ndarray | None = None,
    ) -> ChangeMap:
        """Change probability of every pixel (the score) and the mask where it exceeds the threshold.

        ``before`` and ``after`` are float ``(band, y, x)`` reflectance on one grid (NaN = no data).  Pixels
        outside ``valid`` or without data get score 0 and mask False.  The model is :meth:`model_for` ``bands``.
        Raises :class:`~sitewatch.errors.MissingBandError` when a band the model reads is missing and
        :class:`~sitewatch.errors.ImageryError` when the model file is missing or unreadable.
        """
        path = self.model_for(bands)
        meta = _run_metadata(path)
        model_bands = tuple(meta.get("bands", ()))
        if model_bands[:3] != _VISIBLE:
            raise ImageryError(f"{path}: model bands {meta.get('bands')} do not begin with {', '.join(_VISIBLE)}")
        x1, x2, ok, shift = prepare(before, after, bands, valid, self.coregister, self.max_shift, model_bands)
        try:
            session = _session(str(path.resolve()), self.threads)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ImageryError(f"{path}: not a readable ONNX model: {exc}") from None
        prob = predict(session, x1, x2, tile=self.tile, margin=int(meta.get("margin", 16)))
        thr = float(self.threshold if self.threshold is not None else meta.get("threshold", 0.5))
        score = np.where(ok, prob, 0.0).astype(np.float32)
        mask = ok & (score > thr)
        params = asdict(self) | {
            "bands": list(bands),
            "model_bands": list(model_bands),
            "model": str(path),
            "model_sha256": meta.get("onnx_sha256"),
            "trained_on": meta.get("train_cities"),
            "threshold_used": thr,
            "coregistration_shift_dy_dx": [round(shift[0], 3), round(shift[1], 3)],
        }
        params.pop("folds", None)
        return ChangeMap(score=score, mask=mask, threshold=thr, detector=self.name, params=params)
