"""Synthetic CosmoFlow volumes (``modelzoo data cosmology cosmoflow``).

Per volume, a cosmology (Omega_m, sigma_8, n_s, h) is drawn uniformly in the ranges below, and:

1. the non-linear matter power spectrum P(k, z) at the four redshifts comes from pyccl
   (Chisari et al. 2019, arXiv:1812.05995; Eisenstein-Hu transfer function, halofit);
2. a 3-D lognormal density field (Coles & Jones 1991, MNRAS 248 1) is drawn on the periodic
   ``npix``^3 grid at each redshift: the Gaussian field's spectrum is chosen so that the
   lognormal field 1 + delta = exp(g - sigma_g^2 / 2) keeps P(k, z) (its correlation is
   log(1 + xi)), and the four redshifts share one set of Fourier phases (the same white noise),
   as the snapshots of one simulation share its initial conditions;
3. particle counts are Poisson draws of mean n_bar (1 + delta) per voxel, n_bar =
   ``particles_per_mpc3`` x the voxel volume (one particle per (Mpc/h)^3: 512^3 particles in
   the benchmark's 512 Mpc/h boxes), stored as int16 as the benchmark does.

The benchmark's volumes (MLPerf HPC CosmoFlow, cosmoUniverse_2019_05_4parE) are 128^3 crops of
N-body runs at 1 Mpc/h voxels and four redshifts; this generator keeps that volume and layout
(128 Mpc/h, 4 channels) and lets ``npix`` coarsen the grid (32^3 at 4 Mpc/h trains on a CPU).
Its parameter ranges and redshifts are choices around Planck 2018, not the benchmark's, and a
lognormal field is not an N-body field: numbers measured here are not the benchmark's.

Output (``--format``): ``OUT/train/`` and ``OUT/validation/`` of gzip ``*.tfrecord`` files
(one volume each, the published layout, see :mod:`~modelzoo.cosmology.cosmoflow_reader`) and
``OUT/volumes.h5`` (``x`` counts, ``y`` targets in [-1, 1], ``parameters`` in physical units,
``split`` 0 train / 1 validation, the ranges as attributes). The output depends on ``seed`` only,
not on ``processes``.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelzoo.cosmology.cosmoflow_reader import PARAMETERS, write_tfrecord
from modelzoo.cosmology.cosmoflow_statistics import mode_k
from modelzoo.errors import ConfigError
from modelzoo.parallel import (
    GeneratedOutput,
    GeneratorReport,
    generated_file,
    generated_folder,
    generator_arguments,
    hdf5_output,
)

# Uniform ranges of (Omega_m, sigma_8, n_s, h), around Planck 2018 (the zoo's choice).
RANGES = ((0.25, 0.35), (0.70, 0.90), (0.90, 1.02), (0.60, 0.76))
REDSHIFTS = (0.0, 0.5, 1.5, 3.0)
OMEGA_B = 0.049
FORMATS = ("tfrecord", "hdf5")


def to_unit(parameters: np.ndarray, ranges=RANGES) -> np.ndarray:
    """Physical parameters (n, 4) -> targets in [-1, 1] (the benchmark's unit scaling)."""
    lo, hi = np.asarray(ranges, np.float64).T
    return (2.0 * (np.asarray(parameters) - lo) / (hi - lo) - 1.0).astype(np.float32)


def from_unit(targets: np.ndarray, ranges=RANGES) -> np.ndarray:
    lo, hi = np.asarray(ranges, np.float64).T
    return lo + (np.asarray(targets, np.float64) + 1.0) / 2.0 * (hi - lo)


def power_table(parameters: tuple[float, float, float, float], redshifts=REDSHIFTS,
                k_h: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(k in h/Mpc, P(k, z) in (Mpc/h)^3 for each redshift) from pyccl (halofit)."""
    import pyccl

    omega_m, sigma_8, n_s, h = (float(p) for p in parameters)
    cosmo = pyccl.Cosmology(Omega_c=omega_m - OMEGA_B, Omega_b=OMEGA_B, h=h, sigma8=sigma_8,
                            n_s=n_s, transfer_function="eisenstein_hu",
                            matter_power_spectrum="halofit")
    k_h = np.geomspace(1e-3, 20.0, 256) if k_h is None else k_h
    table = np.stack([pyccl.nonlin_matter_power(cosmo, k_h * h, 1.0 / (1.0 + z)) * h**3
                      for z in redshifts])
    return k_h, table


@dataclass(frozen=True)
class Grid:
    npix: int = 128
    box_side: float = 128.0  # Mpc/h
    particles_per_mpc3: float = 1.0

    @property
    def mean_count(self) -> float:
        return self.particles_per_mpc3 * (self.box_side / self.npix) ** 3


def grid_power(k_h: np.ndarray, power: np.ndarray, grid: Grid) -> np.ndarray:
    """P(|k|) at every DFT mode of the grid (0 for the mean), interpolated in log-log."""
    k = mode_k(grid.npix, grid.box_side)
    out = np.exp(np.interp(np.log(np.maximum(k, k_h[0])), np.log(k_h), np.log(power)))
    out[0, 0, 0] = 0.0
    return out


def lognormal_amplitude(k_h: np.ndarray, power: np.ndarray, grid: Grid
                        ) -> tuple[np.ndarray, float]:
    """(per-mode amplitude of the Gaussian field g, variance of g) such that
    exp(g - var/2) - 1 has the spectrum ``power``.

    The DFT of a field with spectrum P has <|delta_k|^2> = N^3 P / V_cell; its correlation on
    the periodic grid is ifftn of that over N^3. The Gaussian field's correlation is
    log(1 + xi); its transform (negative modes clipped to 0, a small change) gives g's spectrum.
    """
    n = grid.npix**3
    cell = (grid.box_side / grid.npix) ** 3
    variance = n * grid_power(k_h, power, grid) / cell
    xi = np.fft.ifftn(variance).real / n
    variance_g = np.maximum(n * np.fft.fftn(np.log1p(xi)).real, 0.0)
    return np.sqrt(variance_g / n), float(variance_g.sum() / n**2)


def lognormal_fields(k_h: np.ndarray, table: np.ndarray, grid: Grid,
                     rng: np.random.Generator) -> np.ndarray:
    """Density contrasts (redshifts, N, N, N) sharing one set of phases."""
    white = np.fft.fftn(rng.standard_normal((grid.npix,) * 3))
    fields = []
    for power in table:
        amplitude, variance = lognormal_amplitude(k_h, power, grid)
        g = np.fft.ifftn(white * amplitude).real
        fields.append(np.expm1(g - variance / 2.0))
    return np.stack(fields)


def draw_volume(index: int, seed: int, k_h: np.ndarray, table: np.ndarray, grid: Grid
                ) -> np.ndarray:
    """Counts (N, N, N, redshifts) int16 of volume ``index``."""
    rng = np.random.default_rng([seed, index, 2])
    delta = lognormal_fields(k_h, table, grid, rng)
    counts = rng.poisson(grid.mean_count * (1.0 + delta))
    return np.moveaxis(np.minimum(counts, np.iinfo(np.int16).max), 0, -1).astype(np.int16)


def draw_parameters(count: int, seed: int, ranges=RANGES) -> np.ndarray:
    """(count, 4) cosmologies, uniform in ``ranges`` (one per volume)."""
    lo, hi = np.asarray(ranges, np.float64).T
    return lo + np.random.default_rng([seed, 11]).random((count, len(ranges))) * (hi - lo)


def _volume(task: tuple) -> tuple[int, np.ndarray]:
    index, seed, k_h, table, grid = task
    return index, draw_volume(index, seed, k_h, table, grid)


def generate_volumes(
    path: str | os.PathLike,
    *,
    n_volumes: int = 64,
    npix: int = 128,
    box_side: float = 128.0,
    particles_per_mpc3: float = 1.0,
    redshifts: tuple[float, ...] = REDSHIFTS,
    val_fraction: float = 0.25,
    volumes_per_cosmology: int = 1,
    formats: tuple[str, ...] = FORMATS,
    gzip: bool = True,
    seed: int = 0,
    processes: int = 1,
    progress: bool = True,
) -> GeneratorReport:
    """Writes ``n_volumes`` synthetic volumes to the folder ``path`` (see the module docstring),
    or, when ``path`` ends in ``.h5``/``.hdf5``, to that one HDF5 file; the last
    ``val_fraction`` of them, other cosmologies than the training ones, validate. Consecutive
    volumes share a cosmology in groups of ``volumes_per_cosmology`` (independent fields: the
    benchmark cuts each 512^3 simulation into 64 sub-volumes of one cosmology). Returns what
    was written (``details["validation"]``: the validation volumes)."""
    arguments = generator_arguments(locals())
    if n_volumes < 1 or npix < 2:
        raise ConfigError(f"need n_volumes >= 1 and npix >= 2, got {n_volumes} and {npix}")
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ConfigError(f"formats must be among {FORMATS}, got {list(formats)}")
    grid = Grid(npix, float(box_side), float(particles_per_mpc3))
    if volumes_per_cosmology < 1:
        raise ConfigError(f"volumes_per_cosmology must be >= 1, got {volumes_per_cosmology}")
    cosmologies = -(-n_volumes // volumes_per_cosmology)
    # pyccl runs here, in the parent only (forked workers calling it can hang in its threading
    # runtime); the workers get the finished tables.
    unique = draw_parameters(cosmologies, seed)
    unique_tables = [power_table(p, redshifts) for p in unique]
    owner = np.arange(n_volumes) // volumes_per_cosmology
    parameters, tables = unique[owner], [unique_tables[c] for c in owner]
    # Whole cosmologies validate: the last val_fraction of them.
    num_val = int(np.sum(owner >= cosmologies - int(round(cosmologies * val_fraction))))
    split = (np.arange(n_volumes) >= n_volumes - num_val).astype(np.int8)
    targets = to_unit(parameters)
    target = Path(path)
    single_file = target.suffix in (".h5", ".hdf5")
    formats = ("hdf5",) if single_file else formats
    tasks = [(i, seed, *tables[i], grid) for i in range(n_volumes)]
    progress_line = dict(label="cosmoflow", noun="volumes", total=n_volumes, processes=processes,
                         progress=progress)
    if single_file:
        with generated_file(target, _volume, tasks, arguments=arguments,
                            **progress_line) as out:
            _write_volumes(out, out.file, None, grid, redshifts, seed, split, targets,
                           parameters, gzip)
    else:
        with generated_folder(target, _volume, tasks, **progress_line) as out:
            for folder in ("train", "validation"):
                if "tfrecord" in formats:
                    (out.folder / folder).mkdir()
            if "hdf5" in formats:
                with hdf5_output(out.folder / "volumes.h5") as handle:
                    handle.attrs["generator_arguments"] = json.dumps(arguments, sort_keys=True)
                    _write_volumes(out, handle, formats, grid, redshifts, seed, split, targets,
                                   parameters, gzip)
            else:
                _write_volumes(out, None, formats, grid, redshifts, seed, split, targets,
                               parameters, gzip)
            with open(out.folder / "parameters.json", "w") as fh:
                json.dump({"names": PARAMETERS, "ranges": RANGES, "redshifts": list(redshifts),
                           "box_side_mpc_h": grid.box_side, "npix": npix,
                           "mean_count": grid.mean_count, "seed": seed,
                           "parameters": parameters.tolist(), "split": split.tolist()}, fh)
    out.details = {"validation": num_val}
    return out.report


def _write_volumes(out: GeneratedOutput, handle, formats: tuple[str, ...] | None, grid: Grid,
                   redshifts: tuple[float, ...], seed: int, split: np.ndarray,
                   targets: np.ndarray, parameters: np.ndarray, gzip: bool) -> None:
    """The workers' volumes into ``handle`` (an HDF5 file, or None) and, with ``formats``
    naming tfrecord, one TFRecord file per volume under ``out.folder``."""
    if handle is not None:
        x = handle.create_dataset("x", (len(split), *(grid.npix,) * 3, len(redshifts)), "i2",
                                  chunks=(1, *(grid.npix,) * 3, len(redshifts)))
    for index, counts in out.results:
        if handle is not None:
            x[index] = counts
        if formats and "tfrecord" in formats:
            folder = "validation" if split[index] else "train"
            write_tfrecord(str(out.folder / folder / f"cosmoflow_{index:06d}.tfrecord"),
                           counts[None], targets[index][None], gzip=gzip)
        out.advance(1)
    if handle is not None:
        handle.create_dataset("y", data=targets)
        handle.create_dataset("parameters", data=parameters.astype(np.float32))
        handle.create_dataset("split", data=split)
        handle.attrs.update(
            parameter_names=json.dumps(PARAMETERS), ranges=json.dumps(RANGES),
            redshifts=json.dumps(list(redshifts)), box_side_mpc_h=grid.box_side,
            mean_count=grid.mean_count, seed=seed,
            generator="modelzoo.cosmology.cosmoflow_generator (pyccl, lognormal)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``modelzoo data cosmology cosmoflow``."""
    parser.add_argument("--output", required=True, help="folder to write")
    parser.add_argument("--volumes", type=int, default=64)
    parser.add_argument("--npix", type=int, default=128, help="grid side (128: the benchmark)")
    parser.add_argument("--box-side", type=float, default=128.0, help="Mpc/h")
    parser.add_argument("--particles-per-mpc3", type=float, default=1.0)
    parser.add_argument("--val-fraction", type=float, default=0.25,
                        help="fraction of the cosmologies that validate")
    parser.add_argument("--volumes-per-cosmology", type=int, default=1)
    parser.add_argument("--format", choices=FORMATS, action="append",
                        help="tfrecord and/or hdf5 (default both)")
    parser.add_argument("--no-gzip", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)


def run(args: argparse.Namespace) -> None:
    generate_volumes(
        args.output, n_volumes=args.volumes, npix=args.npix, box_side=args.box_side,
        particles_per_mpc3=args.particles_per_mpc3, val_fraction=args.val_fraction,
        volumes_per_cosmology=args.volumes_per_cosmology,
        formats=tuple(args.format or FORMATS), gzip=not args.no_gzip, seed=args.seed,
        processes=args.processes,
    )
