"""Synthetic Daya Bay antineutrino-detector events in the dayabay-learn HDF5 layout.

A physics-informed stand-in for the trigger snapshots of Racah et al., "Revealing Fundamental
Physics from the Daya Bay Neutrino Experiment using Deep Neural Networks" (ICMLA 2016,
arXiv:1601.07621) and the IBD-pair files of Kohn's and Racah's dayabay-learn code.

Detector
--------
One antineutrino detector (AD): a liquid-scintillator cylinder (Gd-doped target of radius and
half-height :data:`TARGET_RADIUS_M`, surrounded by the gamma catcher out to
:data:`SCINT_RADIUS_M`) seen by 192 PMTs on the barrel wall at radius :data:`PMT_RADIUS_M`,
in 8 rings (z from -1.75 m to +1.75 m) x 24 columns (azimuth), facing the axis. A point-like
deposit of E MeV at r gives PMT i the expected photoelectron count

    mu_i = E * LIGHT_YIELD_PE_PER_MEV * g_i(r) / sum_j g_j(0),
    g_i(r) = max(cos theta_i, 0) / d_i^2 * exp(-d_i / ATTENUATION_M),

(inverse-square falloff, the PMT's angular acceptance, attenuation in the liquid); the
observed photoelectrons are Poisson, the charge their sum of single-PE gains
(N(1, SPE_WIDTH) each), saturating at :data:`SATURATION_PE`. The first-hit time is
d_i / (c / n) plus the earliest of the PMT's n photons' scintillation delays
(exponential, SCINT_DECAY_NS / n) plus the PMT's transit-time spread (Gaussian,
TTS_NS), in ns after the interaction; a PMT without a hit reads 0 charge and 0 time, as in
the dayabay-learn files.

Event classes (one HDF5 dataset each)
-------------------------------------
* ``ibd_pair_data``: inverse beta decay, the signal. Prompt: the positron, visible energy
  E_nu - 0.78 MeV with E_nu from a reactor-like spectrum (peak ~3.6 MeV), at a vertex uniform in
  the target. Delayed: neutron capture on Gd (8.05 MeV gamma cascade, a few percent leaking
  out, more near the edge) at the prompt vertex displaced by the neutron's thermalisation and
  diffusion (Gaussian, 12 cm per coordinate), after an exponential time with mean
  28 us (selection window 1-200 us).
* ``accidentals_bg_data``: two uncorrelated singles that happen to pass the same selection.
  Prompt: natural radioactivity (falling exponential above 0.7 MeV, vertices favouring the
  outer radius, where the PMTs and steel are); delayed: a single in the 6-12 MeV window
  (half untagged neutron captures at 8 MeV, half a falling spectrum from 6 MeV) at an
  independent vertex; time uniform in the 1-200 us window.
* ``muon_data``: a cosmic muon crossing the scintillator (light from segments along the
  track, 2 MeV/cm, saturating PMTs), followed by a spallation-neutron capture near the track.
* ``flasher_data``: a PMT discharging ("flasher"): its own channel saturates and its light
  crosses the detector as a beam onto the opposite wall; the delayed trigger is another flash
  of the same PMT (half the pairs) or a radioactivity single.

Files
-----
Each class is one dataset of float32 rows: columns 0-767 are the four flattened 8 x 24 maps,
prompt charge (PE), prompt time (ns), delayed charge, delayed time, each ring-major (row =
ring, column = azimuthal column); the columns after 768 are metadata named by the dataset's
attributes (``"0"`` -> name and name -> index, as the dayabay-learn converter does):
:data:`METADATA_NAMES`. Vertices and energies are the generator's truth. File attributes hold
the seed, counts, detector constants and class names.

Reproducibility: each class is generated in chunks of :data:`CHUNK_EVENTS` events, each from
``numpy.random.default_rng((seed, class, chunk))``, so the file is the same for any number of
worker processes.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import h5py
import numpy as np

from modelzoo.errors import ConfigError
from modelzoo.parallel import GeneratorReport, generated_file, generator_arguments

RINGS, COLUMNS = 8, 24
PIXELS = RINGS * COLUMNS
CHANNELS = ("prompt_charge", "prompt_time", "delayed_charge", "delayed_time")
MAP_COLUMNS = len(CHANNELS) * PIXELS  # 768
METADATA_NAMES = (
    "dt_us", "energy_prompt_mev", "energy_delayed_mev",
    "x_prompt_mm", "y_prompt_mm", "z_prompt_mm",
    "x_delayed_mm", "y_delayed_mm", "z_delayed_mm",
)
ROW_COLUMNS = MAP_COLUMNS + len(METADATA_NAMES)
CLASS_DATASETS = (
    ("ibd", "ibd_pair_data"),
    ("accidental", "accidentals_bg_data"),
    ("muon", "muon_data"),
    ("flasher", "flasher_data"),
)
"""(class name, dataset) in label order: label k is class k in every file."""

PMT_RADIUS_M = 2.19
TARGET_RADIUS_M = 1.55
SCINT_RADIUS_M = 2.0
RING_Z_M = np.linspace(-1.75, 1.75, RINGS)
COLUMN_PHI = 2 * np.pi * (np.arange(COLUMNS) + 0.5) / COLUMNS
LIGHT_YIELD_PE_PER_MEV = 163.0
ATTENUATION_M = 15.0
SPE_WIDTH = 0.3
SATURATION_PE = 1500.0
LIGHT_SPEED_M_PER_NS = 0.3 / 1.5
SCINT_DECAY_NS = 4.0
TTS_NS = 1.5
CAPTURE_TIME_US = 28.0
WINDOW_US = (1.0, 200.0)
NEUTRON_DISPLACEMENT_M = 0.12
GD_CAPTURE_MEV = 8.05
MUON_DEDX_MEV_PER_M = 200.0
CHUNK_EVENTS = 500


def pmt_positions() -> tuple[np.ndarray, np.ndarray]:
    """(positions (192, 3) in m, inward unit normals (192, 3)), ring-major like the maps."""
    phi = np.tile(COLUMN_PHI, RINGS)
    z = np.repeat(RING_Z_M, COLUMNS)
    pos = np.stack([PMT_RADIUS_M * np.cos(phi), PMT_RADIUS_M * np.sin(phi), z], axis=1)
    normal = np.stack([-np.cos(phi), -np.sin(phi), np.zeros_like(phi)], axis=1)
    return pos, normal


_PMT_POS, _PMT_NORMAL = pmt_positions()


def _geometric_response(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(relative acceptance g (n, 192), distance (n, 192) in m) of point sources at
    ``vertices`` (n, 3)."""
    delta = _PMT_POS[None] - vertices[:, None]
    dist = np.linalg.norm(delta, axis=-1)
    cos = -(delta * _PMT_NORMAL[None]).sum(-1) / dist  # photon arrives against the normal
    g = np.clip(cos, 0.0, None) / dist**2 * np.exp(-dist / ATTENUATION_M)
    return g, dist


_CENTRE_ACCEPTANCE = float(_geometric_response(np.zeros((1, 3)))[0].sum())


def expected_pe(vertices: np.ndarray, energies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(expected photoelectrons (n, 192), distances (n, 192)) for point deposits of
    ``energies`` MeV at ``vertices`` (n, 3) m."""
    g, dist = _geometric_response(vertices)
    mu = energies[:, None] * LIGHT_YIELD_PE_PER_MEV * g / _CENTRE_ACCEPTANCE
    return mu, dist


def detect(mu: np.ndarray, arrival_ns: np.ndarray,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Charge (PE) and first-hit time (ns) maps (n, 192) from expected photoelectrons and the
    photons' earliest geometric arrival times: Poisson photostatistics, single-PE gain spread,
    saturation, scintillation delay of the first photon and transit-time spread."""
    n_pe = rng.poisson(mu)
    hit = n_pe > 0
    gain = 1.0 + SPE_WIDTH * np.sqrt(np.maximum(n_pe, 1)) * rng.standard_normal(mu.shape)
    charge = np.where(hit, np.clip(n_pe * 1.0 + gain - 1.0, 0.05, SATURATION_PE), 0.0)
    first = rng.exponential(SCINT_DECAY_NS, mu.shape) / np.maximum(n_pe, 1)
    times = arrival_ns + first + TTS_NS * rng.standard_normal(mu.shape)
    times = np.where(hit, np.maximum(times, 0.1), 0.0)
    return charge.astype(np.float32), times.astype(np.float32)


def _point_event(vertices: np.ndarray, energies: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    mu, dist = expected_pe(vertices, energies)
    return detect(mu, dist / LIGHT_SPEED_M_PER_NS, rng)


def _uniform_cylinder(n: int, radius: float, half_height: float, rng: np.random.Generator,
                      radial_power: float = 0.5) -> np.ndarray:
    """Vertices in a cylinder; ``radial_power`` 0.5 is uniform in volume, smaller values favour
    the outer radius."""
    r = radius * rng.random(n) ** radial_power
    phi = 2 * np.pi * rng.random(n)
    z = half_height * (2 * rng.random(n) - 1)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _reactor_prompt_energy(n: int, rng: np.random.Generator) -> np.ndarray:
    """Visible positron energy E_nu - 0.78 MeV; E_nu from flux x cross-section, approximated
    by a Gamma distribution peaking near 3.6 MeV above the 1.8 MeV threshold."""
    e_nu = 1.806 + rng.gamma(4.0, 0.6, n)
    return np.clip(e_nu - 0.78, 1.02, 12.0)


def _radioactivity_energy(n: int, rng: np.random.Generator) -> np.ndarray:
    return 0.7 + rng.exponential(0.8, n)


def _gd_capture_energy(n: int, rng: np.random.Generator, vertices: np.ndarray) -> np.ndarray:
    """Visible energy of the 8 MeV Gd cascade: gammas escape more often near the edge."""
    edge = np.hypot(vertices[:, 0], vertices[:, 1]) / TARGET_RADIUS_M
    leak = rng.exponential(0.02 + 0.06 * edge**4, n)
    return GD_CAPTURE_MEV * np.clip(1.0 - leak, 0.75, 1.0)


def _delayed_single_energy(n: int, rng: np.random.Generator) -> np.ndarray:
    falling = np.minimum(6.0 + rng.exponential(1.2, n), 12.0)
    return np.where(rng.random(n) < 0.5, GD_CAPTURE_MEV * (1 - rng.exponential(0.03, n)),
                    falling)


def _capture_time(n: int, rng: np.random.Generator) -> np.ndarray:
    """Neutron capture times, exponential, within the coincidence window."""
    lo, hi = WINDOW_US
    u = rng.random(n)
    cdf_lo, cdf_hi = np.exp(-lo / CAPTURE_TIME_US), np.exp(-hi / CAPTURE_TIME_US)
    return -CAPTURE_TIME_US * np.log(cdf_lo - u * (cdf_lo - cdf_hi))


@dataclass
class Pairs:
    """A block of generated pairs: maps (n, 4, 192) and truth columns (n,) each."""

    maps: np.ndarray
    dt_us: np.ndarray
    energy_prompt: np.ndarray
    energy_delayed: np.ndarray
    vertex_prompt: np.ndarray
    vertex_delayed: np.ndarray

    def rows(self) -> np.ndarray:
        meta = np.column_stack([self.dt_us, self.energy_prompt, self.energy_delayed,
                                1000 * self.vertex_prompt, 1000 * self.vertex_delayed])
        return np.hstack([self.maps.reshape(len(self.maps), -1), meta]).astype(np.float32)


def _pairs(prompt: tuple[np.ndarray, np.ndarray], delayed: tuple[np.ndarray, np.ndarray],
           **truth: np.ndarray) -> Pairs:
    maps = np.stack([prompt[0], prompt[1], delayed[0], delayed[1]], axis=1)
    return Pairs(maps=maps, **truth)


def ibd_pairs(n: int, rng: np.random.Generator) -> Pairs:
    """Inverse-beta-decay prompt/delayed pairs (the signal)."""
    vp = _uniform_cylinder(n, TARGET_RADIUS_M, TARGET_RADIUS_M, rng)
    vd = vp + NEUTRON_DISPLACEMENT_M * rng.standard_normal((n, 3))
    vd[:, 2] = np.clip(vd[:, 2], -TARGET_RADIUS_M, TARGET_RADIUS_M)
    ep = _reactor_prompt_energy(n, rng)
    ed = _gd_capture_energy(n, rng, vd)
    return _pairs(_point_event(vp, ep, rng), _point_event(vd, ed, rng), dt_us=_capture_time(n, rng),
                  energy_prompt=ep, energy_delayed=ed, vertex_prompt=vp, vertex_delayed=vd)


def _radioactivity_single(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    vertex = _uniform_cylinder(n, SCINT_RADIUS_M, SCINT_RADIUS_M, rng, radial_power=0.3)
    energy = _radioactivity_energy(n, rng)
    return vertex, energy


def accidental_pairs(n: int, rng: np.random.Generator) -> Pairs:
    """Two uncorrelated singles passing the IBD selection (the accidental background)."""
    vp, ep = _radioactivity_single(n, rng)
    vd = _uniform_cylinder(n, SCINT_RADIUS_M, SCINT_RADIUS_M, rng)
    ed = _delayed_single_energy(n, rng)
    dt = WINDOW_US[0] + (WINDOW_US[1] - WINDOW_US[0]) * rng.random(n)
    return _pairs(_point_event(vp, ep, rng), _point_event(vd, ed, rng), dt_us=dt,
                  energy_prompt=ep, energy_delayed=ed, vertex_prompt=vp, vertex_delayed=vd)


def _muon_tracks(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Entry points on the top of the scintillator and unit directions (cos^2 zenith)."""
    entry = _uniform_cylinder(n, SCINT_RADIUS_M, 0.0, rng)
    entry[:, 2] = SCINT_RADIUS_M
    cos_zenith = rng.random(n) ** (1 / 3)  # dN/dcos ~ cos^2
    sin_zenith = np.sqrt(1 - cos_zenith**2)
    azimuth = 2 * np.pi * rng.random(n)
    direction = np.stack([sin_zenith * np.cos(azimuth), sin_zenith * np.sin(azimuth),
                          -cos_zenith], axis=1)
    return entry, direction


def muon_pairs(n: int, rng: np.random.Generator, segments: int = 40) -> Pairs:
    """Cosmic muons crossing the scintillator, then a spallation-neutron capture."""
    entry, direction = _muon_tracks(n, rng)
    step = 2 * SCINT_RADIUS_M * np.sqrt(2) / segments
    points = entry[:, None] + direction[:, None] * (np.arange(segments) + 0.5)[None, :, None] * step
    inside = (np.hypot(points[..., 0], points[..., 1]) < SCINT_RADIUS_M) & (
        np.abs(points[..., 2]) < SCINT_RADIUS_M)
    mu = np.zeros((n, PIXELS))
    arrival = np.full((n, PIXELS), np.inf)
    for s in range(segments):
        energy = np.where(inside[:, s], MUON_DEDX_MEV_PER_M * step, 0.0)
        seg_mu, dist = expected_pe(points[:, s], energy)
        mu += seg_mu
        t = s * step / 0.3 + dist / LIGHT_SPEED_M_PER_NS  # muon at c, light at c/n
        arrival = np.where(seg_mu > 0.05, np.minimum(arrival, t), arrival)
    arrival = np.where(np.isfinite(arrival), arrival, 0.0)
    prompt = detect(mu, arrival, rng)
    track_length = inside.sum(1) * step
    # The spallation neutron is captured within ~1 m of the track.
    along = rng.random(n) * np.maximum(inside.sum(1), 1) * step
    vd = entry + direction * along[:, None] + 0.4 * rng.standard_normal((n, 3))
    vd = np.clip(vd, -SCINT_RADIUS_M * 0.99, SCINT_RADIUS_M * 0.99)
    ed = _gd_capture_energy(n, rng, vd)
    vp = entry + direction * (track_length / 2)[:, None]
    return _pairs(prompt, _point_event(vd, ed, rng), dt_us=_capture_time(n, rng),
                  energy_prompt=MUON_DEDX_MEV_PER_M * track_length, energy_delayed=ed,
                  vertex_prompt=vp, vertex_delayed=vd)


def _flash(pmt: np.ndarray, rng: np.random.Generator) -> tuple[tuple[np.ndarray, np.ndarray],
                                                                 np.ndarray, np.ndarray]:
    """A discharge of PMT ``pmt`` (n,): its own channel saturates; the light is a beam toward
    the far wall."""
    n = len(pmt)
    source = _PMT_POS[pmt] * 0.97
    beam = _PMT_NORMAL[pmt]  # the inward normal: across the detector
    energy = rng.uniform(2.0, 12.0, n)
    g, dist = _geometric_response(source)
    to_pmt = (_PMT_POS[None] - source[:, None]) / dist[..., None]
    cone = np.exp(-(1 - (to_pmt * beam[:, None]).sum(-1)) / 0.08)
    weight = cone * g
    mu = energy[:, None] * LIGHT_YIELD_PE_PER_MEV * weight / weight.sum(1, keepdims=True)
    mu[np.arange(n), pmt] = rng.uniform(0.3, 1.0, n) * SATURATION_PE * 2
    charge, times = detect(mu, dist / LIGHT_SPEED_M_PER_NS, rng)
    return (charge, times), source, energy


def flasher_pairs(n: int, rng: np.random.Generator) -> Pairs:
    """A flashing PMT, then another flash of it (half the pairs) or a radioactivity single."""
    pmt = rng.integers(0, PIXELS, n)
    prompt, vp, ep = _flash(pmt, rng)
    again, _, e_again = _flash(pmt, rng)
    vs, es = _radioactivity_single(n, rng)
    single = _point_event(vs, es, rng)
    repeat = rng.random(n) < 0.5
    delayed = tuple(np.where(repeat[:, None], a, s) for a, s in zip(again, single))
    vd = np.where(repeat[:, None], vp, vs)
    ed = np.where(repeat, e_again, es)
    dt = WINDOW_US[0] + (WINDOW_US[1] - WINDOW_US[0]) * rng.random(n)
    return _pairs(prompt, delayed, dt_us=dt, energy_prompt=ep, energy_delayed=ed,
                  vertex_prompt=vp, vertex_delayed=vd)


_SIMULATORS = (ibd_pairs, accidental_pairs, muon_pairs, flasher_pairs)


def _run_chunk(task: tuple[int, int, int, int, int]) -> tuple[int, int, np.ndarray]:
    seed, label, chunk, first, count = task
    rng = np.random.default_rng((seed, label, chunk))
    return label, first, _SIMULATORS[label](count, rng).rows()


def generate_dayabay(
    path: str | os.PathLike,
    *,
    n_ibd: int = 2000,
    n_accidental: int = 2000,
    n_muon: int = 0,
    n_flasher: int = 0,
    seed: int = 0,
    processes: int = 1,
    progress: bool = True,
) -> GeneratorReport:
    """Write IBD, accidental, muon and flasher pairs to ``path`` in the dayabay-learn layout.

    Args:
        path: HDF5 file (written to ``path.partial`` first, then renamed).
        n_ibd, n_accidental, n_muon, n_flasher: events per class; a class with 0 events gets no
            dataset (dayabay-learn files hold the first two).
        seed: every random draw derives from it.
        processes: worker processes; the file does not depend on it.
        progress: progress lines on stderr.

    Returns:
        What was written; its details give the events written per dataset.
    """
    arguments = generator_arguments(locals())
    counts = (n_ibd, n_accidental, n_muon, n_flasher)
    if min(counts) < 0 or sum(counts) == 0:
        raise ConfigError(f"need non-negative class counts and some events, got {counts}")
    if seed < 0:
        raise ConfigError(f"seed must be non-negative, got {seed}")
    tasks = [(seed, label, chunk, start, min(CHUNK_EVENTS, count - start))
             for label, count in enumerate(counts)
             for chunk, start in enumerate(range(0, count, CHUNK_EVENTS))]
    with generated_file(path, _run_chunk, tasks, processes=processes, label="dayabay",
                        noun="pairs", total=sum(counts), progress=progress,
                        arguments=arguments) as out:
        datasets = {}
        for label, (_, dataset) in enumerate(CLASS_DATASETS):
            if counts[label]:
                datasets[label] = _create_dataset(out.file, dataset, counts[label])
        for label, first, rows in out.results:
            datasets[label][first : first + len(rows)] = rows
            out.advance(len(rows))
        _write_attrs(out.file, seed, counts)
        out.details = {dataset: counts[k] for k, (_, dataset) in enumerate(CLASS_DATASETS)
                       if counts[k]}
    return out.report


def _create_dataset(handle: h5py.File, name: str, count: int) -> h5py.Dataset:
    dset = handle.create_dataset(name, (count, ROW_COLUMNS), "f4",
                                 chunks=(min(count, 256), ROW_COLUMNS), compression="gzip",
                                 compression_opts=4, shuffle=True)
    dset.attrs["description"] = (
        f"{name}: prompt/delayed trigger pairs simulated by modelzoo.dayabay.generator; each "
        "row holds the flattened charge and time of the 192 PMTs of both triggers, followed "
        "by metadata")
    dset.attrs["structure"] = (
        f"N rows by {ROW_COLUMNS} columns: 0-191 prompt charge (PE), 192-383 prompt time (ns), "
        "384-575 delayed charge (PE), 576-767 delayed time (ns), each an 8 x 24 ring-major map; "
        f"768-{ROW_COLUMNS - 1} metadata (attributes '0'.. name them)")
    for index, meta in enumerate(METADATA_NAMES):
        dset.attrs[str(index)] = meta
        dset.attrs[meta] = index
    return dset


def _write_attrs(handle: h5py.File, seed: int, counts: tuple[int, ...]) -> None:
    handle.attrs["generator"] = "modelzoo.dayabay.generator"
    handle.attrs["seed"] = seed
    handle.attrs["class_names"] = [name for name, _ in CLASS_DATASETS]
    handle.attrs["class_events"] = np.asarray(counts, np.int64)
    handle.attrs["channels"] = list(CHANNELS)
    handle.attrs["map_shape"] = np.array([len(CHANNELS), RINGS, COLUMNS])
    handle.attrs["pmt_radius_m"] = PMT_RADIUS_M
    handle.attrs["ring_z_m"] = RING_Z_M
    handle.attrs["light_yield_pe_per_mev"] = LIGHT_YIELD_PE_PER_MEV
    handle.attrs["references"] = "arXiv:1601.07621 (Racah et al. 2016); NERSC/dayabay-learn"


# ----------------------------------------------------------------------------------------------
# Command line: modelzoo data dayabay --output pairs.h5 --ibd 5000 --accidentals 5000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``modelzoo data dayabay``."""
    parser.add_argument("--output", required=True, help="HDF5 file to write")
    parser.add_argument("--ibd", type=int, default=2000, help="IBD pairs (ibd_pair_data)")
    parser.add_argument("--accidentals", type=int, default=2000,
                        help="accidental pairs (accidentals_bg_data)")
    parser.add_argument("--muons", type=int, default=0, help="muon pairs (muon_data)")
    parser.add_argument("--flashers", type=int, default=0, help="flasher pairs (flasher_data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)


def run(args: argparse.Namespace) -> None:
    """``modelzoo data dayabay``."""
    generate_dayabay(args.output, n_ibd=args.ibd, n_accidental=args.accidentals,
                     n_muon=args.muons, n_flasher=args.flashers, seed=args.seed,
                     processes=args.processes)
