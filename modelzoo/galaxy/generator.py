"""Synthetic galaxy stamps with GalSim, in the layout :mod:`modelzoo.galaxy.reader` reads.

Each stamp is one prominent galaxy near the centre of a 69x69 image (the seed's stamp size),
drawn from a mix of morphologies with the rates of a bright, SDSS-like sample:

* ``elliptical``: a Sersic profile (index 2.5-6, not only de Vaucouleurs' 4), mostly with an
  outer component of another ellipticity and orientation (ellipticity gradient, isophote
  twist), sometimes a nuclear point source or faint merger shells.
* ``spiral``: Sersic bulge + exponential disk with their own axis ratios and position angles,
  a bar in half of them, 2-4 logarithmic spiral arms made of Gaussian clumps, and star-forming
  knots (:class:`galsim.RandomKnots`) in the disk plane.
* ``irregular``: a disk dominated by star-forming knots whose distribution is off-centre.
* ``lenticular``: bulge + smooth disk (a bar in 30%), no arms or knots.

Any stamp may hold neighbours (stars or small galaxies). Profiles are convolved with a Moffat
PSF of random width, drawn with pixel integration, and get CCD noise: Poisson noise on
source + sky (then sky-subtracted, as survey frames are) plus Gaussian read noise.

The file holds ``images`` (N, S, S) or (N, S, S, B) in counts (ADU, gain 1),
``noise_variance`` (same shape; the pipeline-style variance map: (max(observed counts, 0) +
sky)/gain + read_noise^2), ``psf`` (N, P, P[, B]; unit sum), every generating parameter under
``truth/``, and the root attributes ``noise_sigma`` (sky noise, the reader's natural unit),
``bands``, ``morphologies``, ``seed`` and the configuration.

Populations (``GalaxyConfig.population(name)``, ``modelzoo data galaxy --population``):

* ``default``: galaxies of r ~ 16-20 at the native pixel scale, neighbours in 30% of stamps.
* ``prominent``: the seed's data, "cropped around one prominent galaxy and downscaled to
  69 x 69": galaxies of r ~ 14-17.5 with sizes from a size-luminosity relation, each crop ten
  half-light radii wide and averaged down onto the stamp when wider than it (the noise per
  stamp pixel drops by the factor, ``truth/downscale``), and the faint sky around the galaxy:
  a Poisson number of stars and galaxies per crop area from SDSS-like number counts.

Generation is deterministic for a seed, whatever the number of processes: stamp ``i`` draws all
its randomness from ``numpy.random.default_rng([seed, i])``.

References: B. Rowe et al., "GALSIM: The modular galaxy image simulation toolkit", Astronomy
and Computing 10, 121 (2015); RandomKnots follows Zhang et al. 2018 (knotty star-forming
galaxies for weak-lensing tests).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modelzoo.errors import ConfigError
from modelzoo.parallel import GeneratorReport, generated_file, generator_arguments

MORPHOLOGIES = ("elliptical", "spiral", "irregular", "lenticular")

# Relative flux per band of an old (bulge, elliptical), a disk and a young (knots, arms)
# population, normalised to r: rough SDSS colours, enough to give bands distinct structure.
_SED = {
    "old": {"u": 0.12, "g": 0.45, "r": 1.0, "i": 1.35, "z": 1.6},
    "disk": {"u": 0.35, "g": 0.72, "r": 1.0, "i": 1.15, "z": 1.3},
    "young": {"u": 0.9, "g": 1.1, "r": 1.0, "i": 0.9, "z": 0.85},
}
_WAVELENGTH = {"u": 355.0, "g": 469.0, "r": 617.0, "i": 748.0, "z": 893.0}
# Sersic indices are drawn from a grid: GalSim caches its Hankel tables per index, and a new
# index costs ~50 ms to tabulate.
_SERSIC_GRID = np.arange(2.5, 6.01, 0.5)
_BULGE_GRID = np.array([1.5, 2.0, 2.5, 3.0, 3.5, 4.0])

TRUTH_FIELDS = (
    "morphology", "flux", "dx", "dy", "disk_hlr", "disk_q", "disk_beta", "bulge_hlr", "bulge_q",
    "bulge_beta", "bulge_sersic_n", "bulge_fraction", "arm_fraction", "n_arms", "arm_pitch",
    "knot_fraction", "n_knots", "halo_fraction", "bar_fraction", "nucleus_fraction",
    "shell_fraction", "psf_fwhm", "psf_beta", "n_neighbours", "downscale",
)


@dataclass
class GalaxyConfig:
    """Population and instrument parameters of the generator (all lengths in pixels).

    Attributes:
        image_size: stamp side (the seed's 69).
        bands: band names from ugriz; fluxes are r-band-normalised.
        morphology_fractions: rates of ``MORPHOLOGIES``, in that order.
        flux_range: total (r-band) flux in counts, drawn log-uniformly.
        disk_hlr_median: median half-light radius of disks and ellipticals (log-normal).
        sky_level: sky counts per pixel (subtracted after the noise is drawn).
        read_noise: read noise in counts.
        psf_fwhm_range: Moffat FWHM at r, drawn uniformly (bluer bands are wider).
        neighbour_probability: chance that a stamp holds 1-2 neighbouring sources (used when
            ``neighbour_density`` is 0).
        psf_size: side of the stored PSF images.
        hlr_range: clip of the half-light radius.
        size_flux_slope: half-light radius grows as ``(flux / size_flux_pivot) ** slope`` (the
            size-luminosity relation; 0 draws sizes independent of flux).
        size_flux_pivot: flux at which the median radius is ``disk_hlr_median``.
        crop_hlr_ratio: 0, or the side of the crop around the galaxy in half-light radii: a
            crop wider than ``image_size`` pixels is downscaled onto the stamp (by averaging,
            so the stamp keeps surface-brightness units and its noise drops by the factor).
        max_downscale: largest downscaling factor.
        neighbour_density: 0, or background sources per (native) pixel^2 brighter than
            ``neighbour_mag_limit``: each stamp gets a Poisson number of them over its crop,
            magnitudes from counts ``dN/dm ~ 10^(neighbour_count_slope * m)``, all fainter
            than the central galaxy.
        neighbour_mag_limit, neighbour_count_slope, star_fraction: see ``neighbour_density``.
        zero_point: magnitude of one count (converts fluxes to magnitudes for the counts).
    """

    image_size: int = 69
    bands: tuple[str, ...] = ("r",)
    morphology_fractions: tuple[float, ...] = (0.25, 0.45, 0.15, 0.15)
    flux_range: tuple[float, float] = (3.0e4, 1.0e6)
    disk_hlr_median: float = 5.0
    sky_level: float = 1000.0
    read_noise: float = 5.0
    psf_fwhm_range: tuple[float, float] = (1.6, 3.0)
    neighbour_probability: float = 0.3
    psf_size: int = 25
    hlr_range: tuple[float, float] = (1.8, 13.0)
    size_flux_slope: float = 0.0
    size_flux_pivot: float = 1.0e5
    crop_hlr_ratio: float = 0.0
    max_downscale: float = 4.0
    neighbour_density: float = 0.0
    neighbour_mag_limit: float = 22.5
    neighbour_count_slope: float = 0.4
    star_fraction: float = 0.3
    zero_point: float = 30.82

    @classmethod
    def population(cls, name: str, **overrides: Any) -> GalaxyConfig:
        """A named population (see ``POPULATIONS``) with keyword overrides."""
        if name not in POPULATIONS:
            raise ConfigError(f"unknown galaxy population {name!r}; known: {sorted(POPULATIONS)}")
        return cls(**{**POPULATIONS[name], **overrides})

    def __post_init__(self) -> None:
        self.bands = tuple(self.bands)
        unknown = [b for b in self.bands if b not in _WAVELENGTH]
        if unknown or not self.bands:
            raise ConfigError(f"bands must be drawn from ugriz, got {self.bands}")
        fractions = np.asarray(self.morphology_fractions, float)
        if len(fractions) != len(MORPHOLOGIES) or (fractions < 0).any() or fractions.sum() <= 0:
            raise ConfigError(
                f"morphology_fractions needs {len(MORPHOLOGIES)} non-negative rates for "
                f"{MORPHOLOGIES}, got {self.morphology_fractions}"
            )
        if self.image_size < 16 or self.psf_size % 2 == 0:
            raise ConfigError("image_size must be >= 16 and psf_size odd")
        if self.max_downscale < 1 or self.crop_hlr_ratio < 0 or self.neighbour_density < 0:
            raise ConfigError("max_downscale must be >= 1, crop_hlr_ratio and "
                             "neighbour_density >= 0")

    @property
    def noise_sigma(self) -> float:
        """Standard deviation of the sky + read noise per pixel (counts)."""
        return float(np.sqrt(self.sky_level + self.read_noise**2))


# Named populations. "prominent" follows the seed's data ("cropped around one prominent galaxy
# and downscaled to 69 x 69") with SDSS r-band numbers: 0.396" native pixels; zero point 30.82
# (r = 16 gives ~8.5e5 photo-electrons in a 54 s exposure; sky ~1000 e-/pixel); central galaxies
# at r = 14-17.5 (the main spectroscopic sample stops at 17.77), radii from a size-luminosity
# relation (median 7 pixels = 2.8" at r = 16); seeing 1.0-1.8"; crops of 10 half-light radii;
# background sources to r = 22.5 at ~3.8e-4 per pixel^2 (~2.4e4 per deg^2, SDSS galaxy + star
# counts), 30% of them stars.
POPULATIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "prominent": {
        "flux_range": (2.1e5, 5.3e6),
        "disk_hlr_median": 7.0,
        "size_flux_pivot": 8.5e5,
        "size_flux_slope": 0.3,
        "hlr_range": (2.5, 40.0),
        "psf_fwhm_range": (2.5, 4.5),
        "crop_hlr_ratio": 10.0,
        "neighbour_density": 3.8e-4,
    },
}


def _spiral_arms(galsim, rng: np.random.Generator, hlr: float, n_arms: int, pitch: float):
    """Logarithmic spiral arms as chains of Gaussian clumps, brightness falling with radius."""
    clumps = []
    scale_length = hlr / 1.678
    phase = rng.uniform(0, 2 * np.pi)
    for arm in range(n_arms):
        for t in np.linspace(0.2, 3.6, 18):
            radius = 0.6 * scale_length * np.exp(t * np.tan(pitch))
            if radius > 3.5 * hlr:
                break
            angle = phase + t + 2 * np.pi * arm / n_arms
            clumps.append(
                galsim.Gaussian(
                    sigma=0.25 + 0.12 * radius, flux=np.exp(-radius / scale_length)
                    * rng.uniform(0.5, 1.5),
                ).shift(radius * np.cos(angle), radius * np.sin(angle))
            )
    return galsim.Sum(clumps)


def _shells(galsim, rng: np.random.Generator, hlr: float):
    """Faint merger shells: 1-3 arcs of Gaussian clumps at 1.5-4 half-light radii."""
    clumps = []
    for _ in range(int(rng.integers(1, 4))):
        radius = hlr * rng.uniform(1.5, 4.0)
        centre, width = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.5)
        for angle in np.linspace(centre - width, centre + width, 12):
            clumps.append(galsim.Gaussian(sigma=0.08 * radius + 0.5).shift(
                radius * np.cos(angle), radius * np.sin(angle)))
    return galsim.Sum(clumps).withFlux(1.0)


def _background_sources(galsim, rng: np.random.Generator, cfg: GalaxyConfig, flux: float,
                        hlr: float, downscale: float) -> list[tuple[Any, float, str]]:
    """Stars and galaxies of the sky around the galaxy: a Poisson number over the crop, with
    magnitudes from power-law counts between the galaxy's and ``neighbour_mag_limit``,
    uniformly placed outside one half-light radius. Shares are fluxes relative to the galaxy."""
    crop = cfg.image_size * downscale
    count = int(rng.poisson(cfg.neighbour_density * crop**2))
    galaxy_mag = cfg.zero_point - 2.5 * np.log10(flux)
    bright, faint = galaxy_mag + 0.5, cfg.neighbour_mag_limit
    sources: list[tuple[Any, float, str]] = []
    if faint <= bright:
        return sources
    slope = cfg.neighbour_count_slope
    lo, hi = 10 ** (slope * bright), 10 ** (slope * faint)
    for _ in range(count):
        mag = np.log10(lo + rng.random() * (hi - lo)) / slope  # inverse CDF of the counts
        share = float(10 ** (-0.4 * (mag - galaxy_mag)))
        while True:
            x, y = rng.uniform(-crop / 2, crop / 2, size=2)
            if np.hypot(x, y) > min(hlr, crop / 4):
                break
        if rng.random() < cfg.star_fraction:
            src, pop = galsim.DeltaFunction(), "old"
        else:
            size = (share * flux / cfg.size_flux_pivot) ** cfg.size_flux_slope
            src_hlr = float(np.clip(cfg.disk_hlr_median * size * np.exp(0.35 * rng.normal()),
                                    0.5, hlr))
            src = galsim.Exponential(half_light_radius=src_hlr).shear(
                q=rng.uniform(0.3, 1.0), beta=rng.uniform(0, np.pi) * galsim.radians)
            pop = "disk"
        sources.append((src.shift(x, y), share, pop))
    return sources


def _draw_stamp(index: int, seed: int, cfg: GalaxyConfig) -> dict[str, Any]:
    """One stamp: images, noise variance and PSF per band, and its generating parameters."""
    import galsim

    rng = np.random.default_rng([seed, index])
    deviate = galsim.BaseDeviate(int(rng.integers(1, 2**31 - 1)))
    fractions = np.asarray(cfg.morphology_fractions, float)
    morph = int(rng.choice(len(MORPHOLOGIES), p=fractions / fractions.sum()))
    name = MORPHOLOGIES[morph]
    truth: dict[str, float] = dict.fromkeys(TRUTH_FIELDS, 0.0)
    truth["morphology"] = morph
    flux = float(np.exp(rng.uniform(*np.log(cfg.flux_range))))
    size_factor = (flux / cfg.size_flux_pivot) ** cfg.size_flux_slope
    hlr = float(np.clip(cfg.disk_hlr_median * size_factor * np.exp(0.35 * rng.normal()),
                        *cfg.hlr_range))
    # Native pixels per stamp pixel: a crop of crop_hlr_ratio half-light radii, downscaled
    # onto the stamp when it is wider than the stamp (the seed's "cropped around one prominent
    # galaxy and downscaled to 69 x 69").
    downscale = 1.0
    if cfg.crop_hlr_ratio:
        downscale = float(np.clip(cfg.crop_hlr_ratio * hlr / cfg.image_size, 1.0,
                                  cfg.max_downscale))
    truth["downscale"] = downscale
    dx, dy = rng.uniform(-1.0, 1.0, size=2)
    disk_q, disk_beta = rng.uniform(0.2, 1.0), rng.uniform(0, np.pi)
    truth.update(flux=flux, dx=dx, dy=dy, disk_hlr=hlr, disk_q=disk_q, disk_beta=disk_beta)

    # Components as (galsim profile with unit flux, share of total flux, population) so each
    # band scales them with its own colour.
    components: list[tuple[Any, float, str]] = []
    disk_shear = galsim.Shear(q=disk_q, beta=disk_beta * galsim.radians)
    if name == "elliptical":
        n = float(rng.choice(_SERSIC_GRID))
        main = galsim.Sersic(n, half_light_radius=hlr, trunc=8 * hlr)
        q, beta = rng.uniform(0.5, 1.0), rng.uniform(0, np.pi)
        # Real ellipticals are not one Sersic profile: ellipticity gradients and isophote
        # twists (an outer component of another shape), nuclear point sources, and faint
        # shells or streams from past mergers.
        halo_share = rng.uniform(0.2, 0.5) if rng.random() < 0.7 else 0.0
        nucleus_share = rng.uniform(0.01, 0.05) if rng.random() < 0.2 else 0.0
        shell_share = rng.uniform(0.02, 0.08) if rng.random() < 0.3 else 0.0
        main_share = 1 - halo_share - nucleus_share - shell_share
        components.append((main.shear(q=q, beta=beta * galsim.radians), main_share, "old"))
        if halo_share:
            halo_q = np.clip(q + rng.uniform(-0.3, 0.1), 0.35, 1.0)
            halo_beta = beta + rng.uniform(-0.6, 0.6)
            halo = galsim.Exponential(half_light_radius=1.6 * hlr)
            components.append(
                (halo.shear(q=halo_q, beta=halo_beta * galsim.radians), halo_share, "old"))
        if nucleus_share:
            components.append((galsim.DeltaFunction(), nucleus_share, "young"))
        if shell_share:
            components.append((_shells(galsim, rng, hlr), shell_share, "old"))
        truth.update(disk_q=q, disk_beta=beta, bulge_sersic_n=n, bulge_fraction=1.0,
                     halo_fraction=halo_share, nucleus_fraction=nucleus_share,
                     shell_fraction=shell_share)
    else:
        bulge_fraction = {
            "spiral": rng.uniform(0.05, 0.45),
            "irregular": rng.uniform(0.0, 0.1),
            "lenticular": rng.uniform(0.3, 0.8),
        }[name]
        arm_share = rng.uniform(0.15, 0.45) if name == "spiral" else 0.0
        knot_share = {
            "spiral": rng.uniform(0.05, 0.25),
            "irregular": rng.uniform(0.3, 0.7),
            "lenticular": 0.0,
        }[name]
        disk_share = 1.0 - bulge_fraction - arm_share - knot_share
        if disk_share < 0.05:  # keep a smooth disk underneath the structure
            scale = (1.0 - bulge_fraction - 0.05) / (arm_share + knot_share)
            arm_share, knot_share, disk_share = arm_share * scale, knot_share * scale, 0.05
        disk = galsim.Exponential(half_light_radius=hlr).shear(disk_shear)
        components.append((disk, disk_share, "disk"))
        if bulge_fraction > 0:
            n = float(rng.choice(_BULGE_GRID))
            bulge_hlr = hlr * rng.uniform(0.15, 0.5)
            bulge_q = rng.uniform(0.6, 1.0)
            bulge_beta = disk_beta + rng.uniform(-0.5, 0.5)
            bulge = galsim.Sersic(n, half_light_radius=bulge_hlr, trunc=10 * bulge_hlr)
            bulge = bulge.shear(q=bulge_q, beta=bulge_beta * galsim.radians)
            bulge = bulge.shift(*rng.normal(0, 0.2, size=2))
            components.append((bulge, bulge_fraction, "old"))
            truth.update(bulge_hlr=bulge_hlr, bulge_q=bulge_q, bulge_beta=bulge_beta,
                         bulge_sersic_n=n)
        truth["bulge_fraction"] = bulge_fraction
        # Bars: about half of nearby disks have one (flat, elongated, at its own angle).
        bar_prob = {"spiral": 0.5, "lenticular": 0.3, "irregular": 0.0}[name]
        if rng.random() < bar_prob:
            bar_share = min(rng.uniform(0.05, 0.2), 0.8 * disk_share)
            disk_share -= bar_share
            components[0] = (disk, disk_share, "disk")
            bar = galsim.Sersic(0.5, half_light_radius=hlr * rng.uniform(0.3, 0.7))
            bar = bar.shear(q=rng.uniform(0.2, 0.4), beta=rng.uniform(0, np.pi) * galsim.radians)
            components.append((bar.shear(disk_shear), bar_share, "old"))
            truth["bar_fraction"] = bar_share
        if arm_share > 0:
            n_arms = int(rng.choice([2, 2, 2, 3, 4]))
            pitch = rng.uniform(np.radians(10), np.radians(35))
            arms = _spiral_arms(galsim, rng, hlr, n_arms, pitch).withFlux(1.0).shear(disk_shear)
            components.append((arms, arm_share, "young"))
            truth.update(arm_fraction=arm_share, n_arms=n_arms, arm_pitch=pitch)
        if knot_share > 0:
            n_knots = int(rng.integers(10, 41))
            knot_hlr = hlr * (rng.uniform(0.8, 1.5) if name == "irregular" else 1.0)
            knots = galsim.RandomKnots(n_knots, half_light_radius=knot_hlr, flux=1.0, rng=deviate)
            if name == "irregular":  # lopsided star formation
                knots = knots.shift(*rng.normal(0, 0.3 * hlr, size=2))
            components.append((knots.shear(disk_shear), knot_share, "young"))
            truth.update(knot_fraction=knot_share, n_knots=n_knots)

    # Neighbours: stars and small galaxies away from the centre.
    neighbours: list[tuple[Any, float, str]] = []
    if cfg.neighbour_density > 0:
        neighbours = _background_sources(galsim, rng, cfg, flux, hlr, downscale)
        truth["n_neighbours"] = len(neighbours)
    elif rng.random() < cfg.neighbour_probability:
        count = int(rng.integers(1, 3))
        truth["n_neighbours"] = count
        half = cfg.image_size / 2 - 3
        for _ in range(count):
            radius = rng.uniform(min(12.0, half - 1), half)
            angle = rng.uniform(0, 2 * np.pi)
            share = float(np.exp(rng.uniform(np.log(0.01), np.log(0.3))))
            if rng.random() < 0.5:
                src, pop = galsim.DeltaFunction(), "old"
            else:
                src = galsim.Exponential(half_light_radius=rng.uniform(0.8, 2.5)).shear(
                    q=rng.uniform(0.3, 1.0), beta=rng.uniform(0, np.pi) * galsim.radians)
                pop = "disk"
            neighbours.append((src.shift(radius * np.cos(angle), radius * np.sin(angle)),
                               share, pop))

    psf_fwhm = rng.uniform(*cfg.psf_fwhm_range)
    psf_beta = rng.uniform(2.5, 4.5)
    psf_shear = galsim.Shear(g1=rng.normal(0, 0.03), g2=rng.normal(0, 0.03))
    truth.update(psf_fwhm=psf_fwhm, psf_beta=psf_beta)

    size, bands = cfg.image_size, cfg.bands
    images = np.empty((size, size, len(bands)), np.float32)
    variances = np.empty_like(images)
    psfs = np.empty((cfg.psf_size, cfg.psf_size, len(bands)), np.float32)
    for b, band in enumerate(bands):
        # Seeing improves to the red: FWHM ~ wavelength^-0.2 (Kolmogorov).
        fwhm_b = psf_fwhm * (_WAVELENGTH[band] / _WAVELENGTH["r"]) ** -0.2
        psf = galsim.Moffat(beta=psf_beta, fwhm=fwhm_b).shear(psf_shear)
        parts = [p.withFlux(flux * share * _SED[pop][band]) for p, share, pop in components]
        galaxy = galsim.Sum(parts).shift(dx, dy)
        scene = galaxy
        for p, share, pop in neighbours:
            scene = scene + p.withFlux(flux * share * _SED[pop][band])
        # A stamp pixel covers downscale^2 native pixels: drawing at that pixel scale
        # integrates the light over them, and the sum of their Poisson counts is Poisson.
        clean = galsim.Convolve(scene, psf).drawImage(nx=size, ny=size, scale=downscale)
        truth_image = np.maximum(clean.array, 0.0)  # FFT ringing can dip below zero
        area = downscale**2
        # CCD noise (gain 1): Poisson on source + sky, sky subtracted, Gaussian read noise.
        # numpy's Poisson sampler is ~50x faster than galsim.CCDNoise at these counts.
        counts = rng.poisson(truth_image + cfg.sky_level * area) - cfg.sky_level * area
        summed = counts + rng.normal(0.0, cfg.read_noise * downscale, size=counts.shape)
        images[..., b] = summed / area  # averaged: surface brightness per native pixel
        # The variance map a survey pipeline provides: sky + read noise + the *observed*
        # source counts (the noiseless image is unknown to an analysis, and giving it to the
        # baseline would leak where the true structure is), averaged like the image.
        observed = images[..., b] * area
        variances[..., b] = (np.maximum(observed, 0.0) + cfg.sky_level * area
                             + cfg.read_noise**2 * area) / area**2
        psf_image = psf.drawImage(nx=cfg.psf_size, ny=cfg.psf_size, scale=downscale).array
        psfs[..., b] = psf_image / psf_image.sum()
    truth = {k: float(v) for k, v in truth.items()}
    return {"images": images, "noise_variance": variances, "psf": psfs, "truth": truth}


def _draw_chunk(args: tuple[list[int], int, dict]) -> tuple[list[int], list[dict[str, Any]]]:
    indices, seed, cfg_dict = args
    cfg = GalaxyConfig(**cfg_dict)
    return indices, [_draw_stamp(i, seed, cfg) for i in indices]


def _chunks(n: int, size: int) -> Iterable[list[int]]:
    for start in range(0, n, size):
        yield list(range(start, min(start + size, n)))


def generate_galaxies(
    path: str | os.PathLike,
    n_stamps: int,
    *,
    seed: int = 0,
    processes: int = 1,
    config: GalaxyConfig | None = None,
    population: str = "default",
    progress: bool = False,
    chunk_size: int = 64,
) -> GeneratorReport:
    """Write ``n_stamps`` synthetic galaxy stamps to HDF5 ``path``.

    Args:
        path: output file (overwritten).
        n_stamps: number of stamps.
        seed: the file is identical for equal seeds and configurations, whatever ``processes``.
        processes: worker processes (``multiprocessing``); 1 draws in this process.
        config: population and instrument; overrides ``population``.
        population: a named population (``POPULATIONS``) used when ``config`` is None.
        progress: print progress lines to stderr.
        chunk_size: stamps per work unit and per HDF5 write.
    """
    arguments = generator_arguments(locals())
    if n_stamps < 1:
        raise ConfigError(f"n_stamps must be positive, got {n_stamps}")
    cfg = config or GalaxyConfig.population(population)
    path = os.fspath(path)
    size, n_bands = cfg.image_size, len(cfg.bands)
    single = n_bands == 1
    img_shape = (n_stamps, size, size) if single else (n_stamps, size, size, n_bands)
    psf_shape = ((n_stamps, cfg.psf_size, cfg.psf_size) if single
                 else (n_stamps, cfg.psf_size, cfg.psf_size, n_bands))
    cfg_dict = asdict(cfg)
    jobs = [(idx, seed, cfg_dict) for idx in _chunks(n_stamps, chunk_size)]
    counts = dict.fromkeys(MORPHOLOGIES, 0)
    with generated_file(path, _draw_chunk, jobs, processes=processes, label="galaxy",
                        noun="stamps", total=n_stamps, progress=progress,
                        arguments=arguments) as out:
        fh = out.file
        chunk_rows = (min(chunk_size, n_stamps),) + img_shape[1:]
        d_img = fh.create_dataset("images", img_shape, np.float32, chunks=chunk_rows)
        d_var = fh.create_dataset("noise_variance", img_shape, np.float32, chunks=chunk_rows)
        d_psf = fh.create_dataset("psf", psf_shape, np.float32)
        truth = {k: np.zeros(n_stamps, np.float64) for k in TRUTH_FIELDS}
        for indices, stamps in out.results:
            lo, hi = indices[0], indices[-1] + 1
            stack = {k: np.stack([s[k] for s in stamps]) for k in ("images",
                                                                   "noise_variance", "psf")}
            if single:
                stack = {k: v[..., 0] for k, v in stack.items()}
            d_img[lo:hi], d_var[lo:hi], d_psf[lo:hi] = (
                stack["images"], stack["noise_variance"], stack["psf"])
            for s, i in zip(stamps, range(lo, hi)):
                for k in TRUTH_FIELDS:
                    truth[k][i] = s["truth"][k]
                counts[MORPHOLOGIES[int(s["truth"]["morphology"])]] += 1
            out.advance(hi - lo)
        group = fh.create_group("truth")
        for k, v in truth.items():
            group.create_dataset(k, data=v.astype(np.int32) if k in
                                 ("morphology", "n_arms", "n_knots", "n_neighbours") else v)
        fh.attrs["generator"] = "modelzoo.galaxy.generator"
        fh.attrs["seed"] = seed
        fh.attrs["bands"] = ",".join(cfg.bands)
        fh.attrs["morphologies"] = ",".join(MORPHOLOGIES)
        fh.attrs["noise_sigma"] = cfg.noise_sigma
        fh.attrs["units"] = "counts (ADU, gain 1), sky-subtracted"
        fh.attrs["config"] = json.dumps(cfg_dict)
        out.details = {"morphology_counts": counts}
    return out.report


# ----------------------------------------------------------------------------------------------
# Command line: modelzoo data galaxy --output stamps.h5 --count 12000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``modelzoo data galaxy``."""
    parser.add_argument("--output", required=True, help="HDF5 file to write")
    parser.add_argument("--count", type=int, default=2000, help="number of stamps")
    parser.add_argument("--bands", default="r", help="comma-separated ugriz bands, e.g. g,r,i")
    parser.add_argument("--image-size", type=int, default=69)
    parser.add_argument("--population", default="default", choices=sorted(POPULATIONS),
                        help="galaxy population: 'default', or 'prominent' (the seed's "
                        "selection: bright galaxies, crops downscaled to the stamp, background "
                        "sources)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)


def run(args: argparse.Namespace) -> None:
    """``modelzoo data galaxy``."""
    config = GalaxyConfig.population(args.population, image_size=args.image_size,
                                     bands=tuple(args.bands.split(",")))
    # The name goes in beside the config, which holds the population's values but not its name:
    # the file records the arguments, and a shipped entry's check of matching data compares it.
    report = generate_galaxies(args.output, args.count, seed=args.seed,
                               processes=args.processes, config=config,
                               population=args.population, progress=True)
    mix = ", ".join(f"{k} {v}" for k, v in report.details["morphology_counts"].items())
    print(f"galaxy: morphologies {mix}", file=sys.stderr)
