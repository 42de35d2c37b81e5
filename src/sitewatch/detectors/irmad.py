"""Iteratively reweighted multivariate alteration detection (IR-MAD).

The MAD transformation (Nielsen, Conradsen & Simpson 1998) finds, by canonical correlation analysis, the
linear combinations of the bands of the two dates that are most alike; their differences, the MAD
variates, are uncorrelated and hold the change.  IR-MAD (Nielsen 2007) refits the transformation with every
pixel weighted by its probability of no change, so that the fit rests on the unchanged background.  Because
CCA is invariant to any affine transformation of each date's bands, the result does not depend on a gain or
offset between the dates (calibration, atmosphere, sun angle).

The change statistic is ``Z = sum_i (MAD_i / sigma_i)**2``, chi-square with ``n_bands`` degrees of freedom
for unchanged pixels; a pixel is changed when its no-change probability ``P(chi2 > Z)`` is below ``alpha``.

One deliberate departure from the textbook algorithm: ``sigma_i`` is estimated robustly (1.4826 times the
median absolute deviation of ``MAD_i`` over the fitting sample) instead of as ``sqrt(2 (1 - rho_i))`` from
the weighted fit.  The weighted variance is biased low (the weights favour pixels with small MADs), so with
it the statistic drifts upwards from one iteration to the next and flags far more than ``alpha`` of the
unchanged pixels (about 20 % with 4 bands instead of 1 %).  The robust estimate keeps the chi-square
calibration, whatever the fraction of changed pixels below one half.

References: A. A. Nielsen, "The regularized iteratively reweighted MAD method for change detection in
multi- and hyperspectral data", IEEE Trans. Image Processing 16(2), 2007; M. J. Canty, "Image Analysis,
Classification and Change Detection in Remote Sensing", CRC Press.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import ClassVar

import numpy as np
from scipy.linalg import eigh

from ..types import ChangeMap
from .base import change_map, check_inputs, register

__all__ = ["IRMAD", "IRMADModel", "MADFit", "fit_irmad"]


@dataclass(frozen=True)
class MADFit:
    """A fitted (IR-)MAD transformation, to apply to any pixels of the two dates.

    ``mean_*``/``std_*`` standardise the bands of each date, ``a``/``b`` (band, variate) are the canonical
    vectors, ordered by increasing canonical correlation ``rho``; ``sigma`` is the standard deviation of
    each MAD variate on unchanged pixels.  ``used`` indexes the bands that entered the fit (bands constant
    on either date are left out).
    """

    mean_before: np.ndarray
    std_before: np.ndarray
    mean_after: np.ndarray
    std_after: np.ndarray
    a: np.ndarray
    b: np.ndarray
    rho: np.ndarray
    sigma: np.ndarray
    used: np.ndarray
    iterations: int
    converged: bool

    @property
    def df(self) -> int:
        """Degrees of freedom of the chi-square statistic (the number of MAD variates)."""
        return int(self.rho.size)

    def mad(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        """MAD variates ``(n, variate)`` of samples ``(n, band)`` of the two dates (all bands)."""
        u = ((x1[:, self.used] - self.mean_before) / self.std_before) @ self.a
        v = ((x2[:, self.used] - self.mean_after) / self.std_after) @ self.b
        return u - v

    def chi2(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        """Chi-square change statistic ``Z`` of samples ``(n, band)`` of the two dates."""
        return ((self.mad(x1, x2) / self.sigma) ** 2).sum(axis=1)


@register("irmad")
@dataclass(frozen=True)
class IRMAD:
    """IR-MAD change detection with a chi-square threshold.

    Parameters
    ----------
    alpha:
        False-alarm rate on unchanged pixels: change where ``P(chi2_{n_bands} > Z) < alpha``.
    max_iter, tol:
        Reweighting stops when no canonical correlation moves by ``tol`` or more, or after ``max_iter``.
    max_samples, seed:
        The transformation is fitted on a seeded random sample of at most ``max_samples`` valid pixels,
        then applied to every pixel.
    ridge:
        Regularisation added to the diagonal of each date's (standardised) covariance matrix; it keeps
        the fit stable with nearly collinear bands and, being relative, does not break the invariance.
    """

    name: ClassVar[str] = "irmad"
    description: ClassVar[str] = (
        "Iteratively reweighted multivariate alteration detection (Nielsen 2007): chi-square statistic "
        "of the MAD variates, change where the no-change probability is below alpha; gain/offset invariant."
    )

    alpha: float = 0.01
    max_iter: int = 30
    tol: float = 1e-3
    max_samples: int = 200_000
    seed: int = 0
    ridge: float = 1e-6

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"irmad alpha is a probability in (0, 1), not {self.alpha!r}")
        if self.max_iter < 1:
            raise ValueError(f"irmad max_iter must be at least 1, not {self.max_iter!r}")
        if self.max_samples < 100:
            raise ValueError(f"irmad max_samples must be at least 100, not {self.max_samples!r}")
        if self.ridge < 0:
            raise ValueError(f"irmad ridge must be >= 0, not {self.ridge!r}")

    def detect(
        self,
        before: np.ndarray,
        after: np.ndarray,
        bands: Sequence[str],
        valid: np.ndarray | None = None,
    ) -> ChangeMap:
        """Fit IR-MAD on a sample of the valid pixels, score all of them by ``Z`` and threshold (the inputs and
        the pixels not valid: see :meth:`sitewatch.detectors.base.Detector.detect`).

        The score is the chi-square statistic ``Z``; the threshold is ``chi2.ppf(1 - alpha, df)``.
        """
        ok = check_inputs(before, after, bands, valid)
        x1 = before[:, ok].T  # (n, band), float32 view order
        x2 = after[:, ok].T
        rng = np.random.default_rng(self.seed)
        n = x1.shape[0]
        idx = np.sort(rng.choice(n, self.max_samples, replace=False)) if n > self.max_samples else None
        s1 = x1 if idx is None else x1[idx]
        s2 = x2 if idx is None else x2[idx]
        fit = fit_irmad(
            s1.astype(np.float64),
            s2.astype(np.float64),
            max_iter=self.max_iter,
            tol=self.tol,
            ridge=self.ridge,
        )
        z = _chi2_chunked(fit, x1, x2)
        from scipy.stats import chi2  # here: scipy.stats takes 0.4 s to import, and most runs are not IR-MAD

        thr = float(chi2.ppf(1.0 - self.alpha, fit.df))

        params = asdict(self) | {
            "bands": [bands[i] for i in fit.used],
            "df": fit.df,
            "iterations": fit.iterations,
            "converged": fit.converged,
            "canonical_correlations": [round(float(r), 6) for r in fit.rho],
            "fit_pixels": int(s1.shape[0]),
        }
        return change_map(self.name, ok, z, thr, params)


    def fit_windowed(self, before: np.ndarray, after: np.ndarray, bands: Sequence[str]) -> IRMADModel:
        """IR-MAD fitted on samples ``(band, n)`` of the two dates (a seeded draw of at most ``max_samples`` of
        them), for window-by-window detection (:mod:`sitewatch.windowed`); threshold as :meth:`detect`."""
        n = before.shape[1]
        rng = np.random.default_rng(self.seed)
        idx = np.sort(rng.choice(n, self.max_samples, replace=False)) if n > self.max_samples else slice(None)
        fit = fit_irmad(before[:, idx].T.astype(np.float64), after[:, idx].T.astype(np.float64),
                        max_iter=self.max_iter, tol=self.tol, ridge=self.ridge)
        from scipy.stats import chi2

        params = asdict(self) | {
            "bands": [bands[i] for i in fit.used], "df": fit.df, "iterations": fit.iterations,
            "converged": fit.converged, "canonical_correlations": [round(float(r), 6) for r in fit.rho],
            "fit_pixels": int(min(n, self.max_samples)),
        }
        return IRMADModel.of(fit, before.shape[0], float(chi2.ppf(1.0 - self.alpha, fit.df)), params)


@dataclass(frozen=True)
class IRMADModel:
    """IR-MAD fitted on a sample, applied to windows: the chi-square statistic and its fixed threshold.

    ``Z = |w1 @ x1 - w2 @ x2 + offset|²`` over the variates: the standardisation, the canonical vectors and
    each variate's sigma folded into two float32 matrices (variate, band) with zero columns for the bands left
    out of the fit, so that a window is two matrix products."""

    fit: MADFit
    w1: np.ndarray
    w2: np.ndarray
    offset: np.ndarray  # (variate, 1)
    chi2_threshold: float
    params: dict[str, object]

    @classmethod
    def of(cls, fit: MADFit, n_bands: int, threshold: float, params: dict[str, object]) -> IRMADModel:
        w1 = np.zeros((fit.df, n_bands))
        w2 = np.zeros((fit.df, n_bands))
        w1[:, fit.used] = (fit.a / fit.std_before[:, None] / fit.sigma).T
        w2[:, fit.used] = (fit.b / fit.std_after[:, None] / fit.sigma).T
        offset = (fit.mean_after / fit.std_after) @ fit.b - (fit.mean_before / fit.std_before) @ fit.a
        return cls(fit, w1.astype(np.float32), w2.astype(np.float32),
                   (offset / fit.sigma).astype(np.float32)[:, None], threshold, params)

    def rescaled(self, before: float, after: float) -> IRMADModel:
        """This model for inputs that are reflectance / ``before`` and / ``after``."""
        return replace(self, w1=(self.w1 * np.float32(before)).astype(np.float32),
                       w2=(self.w2 * np.float32(after)).astype(np.float32))

    def score(self, before: np.ndarray, after: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The chi-square statistic ``Z`` ``(y, x)`` of a window ``(band, y, x)`` of both dates (float32, or
        integers), float32, into ``out`` if given (a window of a larger array)."""
        h, w = before.shape[1:]
        mad = self.w1 @ before.reshape(before.shape[0], -1)
        mad -= self.w2 @ after.reshape(after.shape[0], -1)
        mad += self.offset
        mad *= mad
        return np.add.reduce(mad.reshape(-1, h, w), axis=0, out=out)

    @property
    def fixed_threshold(self) -> float:
        """``chi2.ppf(1 - alpha, df)``: the scores need not be gathered to know it."""
        return self.chi2_threshold

    def threshold(self, scores: np.ndarray, workers: int = 1) -> float:
        """``chi2.ppf(1 - alpha, df)``: it does not depend on the scores."""
        return self.chi2_threshold


def fit_irmad(
    x1: np.ndarray, x2: np.ndarray, max_iter: int = 30, tol: float = 1e-3, ridge: float = 1e-6
) -> MADFit:
    """Fit the IR-MAD transformation on samples ``(n, band)`` of the two dates (same bands, same pixels).

    Iteration 1 is the plain MAD; each further one refits the weighted canonical correlation analysis with
    weights ``P(chi2 > Z)`` from the previous one, until the canonical correlations move by less than
    ``tol`` (or ``max_iter``).  Raises ``ValueError`` when fewer than one band varies on both dates.
    """
    from scipy.stats import chi2  # here: scipy.stats takes 0.4 s to import, and most runs are not IR-MAD

    sd1 = x1.std(axis=0)
    sd2 = x2.std(axis=0)
    used = np.flatnonzero(_varies(x1, sd1) & _varies(x2, sd2))
    if used.size < 1:
        raise ValueError("every band is constant on one of the dates: there is nothing to compare")
    m1, m2 = x1[:, used].mean(axis=0), x2[:, used].mean(axis=0)
    sd1, sd2 = sd1[used], sd2[used]
    y1 = (x1[:, used] - m1) / sd1
    y2 = (x2[:, used] - m2) / sd2
    p = used.size

    weights = np.ones(y1.shape[0])
    rho_prev: np.ndarray | None = None
    converged = False
    iterations = 0
    a = b = rho = sigma = c1 = c2 = np.empty(0)
    for it in range(1, max_iter + 1):
        iterations = it
        a, b, rho, c1, c2 = _weighted_cca(y1, y2, weights, ridge)
        mad = (y1 - c1) @ a - (y2 - c2) @ b
        sigma = _robust_sigma(mad)
        z = ((mad / sigma) ** 2).sum(axis=1)
        weights = chi2.sf(z, p)
        if rho_prev is not None and np.max(np.abs(rho - rho_prev)) < tol:
            converged = True
            break
        rho_prev = rho
    # Fold the weighted centring into the standardisation so that ``MADFit.mad`` is a plain affine map.
    # u = ((x - m1)/sd1 - c1) @ a  ==  ((x - (m1 + c1*sd1)) / sd1) @ a
    return MADFit(
        mean_before=m1 + c1 * sd1,
        std_before=sd1,
        mean_after=m2 + c2 * sd2,
        std_after=sd2,
        a=a,
        b=b,
        rho=rho,
        sigma=sigma,
        used=used,
        iterations=iterations,
        converged=converged,
    )


def _weighted_cca(
    y1: np.ndarray, y2: np.ndarray, w: np.ndarray, ridge: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted canonical correlation analysis of ``y1`` and ``y2`` (n, p).

    Returns ``a``, ``b`` (p, p) with unit-variance canonical variates, their correlations ``rho`` in
    increasing order (so the first MAD variate holds the most change) and the weighted means.
    """
    wsum = float(w.sum())
    if not wsum > 0:  # every pixel looks changed: fall back to equal weights
        w = np.ones_like(w)
        wsum = float(w.size)
    wn = (w / wsum)[:, None]
    c1 = (wn * y1).sum(axis=0)
    c2 = (wn * y2).sum(axis=0)
    d1 = y1 - c1
    d2 = y2 - c2
    s11 = (wn * d1).T @ d1
    s22 = (wn * d2).T @ d2
    s12 = (wn * d1).T @ d2
    p = s11.shape[0]
    s11 += ridge * np.trace(s11) / p * np.eye(p)
    s22 += ridge * np.trace(s22) / p * np.eye(p)
    s22_inv_s21 = np.linalg.solve(s22, s12.T)
    m = s12 @ s22_inv_s21
    m = (m + m.T) / 2  # symmetric up to rounding
    lam, a = eigh(m, s11)  # ascending; a.T @ s11 @ a = I
    rho = np.sqrt(np.clip(lam, 0.0, 1.0))
    b = s22_inv_s21 @ a / np.maximum(rho, 1e-12)  # b.T @ s22 @ b = I and corr(u_i, v_i) = rho_i >= 0
    return a, b, rho, c1, c2


def _varies(x: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Bands whose standard deviation is more than rounding noise."""
    return sd > 1e-9 * (np.abs(x).max(axis=0) + 1e-30)


def _robust_sigma(mad: np.ndarray) -> np.ndarray:
    """Per-variate standard deviation of unchanged pixels: 1.4826 x median absolute deviation."""
    med = np.median(mad, axis=0)
    sigma = 1.4826 * np.median(np.abs(mad - med), axis=0)
    fallback = mad.std(axis=0)
    sigma = np.where(sigma > 0, sigma, fallback)
    return np.where(sigma > 0, sigma, 1.0)


def _chi2_chunked(fit: MADFit, x1: np.ndarray, x2: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """``fit.chi2`` over all pixels, in chunks to bound the float64 temporaries."""
    out = np.empty(x1.shape[0], np.float32)
    for start in range(0, x1.shape[0], chunk):
        sl = slice(start, start + chunk)
        out[sl] = fit.chi2(x1[sl].astype(np.float64), x2[sl].astype(np.float64))
    return out
