"""Summary statistics of flat-sky convergence maps: the binned angular power spectrum, peak
counts and one-point moments. They are the classical estimators the CNN is compared with
(Gupta et al. 2018, arXiv:1802.01212; Fluri et al. 2018, arXiv:1807.08732; Ribli et al. 2019,
arXiv:1902.03663), and the generator's own check that its maps carry the requested spectrum.

Conventions: a map is ``(npix, npix)`` on a square patch with pixels of ``pixel_arcmin``;
multipoles are the flat-sky wavenumbers ``ell = 2 pi |k| / L`` of the discrete Fourier modes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, stats

ARCMIN = np.pi / (180.0 * 60.0)


def mode_ell(npix: int, pixel_arcmin: float) -> np.ndarray:
    """|ell| of every discrete Fourier mode of an (npix, npix) map, in ``numpy.fft.fft2`` order."""
    k = 2.0 * np.pi * np.fft.fftfreq(npix, d=pixel_arcmin * ARCMIN)
    return np.hypot(k[:, None], k[None, :])


def ell_bins(npix: int, pixel_arcmin: float, num_bins: int = 12) -> np.ndarray:
    """Logarithmic bin edges from the patch's fundamental mode to its Nyquist frequency."""
    side = npix * pixel_arcmin * ARCMIN
    return np.geomspace(2.0 * np.pi / side, np.pi / (pixel_arcmin * ARCMIN), num_bins + 1)


def _bin_index(npix: int, pixel_arcmin: float, edges: np.ndarray) -> np.ndarray:
    # Modes outside the edges (the k = 0 mean, the corners beyond Nyquist) get index -1 or
    # len(edges) - 1 and are dropped by the callers.
    return np.digitize(mode_ell(npix, pixel_arcmin), edges) - 1


def binned_power_spectrum(
    maps: np.ndarray, pixel_arcmin: float, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(ell centres, C_ell per map) averaged over the Fourier modes in each bin.

    Estimator: C_ell = |FFT(kappa)|^2 A_pix^2 / A, so that a Gaussian field drawn with spectrum
    C_ell returns C_ell on average. ``maps``: (npix, npix) or (N, npix, npix).
    """
    maps = np.asarray(maps, np.float64)
    single = maps.ndim == 2
    maps = maps[None] if single else maps
    npix = maps.shape[-1]
    pixel_area = (pixel_arcmin * ARCMIN) ** 2
    power = np.abs(np.fft.fft2(maps)) ** 2 * pixel_area / npix**2
    index = _bin_index(npix, pixel_arcmin, edges).ravel()
    keep = (index >= 0) & (index < len(edges) - 1)
    counts = np.bincount(index[keep], minlength=len(edges) - 1)
    flat = power.reshape(len(maps), -1)[:, keep]
    sums = np.stack([np.bincount(index[keep], weights=row, minlength=len(edges) - 1)
                     for row in flat])
    with np.errstate(invalid="ignore", divide="ignore"):
        cl = sums / counts
    centres = np.sqrt(edges[:-1] * edges[1:])
    return centres, (cl[0] if single else cl)


def modes_per_bin(npix: int, pixel_arcmin: float, edges: np.ndarray) -> np.ndarray:
    """Fourier modes of the map in each bin (each real mode is counted with its mirror)."""
    index = _bin_index(npix, pixel_arcmin, edges).ravel()
    keep = (index >= 0) & (index < len(edges) - 1)
    return np.bincount(index[keep], minlength=len(edges) - 1)


def peak_counts(maps: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per map, the number of local maxima (above all 8 neighbours, periodic edges) whose height
    falls in each interval of ``thresholds`` (in the maps' units)."""
    maps = np.asarray(maps, np.float64)
    maps = maps[None] if maps.ndim == 2 else maps
    result = np.zeros((len(maps), len(thresholds) - 1))
    footprint = np.ones((3, 3), bool)
    footprint[1, 1] = False
    for i, kappa in enumerate(maps):
        neighbours = ndimage.maximum_filter(kappa, footprint=footprint, mode="wrap")
        heights = kappa[kappa > neighbours]
        result[i] = np.histogram(heights, bins=thresholds)[0]
    return result


def moments(maps: np.ndarray) -> np.ndarray:
    """Per map: variance, skewness and excess kurtosis of the pixel values."""
    flat = np.asarray(maps, np.float64).reshape(len(maps), -1)
    return np.stack(
        [flat.var(axis=1), stats.skew(flat, axis=1), stats.kurtosis(flat, axis=1)], axis=1
    )
