"""The 3-D matter power spectrum of gridded volumes: what the CosmoFlow generator is checked
against and what the power-spectrum baseline regresses on."""

from __future__ import annotations

import numpy as np


def mode_k(npix: int, box_side: float) -> np.ndarray:
    """|k| (in 1 / the unit of ``box_side``) of every mode of an ``npix``^3 DFT (fftn order)."""
    k1 = 2.0 * np.pi * np.fft.fftfreq(npix, d=box_side / npix)
    kx, ky, kz = np.meshgrid(k1, k1, k1, indexing="ij")
    return np.sqrt(kx**2 + ky**2 + kz**2)


def k_bins(npix: int, box_side: float, count: int) -> np.ndarray:
    """``count`` + 1 log-spaced edges from the fundamental mode to the Nyquist frequency."""
    fundamental = 2.0 * np.pi / box_side
    return np.geomspace(fundamental * 0.99, fundamental * npix / 2 * 1.001, count + 1)


def power_spectrum(delta: np.ndarray, box_side: float, edges: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean k, P(k), modes) of the density contrast ``delta`` (..., N, N, N) in bins ``edges``:
    P(k) = <|delta_k|^2> V_cell / N^3 averaged over the modes of each bin, the estimator whose
    expectation is the input spectrum of a field drawn with it. Leading axes are kept."""
    npix = delta.shape[-1]
    cell_volume = (box_side / npix) ** 3
    power = np.abs(np.fft.fftn(delta, axes=(-3, -2, -1))) ** 2 * cell_volume / npix**3
    k = mode_k(npix, box_side)
    index = np.digitize(k.ravel(), edges) - 1
    valid = (index >= 0) & (index < len(edges) - 1) & (k.ravel() > 0)
    modes = np.bincount(index[valid], minlength=len(edges) - 1)
    flat = power.reshape(*power.shape[:-3], -1)[..., valid]
    sums = np.stack([np.bincount(index[valid], weights=row, minlength=len(edges) - 1)
                     for row in flat.reshape(-1, flat.shape[-1])])
    mean_k = np.bincount(index[valid], weights=k.ravel()[valid],
                         minlength=len(edges) - 1) / np.maximum(modes, 1)
    spectrum = (sums / np.maximum(modes, 1)).reshape(*power.shape[:-3], len(edges) - 1)
    return mean_k, spectrum, modes


def count_spectra(counts: np.ndarray, box_side: float, edges: np.ndarray) -> np.ndarray:
    """log P(k) of the overdensity of particle counts (n, N, N, N, C), per channel (redshift):
    (n, C * bins) features. Poisson shot noise is left in: it is the same for every cosmology
    at a fixed mean count, so a regression absorbs it."""
    counts = np.asarray(counts, np.float64)
    mean = counts.mean(axis=(1, 2, 3), keepdims=True)
    delta = np.moveaxis(counts / np.maximum(mean, 1e-12) - 1.0, -1, 1)  # (n, C, N, N, N)
    _, spectrum, _ = power_spectrum(delta, box_side, edges)
    return np.log(np.maximum(spectrum, 1e-30)).reshape(len(counts), -1)
