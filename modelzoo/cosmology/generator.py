"""Synthetic weak-lensing convergence maps (``modelzoo data cosmology``).

Physics, step by step, per cosmology (Omega_m, sigma_8, Omega_b, h, n_s):

1. Convergence angular power spectrum C_ell from pyccl (Chisari et al. 2019, arXiv:1812.05995):
   Eisenstein-Hu transfer function, halofit non-linear matter power, Limber integral over a
   Smail et al. source distribution n(z) ~ z^2 exp(-(z/z0)^1.5).
2. A Gaussian random field on a flat, periodic npix x npix patch of stated side, whose Fourier
   modes carry that C_ell.
3. A shifted lognormal transform, kappa = lambda (exp(g - sigma_g^2/2) - 1), with the Gaussian
   field's spectrum chosen so that kappa keeps the requested C_ell exactly (Hilbert, Hartlap &
   Schneider 2011, A&A 536 A85; Xavier et al. 2016, MNRAS 459 3693). The shift lambda is the
   empty-beam convergence -kappa_min, which grows with Omega_m: at equal power spectra two
   cosmologies still differ in skewness, i.e. the maps carry non-Gaussian information.
4. Galaxy shape noise, sigma_e / sqrt(n_gal A_pix) per pixel, then Gaussian smoothing.

Settings (``--setting``): ``sigma8`` is the seed's kind of pair (a fiducial model against one
with a lower sigma_8: the spectra differ in amplitude); ``degenerate`` is a pair along the
sigma_8-Omega_m degeneracy whose sigma_8 is solved so that the two smoothed maps have the same
variance (Schmelzle et al. 2017, arXiv:1707.05167): the power spectrum alone struggles there;
``parameters`` draws ``num_cosmologies`` random (Omega_m, sigma_8) for the regression head
(Gupta et al. 2018, arXiv:1802.01212). ``cosmologies=[(Omega_m, sigma_8), ...]`` sets any N.

The HDF5 layout written here is the one :mod:`modelzoo.cosmology.reader` reads: ``kappa``
(N, npix, npix) float32, with shape noise also ``kappa_clean`` (the same maps without it),
``label`` (N,) int32 (index of the cosmology), ``omega_m`` and
``sigma_8`` (N,) float32, and the attribute ``pixel_arcmin``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from modelzoo.cosmology.statistics import ARCMIN, mode_ell
from modelzoo.errors import ConfigError
from modelzoo.parallel import GeneratorReport, generated_file, generator_arguments

SPEED_OF_LIGHT_KM_S = 299792.458
SETTINGS = ("sigma8", "degenerate", "parameters")


@dataclass(frozen=True)
class Cosmology:
    """Flat LCDM parameters (Planck 2018-like defaults besides Omega_m and sigma_8)."""

    omega_m: float = 0.3
    sigma_8: float = 0.8
    omega_b: float = 0.049
    h: float = 0.673
    n_s: float = 0.965


@dataclass(frozen=True)
class Survey:
    """The patch and the galaxies that measure it.

    Defaults: Gupta et al.'s 3.5 x 3.5 deg patch at 128 x 128 pixels (1.64 arcmin), an LSST-like
    source density (30 galaxies/arcmin^2, intrinsic ellipticity 0.26 per component, z0 = 0.64)
    and a 2.34 arcmin Gaussian smoothing (Fluri et al. 2018's middle scale).
    """

    npix: int = 128
    side_deg: float = 3.5
    z0: float = 0.64
    galaxies_per_arcmin2: float = 30.0
    sigma_e: float = 0.26
    smoothing_arcmin: float = 2.34
    shape_noise: bool = True
    lognormal: bool = True

    @property
    def pixel_arcmin(self) -> float:
        return self.side_deg * 60.0 / self.npix

    @property
    def noise_sigma(self) -> float:
        """Shape noise per pixel before smoothing."""
        return self.sigma_e / np.sqrt(self.galaxies_per_arcmin2 * self.pixel_arcmin**2)


def source_redshifts(survey: Survey) -> tuple[np.ndarray, np.ndarray]:
    """(z, n(z)) of the Smail et al. distribution, normalised to unit integral."""
    z = np.linspace(0.005, 4.0, 400)
    nz = z**2 * np.exp(-((z / survey.z0) ** 1.5))
    return z, nz / np.trapezoid(nz, z)


def _ccl(cosmo: Cosmology):
    import pyccl

    return pyccl.Cosmology(
        Omega_c=cosmo.omega_m - cosmo.omega_b, Omega_b=cosmo.omega_b, h=cosmo.h,
        sigma8=cosmo.sigma_8, n_s=cosmo.n_s, transfer_function="eisenstein_hu",
        matter_power_spectrum="halofit",
    )


def convergence_cl(cosmo: Cosmology, survey: Survey, ell: np.ndarray) -> np.ndarray:
    """The convergence power spectrum C_ell at ``ell`` (pyccl, Limber)."""
    import pyccl

    model = _ccl(cosmo)
    tracer = pyccl.WeakLensingTracer(model, dndz=source_redshifts(survey))
    return np.asarray(pyccl.angular_cl(model, tracer, tracer, np.asarray(ell, np.float64)))


def empty_beam_convergence(cosmo: Cosmology, survey: Survey) -> float:
    """The convergence of a line of sight through empty space (negative): the lowest value a
    convergence map can take, averaged over the source distribution (Hilbert et al. 2011).

    kappa_empty = -3/2 Omega_m (H0/c)^2 int dchi chi (1 + z) q(chi),
    q(chi) = int_{chi}^inf dchi_s n(chi_s) (chi_s - chi) / chi_s.
    """
    import pyccl

    z, nz = source_redshifts(survey)
    chi = pyccl.comoving_radial_distance(_ccl(cosmo), 1.0 / (1.0 + z))
    lens_weight = np.array([
        np.trapezoid(np.where(chi > c, nz * (chi - c) / chi, 0.0), z) for c in chi
    ])
    hubble = 100.0 * cosmo.h / SPEED_OF_LIGHT_KM_S  # H0 / c in 1/Mpc
    dchi_dz = np.gradient(chi, z)
    integrand = chi * (1.0 + z) * lens_weight * dchi_dz
    return float(-1.5 * cosmo.omega_m * hubble**2 * np.trapezoid(integrand, z))


def _mode_cl(cosmo: Cosmology, survey: Survey) -> np.ndarray:
    """C_ell at every Fourier mode of the patch (0 for the mean), interpolated in log-log."""
    ell = mode_ell(survey.npix, survey.pixel_arcmin)
    grid = np.geomspace(ell[ell > 0].min() * 0.9, ell.max() * 1.1, 200)
    cl = np.exp(np.interp(np.log(np.maximum(ell, grid[0])), np.log(grid),
                          np.log(convergence_cl(cosmo, survey, grid))))
    cl[0, 0] = 0.0
    return cl


@dataclass
class FieldModel:
    """What drawing maps of one cosmology needs: the Gaussian field's per-mode amplitude, the
    lognormal shift and the Gaussian field's variance."""

    amplitude: np.ndarray
    shift: float
    gaussian_variance: float
    survey: Survey

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One (npix, npix) map."""
        return self.draw_pair(rng)[0]

    def draw_pair(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(observed, noiseless) maps of one field: the noiseless map is the same field smoothed
        alike without shape noise (what a denoiser should return); it draws no random numbers,
        so the observed map is the same with or without it."""
        survey = self.survey
        white = rng.standard_normal((survey.npix, survey.npix))
        field = np.fft.ifft2(np.fft.fft2(white) * self.amplitude).real
        if survey.lognormal:
            field = self.shift * np.expm1(field - self.gaussian_variance / 2.0)
        clean = field
        if survey.shape_noise:
            field = field + survey.noise_sigma * rng.standard_normal(field.shape)
        if survey.smoothing_arcmin > 0:
            sigma = survey.smoothing_arcmin * ARCMIN
            ell = mode_ell(survey.npix, survey.pixel_arcmin)
            window = np.exp(-0.5 * (ell * sigma) ** 2)
            field = np.fft.ifft2(np.fft.fft2(field) * window).real
            clean = np.fft.ifft2(np.fft.fft2(clean) * window).real
        return field.astype(np.float32), clean.astype(np.float32)


@functools.lru_cache(maxsize=64)
def field_model(cosmo: Cosmology, survey: Survey) -> FieldModel:
    """The :class:`FieldModel` whose maps (before noise and smoothing) have pyccl's C_ell.

    The per-mode variance of the discrete Fourier transform is V = N C_ell / A_pix; the field's
    correlation on the periodic grid is ifft(V) / N. For the lognormal field the Gaussian
    correlation is log(1 + xi_kappa / lambda^2), whose transform (negative modes clipped to 0,
    a tiny change) gives the Gaussian field's amplitude.
    """
    npix = survey.npix
    n = npix * npix
    variance = n * _mode_cl(cosmo, survey) / (survey.pixel_arcmin * ARCMIN) ** 2
    shift = -empty_beam_convergence(cosmo, survey)
    if survey.lognormal:
        xi_kappa = np.fft.ifft2(variance).real / n
        xi_gauss = np.log1p(xi_kappa / shift**2)
        variance = np.maximum(n * np.fft.fft2(xi_gauss).real, 0.0)
    return FieldModel(np.sqrt(variance / n), shift, float(variance.sum() / n**2), survey)


def smoothed_variance(cosmo: Cosmology, survey: Survey) -> float:
    """Variance of a noiseless smoothed map of ``cosmo`` (sum over the patch's modes)."""
    ell = mode_ell(survey.npix, survey.pixel_arcmin)
    window = np.exp(-((ell * survey.smoothing_arcmin * ARCMIN) ** 2))
    area = (survey.side_deg * np.pi / 180.0) ** 2
    return float((_mode_cl(cosmo, survey) * window).sum() / area)


def degenerate_partner(fiducial: Cosmology, omega_m: float, survey: Survey) -> Cosmology:
    """The cosmology at ``omega_m`` whose sigma_8 gives smoothed maps the fiducial variance
    (a point on the sigma_8-Omega_m lensing degeneracy for this survey). Variance grows about
    as sigma_8^2 (faster under halofit), so a few fixed-point steps converge."""
    target = smoothed_variance(fiducial, survey)
    sigma_8 = fiducial.sigma_8 * (fiducial.omega_m / omega_m) ** 0.5
    for _ in range(6):
        partner = Cosmology(omega_m, sigma_8, fiducial.omega_b, fiducial.h, fiducial.n_s)
        sigma_8 *= (target / smoothed_variance(partner, survey)) ** 0.4
    return Cosmology(omega_m, round(sigma_8, 4), fiducial.omega_b, fiducial.h, fiducial.n_s)


def setting_cosmologies(
    setting: str, survey: Survey, seed: int = 0, num_cosmologies: int = 16,
    omega_m_range: tuple[float, float] = (0.2, 0.4),
    sigma_8_range: tuple[float, float] = (0.65, 0.95),
) -> list[Cosmology]:
    """The cosmologies of a documented setting (index = class label)."""
    fiducial = Cosmology(0.3, 0.8)
    if setting == "sigma8":
        return [fiducial, Cosmology(0.3, 0.75)]
    if setting == "degenerate":
        return [fiducial, degenerate_partner(fiducial, 0.2, survey)]
    if setting == "parameters":
        rng = np.random.default_rng([seed, 11])
        # Latin hypercube: every parameter's range is covered evenly by the cosmologies.
        cells = [(rng.permutation(num_cosmologies) + rng.random(num_cosmologies))
                 / num_cosmologies for _ in range(2)]
        return [
            Cosmology(round(omega_m_range[0] + a * (omega_m_range[1] - omega_m_range[0]), 4),
                      round(sigma_8_range[0] + b * (sigma_8_range[1] - sigma_8_range[0]), 4))
            for a, b in zip(*cells)
        ]
    raise ConfigError(f"setting must be one of {SETTINGS}, got {setting!r}")


@dataclass(frozen=True)
class _Chunk:
    label: int
    chunk: int
    first: int
    count: int
    model: FieldModel
    seed: int


def _draw_chunk(task: _Chunk) -> tuple[_Chunk, np.ndarray, np.ndarray]:
    model = task.model
    rng = np.random.default_rng([task.seed, task.label, task.chunk])
    pairs = [model.draw_pair(rng) for _ in range(task.count)]
    return task, np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def generate_mass_maps(
    path: str | os.PathLike,
    *,
    setting: str = "sigma8",
    maps_per_class: int = 500,
    cosmologies: list[tuple[float, float]] | None = None,
    num_cosmologies: int = 16,
    npix: int = 128,
    side_deg: float = 3.5,
    smoothing_arcmin: float = 2.34,
    galaxies_per_arcmin2: float = 30.0,
    sigma_e: float = 0.26,
    z0: float = 0.64,
    shape_noise: bool = True,
    lognormal: bool = True,
    seed: int = 0,
    processes: int = 1,
    progress: bool = True,
    chunk_maps: int = 32,
) -> GeneratorReport:
    """Write ``maps_per_class`` convergence maps for each cosmology of ``setting`` (or of
    ``cosmologies``, a list of (Omega_m, sigma_8)) to ``path``, rows shuffled.

    The output depends on ``seed`` only, not on ``processes``. The report's details list the
    cosmologies.
    """
    arguments = generator_arguments(locals())
    if maps_per_class < 1:
        raise ConfigError(f"maps_per_class must be positive, got {maps_per_class}")
    survey = Survey(npix, side_deg, z0, galaxies_per_arcmin2, sigma_e, smoothing_arcmin,
                    bool(shape_noise), bool(lognormal))
    if cosmologies:
        classes = [Cosmology(float(om), float(s8)) for om, s8 in cosmologies]
        setting = "custom"
    else:
        classes = setting_cosmologies(setting, survey, seed, num_cosmologies)
    # pyccl runs here, in the parent, only: forked workers that call it can hang in its
    # threading runtime; they get the finished field models and only draw.
    models = [field_model(cosmo, survey) for cosmo in classes]
    tasks = []
    for label, model in enumerate(models):
        for chunk, first in enumerate(range(0, maps_per_class, chunk_maps)):
            count = min(chunk_maps, maps_per_class - first)
            tasks.append(_Chunk(label, chunk, label * maps_per_class + first, count, model,
                                seed))
    total = maps_per_class * len(classes)
    position = np.random.default_rng([seed, 7]).permutation(total)
    label = np.repeat(np.arange(len(classes), dtype=np.int32), maps_per_class)
    omega_m = np.repeat([c.omega_m for c in classes], maps_per_class).astype(np.float32)
    sigma_8 = np.repeat([c.sigma_8 for c in classes], maps_per_class).astype(np.float32)
    with generated_file(path, _draw_chunk, tasks, processes=processes, label="cosmology",
                        noun="maps", total=total, progress=progress,
                        arguments=arguments) as out:
        handle = out.file
        kappa = handle.create_dataset("kappa", (total, npix, npix), "f4",
                                      chunks=(min(8, total), npix, npix))
        # With shape noise, the noiseless map of every row is kept beside it: a denoiser is
        # scored against it.
        clean = (handle.create_dataset("kappa_clean", (total, npix, npix), "f4",
                                       chunks=(min(8, total), npix, npix))
                 if survey.shape_noise else None)
        for task, maps, noiseless in out.results:
            rows = position[task.first:task.first + task.count]
            order = np.argsort(rows)
            kappa[rows[order]] = maps[order]
            if clean is not None:
                clean[rows[order]] = noiseless[order]
            out.advance(task.count)
        inverse = np.argsort(position)
        for name, values in (("label", label), ("omega_m", omega_m), ("sigma_8", sigma_8)):
            handle.create_dataset(name, data=values[inverse])
        handle.attrs["pixel_arcmin"] = survey.pixel_arcmin
        handle.attrs["setting"] = setting
        handle.attrs["seed"] = seed
        handle.attrs["survey"] = json.dumps(asdict(survey))
        handle.attrs["cosmologies"] = json.dumps([asdict(c) for c in classes])
        handle.attrs["lognormal_shift"] = json.dumps(
            [model.shift for model in models])
        handle.attrs["generator"] = "modelzoo.cosmology.generator (pyccl, lognormal)"
        out.details = {"cosmologies": [asdict(c) for c in classes]}
    return out.report


def _pair(text: str) -> tuple[float, float]:
    try:
        omega_m, sigma_8 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected OMEGA_M,SIGMA_8, got {text!r}") from None
    return omega_m, sigma_8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``modelzoo data cosmology``."""
    parser.add_argument("--output", help="HDF5 file to write (required)")
    parser.add_argument("--setting", choices=SETTINGS, default="sigma8",
                        help="sigma8: shifted sigma_8 pair; degenerate: equal-variance pair "
                        "along the sigma_8-Omega_m degeneracy; parameters: random cosmologies")
    parser.add_argument("--cosmology", type=_pair, action="append", metavar="OMEGA_M,SIGMA_8",
                        help="one class per option (overrides --setting)")
    parser.add_argument("--maps-per-class", type=int, default=500)
    parser.add_argument("--num-cosmologies", type=int, default=16,
                        help="cosmologies of --setting parameters")
    parser.add_argument("--npix", type=int, default=128)
    parser.add_argument("--side-deg", type=float, default=3.5)
    parser.add_argument("--smoothing-arcmin", type=float, default=2.34)
    parser.add_argument("--galaxies-per-arcmin2", type=float, default=30.0)
    parser.add_argument("--no-shape-noise", action="store_true")
    parser.add_argument("--gaussian", action="store_true", help="no lognormal transform")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)


def run(args: argparse.Namespace) -> None:
    """``modelzoo data cosmology``: progress and a summary line go to stderr."""
    if args.output is None:
        raise ConfigError("modelzoo data cosmology needs --output FILE.h5")
    generate_mass_maps(
        args.output, setting=args.setting, cosmologies=args.cosmology,
        maps_per_class=args.maps_per_class, num_cosmologies=args.num_cosmologies,
        npix=args.npix, side_deg=args.side_deg, smoothing_arcmin=args.smoothing_arcmin,
        galaxies_per_arcmin2=args.galaxies_per_arcmin2, shape_noise=not args.no_shape_noise,
        lognormal=not args.gaussian, seed=args.seed, processes=args.processes,
    )
