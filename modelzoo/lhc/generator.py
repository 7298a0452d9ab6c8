"""Synthetic LHC events from Pythia 8, written as calorimeter images in the published HDF5 layouts.

This is the physics-informed stand-in for the Delphes samples of Bhimji et al., "Deep Neural
Networks for Physics Analysis on low-level whole-detector data at the LHC" (ACAT 2017,
arXiv:1711.03573) and Kurth et al., "Deep Learning at 15PF" (SC17, arXiv:1708.05256): RPV SUSY
gluino pairs against QCD multijets, seen by a simple calorimeter and tracker, with the cut-based
"physics selection" those papers compare the CNN against.

Physics choices
---------------
* **Signal**: gluino pair production (``SUSY:gg2gluinogluino``, ``SUSY:qqbar2gluinogluino``) at
  leading order from the hand-written spectrum ``rpv_gluino.slha`` next to this module: the
  paper's benchmark ``GG_RPV10_1400_850`` (m(gluino) = 1400 GeV, m(neutralino_1) = 850 GeV),
  gluino -> neutralino_1 q qbar (q = d, u, s, c, b in equal shares, through heavy off-shell
  squarks) and neutralino_1 -> u d s via the baryon-number-violating coupling lambda''_112. Ten
  hard partons per event, no missing energy. The LO cross section (~14 fb at 13 TeV) is what
  Pythia reports; it matches the 201 weighted signal events in 14.8 fb^-1 of the paper's test set.
* **Background**: QCD 2 -> 2 (``HardQCD:all``) in four pT-hat slices, 200-400, 400-700,
  700-1000 and > 1000 GeV (an analogue of ATLAS's JZ3-JZ12 slices; below 200 GeV hardly an
  event passes the selection's 440 GeV leading-jet requirement). ``n_background`` is split
  over the slices by ``slice_fractions`` (evenly by default, so the hard tail the selection
  cares about is well populated), and each event carries the physical weight
  ``sigma_slice * luminosity / N_slice generated``.
* **Preselection** (``preselection=True``): only events passing the analysis's baseline
  (:func:`baseline_mask`: >= 3 fat jets with pT > 200 GeV and |eta| < 2, leading pT > 440 GeV,
  the plateau of the large-R jet trigger) are kept, signal and background alike. The paper's
  test set carries such a preselection: its QCD weighs 3.86e6 events in 14.8 fb^-1 (0.26 nb),
  while all QCD above pT-hat 200 GeV is ~56 nb here and the baseline keeps ~0.3 nb of it. With
  it the selection's weighted FPR lands near the paper's 3.39e-4 instead of ~1e-6. It costs
  generation time: the 200-400 GeV slice keeps ~1 event in 500 (yet carries a third of the
  preselected cross section), the others 9-23%; ``slice_fractions`` sets how many events each
  slice gets (:data:`PRESELECTED_SLICE_FRACTIONS` by default).
* **Weights**: ``weight`` is in events for the requested luminosity (``sigma`` from Pythia's
  ``Info::sigmaGen`` in mb, times 1e12 fb/mb, times ``luminosity_ifb``, over the number of
  events generated for that process, kept or not); sigma is the mean of the per-chunk estimates
  weighted by their accepted events. The weighted background is therefore the QCD yield with
  pT-hat > 200 GeV (after the preselection, if any), the weighted signal the gluino-pair yield.
  ``normweight``
  (``normalized_weight`` in the ACAT layout) rescales each class so that signal and
  background each sum to N/2: a class-balanced weight with mean 1 for training.
* **Calorimeter** (:class:`CalorimeterConfig`): visible final-state particles (Pythia's
  ``isVisible``: no neutrinos, no neutralinos) with |eta| < 2.5 are binned in (phi, eta) into
  an image of ``image_size`` x ``image_size`` pixels, phi along the rows (H) over [-pi, pi] and
  eta along the columns (W) over [-2.5, 2.5], the order of the ACAT converter's
  ``histogram2d(phi, eta)``. Channel 0 is the calorimeter energy (ECAL + HCAL), channel 1 the
  EM energy (photons and electrons, which include the photons of pi0 decays), channel 2 the
  number of charged tracks with pT > 1 GeV (an unweighted count). Muons are minimum-ionising,
  so they appear as tracks but deposit no calorimeter energy. Energies are per pixel (a cell of
  about 0.08 x 0.1 in eta x phi at 64 x 64) smeared with a stochastic resolution,
  sigma/E = 10%/sqrt(E) for the EM part and 50%/sqrt(E) for the hadronic part, and clipped at
  zero; channel 0 is the smeared EM energy plus the smeared hadronic energy, so EM <= total
  holds in every pixel. There is no noise, pile-up, magnetic field or shower spread. The
  smearing draws from ``numpy.random.default_rng`` seeded by (seed, process, chunk, event).
* **Fat jets** are anti-kT, R = 1.0, clustered by Pythia's ``SlowJet`` (through the fjcore it
  bundles) from all visible final-state particles with |eta| < 4.9 (the ATLAS calorimeter
  acceptance), without smearing: particle-level jets, where the paper had Delphes calorimeter
  jets.
* **Physics selection** (:class:`SelectionCuts`, the published values of the ATLAS RPV
  multijet analysis used by the paper): fat jets with pT > 200 GeV and |eta| < 2.0;
  baseline >= 3 such jets and leading pT > 440 GeV; signal region >= 4 jets,
  |eta_1 - eta_2| < 1.4 for the two leading jets, and summed mass of the (up to) four leading
  jets > 800 GeV with exactly 4 jets or > 600 GeV with >= 5. Those thresholds were tuned on
  Delphes jets; they are parameters here. The file keeps the per-event jet summary (group
  ``jets``) so that :func:`signal_region_mask` can re-run the selection with other cuts.

Files
-----
``layout="benchmark"`` (NERSC hep_cnn_benchmark): ``data`` (N, 3, H, W) float32 NCHW,
``label`` (N,) int32 (1 = signal), ``weight`` and ``normweight`` (N,) float32, ``psr`` (N,) int8.
``layout="acat"`` (Bhimji et al.): group ``all_events`` with ``hist``, ``histEM``, ``histtrack``
(N, H, W) float32, ``y`` (N,) int32, ``weight``, ``normalized_weight`` (N,) float32 and
``passSR`` (N,) int8. Both layouts add a group ``jets`` (``n_fatjets`` int32, ``leading_pt``,
``summed_mass``, ``delta_eta_12`` float32; NaN where fewer than two jets), ``truth/process_id``
(int8, index into the ``process_names`` attribute) and file attributes with the generator, seed,
energy, luminosity, per-process cross sections, image ranges, channel names, the cuts, the
calorimeter settings and the SLHA spectrum. Events are shuffled (with a permutation drawn from
the seed) so that signal and background interleave.

Reproducibility
---------------
Each process is generated in chunks of at most :data:`CHUNK_EVENTS` events, each by a fresh
Pythia with ``Random:seed`` derived from (seed, process, chunk). Chunks do not depend on the
number of worker processes, so the file is identical for any ``processes``. Workers are forked
where the platform allows it (a spawned worker would re-import TensorFlow through ``modelzoo``,
several seconds each).

Cost: about 10 ms of CPU per event (Pythia's ``next`` 7-10 ms; reading the event record from
Python, clustering and imaging ~3 ms) plus ~0.5 s to initialise each chunk's Pythia.

Validation (seed 2024, 2000 signal + 6000 QCD events, 36 fb^-1, no preselection): signal has on
average 4.5 selected fat jets and 850 GeV summed mass, QCD 1.9 jets and 260 GeV (unweighted).
The weighted signal is 481 events (the paper: 201 in 14.8 fb^-1, i.e. 489 in 36), 261 of them
in the signal region. Without the preselection the selection's FPR is ~1e-6: its denominator
is all QCD above pT-hat 200 GeV (~56 nb). With it (seed 3100, 3000 signal + 3000 QCD, 326 s on
2 cores): preselected QCD 0.33 nb (the paper's 0.26 nb), signal 13.2 fb (LO 13.5 fb; 98% pass),
selection FPR 3.5e-4 (paper 3.39e-4) and TPR 0.57 (paper 0.42; particle-level jets here, Delphes
jets there, which pass the mass and jet-count cuts less often).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from modelzoo.errors import ConfigError
from modelzoo.parallel import GeneratorReport, generated_file, generator_arguments

SLHA_FILE = Path(__file__).with_name("rpv_gluino.slha")
"""The RPV gluino spectrum and decay tables (m_gluino = 1400 GeV, m_neutralino = 850 GeV)."""

CHUNK_EVENTS = 250
"""Events per Pythia instance. Fixed (not derived from ``processes``) so that output does not
depend on the number of workers; 250 keeps Pythia's ~0.5 s initialisation below ~20%."""

CHANNELS = ("calorimeter_energy", "em_energy", "track_count")
LAYOUTS = ("benchmark", "acat")
FATJET_RADIUS = 1.0
CONSTITUENT_ETA_MAX = 4.9
"""|eta| acceptance of the particles clustered into fat jets (the ATLAS calorimeter's)."""

QCD_PTHAT_SLICES: tuple[tuple[float, float | None], ...] = (
    (200.0, 400.0),
    (400.0, 700.0),
    (700.0, 1000.0),
    (1000.0, None),
)
"""pT-hat ranges (GeV) of the QCD background slices; ``None`` is open-ended."""

PRESELECTED_SLICE_FRACTIONS = (0.01, 0.5, 0.3, 0.19)
"""Default shares of the background events per slice under the preselection. The lowest slice
keeps ~1 event in 500 but carries about a third of the preselected cross section; the
400-700 GeV slice carries most of the rest and most background in the signal region."""

_MB_TO_FB = 1e12
_MAX_FAILED_NEXT = 100
_MAX_GENERATED_PER_KEPT = 5000
"""A chunk gives up past this many generated events per event it must keep (the 200-400 GeV
slice keeps about 1 in 500 under the preselection)."""


@dataclass(frozen=True)
class SelectionCuts:
    """The ACAT 2017 RPV multijet selection (published values are the defaults, GeV)."""

    fatjet_pt_min: float = 200.0
    fatjet_eta_max: float = 2.0
    baseline_n_fatjets_min: int = 3
    baseline_leading_pt_min: float = 440.0
    sr_n_fatjets_min: int = 4
    sr_delta_eta_max: float = 1.4
    sr4j_mass_min: float = 800.0
    sr5j_mass_min: float = 600.0


@dataclass(frozen=True)
class CalorimeterConfig:
    """The toy calorimeter and tracker that turn particles into the three image channels."""

    eta_max: float = 2.5
    em_stochastic: float = 0.10
    """EM resolution sigma/E = em_stochastic / sqrt(E / GeV)."""
    had_stochastic: float = 0.50
    """Hadronic resolution sigma/E = had_stochastic / sqrt(E / GeV)."""
    track_pt_min: float = 1.0
    smear: bool = True


# ----------------------------------------------------------------------------------------------
# Physics selection


def fatjet_summary(
    jet_pt: Sequence[float] | np.ndarray,
    jet_eta: Sequence[float] | np.ndarray,
    jet_mass: Sequence[float] | np.ndarray,
    cuts: SelectionCuts | None = None,
) -> tuple[int, float, float, float]:
    """Selected fat jets of one event as (count, leading pT, summed mass of the four leading,
    |delta eta| of the two leading; NaN with fewer than two)."""
    cuts = cuts or SelectionCuts()
    pt = np.asarray(jet_pt, dtype=np.float64).reshape(-1)
    eta = np.asarray(jet_eta, dtype=np.float64).reshape(-1)
    mass = np.asarray(jet_mass, dtype=np.float64).reshape(-1)
    if not pt.shape == eta.shape == mass.shape:
        raise ValueError(f"jet arrays differ in length: {pt.size}, {eta.size}, {mass.size}")
    keep = (pt > cuts.fatjet_pt_min) & (np.abs(eta) < cuts.fatjet_eta_max)
    # Stable sort so that equal-pT jets keep their input order (deterministic output).
    order = np.argsort(-pt[keep], kind="stable")
    pt, eta, mass = pt[keep][order], eta[keep][order], mass[keep][order]
    n = int(pt.size)
    leading = float(pt[0]) if n else 0.0
    summed = float(mass[:4].sum())
    deta = float(abs(eta[0] - eta[1])) if n >= 2 else math.nan
    return n, leading, summed, deta


def baseline_mask(
    n_fatjets: np.ndarray | int, leading_pt: np.ndarray | float, cuts: SelectionCuts | None = None
) -> np.ndarray:
    """The analysis's baseline (>= 3 selected fat jets, leading pT above the large-R jet
    trigger's plateau): the generator's preselection and the first step of the signal region."""
    cuts = cuts or SelectionCuts()
    n = np.asarray(n_fatjets)
    leading = np.asarray(leading_pt, dtype=np.float64)
    return (n >= cuts.baseline_n_fatjets_min) & (leading > cuts.baseline_leading_pt_min)


def signal_region_mask(
    n_fatjets: np.ndarray | int,
    leading_pt: np.ndarray | float,
    summed_mass: np.ndarray | float,
    delta_eta_12: np.ndarray | float,
    cuts: SelectionCuts | None = None,
) -> np.ndarray:
    """Vectorised signal-region decision from the per-event jet summary (the file's ``jets``
    group), so the selection can be re-run with other event-level cuts."""
    cuts = cuts or SelectionCuts()
    n = np.asarray(n_fatjets)
    mass = np.asarray(summed_mass, dtype=np.float64)
    deta = np.asarray(delta_eta_12, dtype=np.float64)
    baseline = baseline_mask(n, leading_pt, cuts)
    # NaN delta-eta (fewer than two jets) compares False, i.e. fails.
    central = deta < cuts.sr_delta_eta_max
    mass_cut = np.where(n >= 5, mass > cuts.sr5j_mass_min, mass > cuts.sr4j_mass_min)
    return baseline & (n >= cuts.sr_n_fatjets_min) & central & mass_cut


def passes_signal_region(
    jet_pt: Sequence[float] | np.ndarray,
    jet_eta: Sequence[float] | np.ndarray,
    jet_mass: Sequence[float] | np.ndarray,
    cuts: SelectionCuts | None = None,
) -> bool:
    """Whether one event with these fat jets (any order, before object cuts) passes the
    signal region of Bhimji et al. 2017."""
    summary = fatjet_summary(jet_pt, jet_eta, jet_mass, cuts)
    return bool(signal_region_mask(*summary, cuts=cuts))


# ----------------------------------------------------------------------------------------------
# Event generation (runs in the worker processes)


@dataclass(frozen=True)
class _Process:
    name: str
    label: int
    settings: tuple[str, ...]
    pthat_min: float | None = None
    pthat_max: float | None = None


@dataclass(frozen=True)
class _Task:
    process_id: int
    chunk: int
    n_events: int
    first_row: int
    """Index of the chunk's first event in generation order (before shuffling)."""
    pythia_seed: int
    smear_key: tuple[int, ...]
    settings: tuple[str, ...]
    image_size: int
    calorimeter: CalorimeterConfig
    cuts: SelectionCuts
    preselect: bool


@dataclass
class _ChunkResult:
    task: _Task
    images: np.ndarray
    n_fatjets: np.ndarray
    leading_pt: np.ndarray
    summed_mass: np.ndarray
    delta_eta_12: np.ndarray
    sigma_mb: float
    sigma_err_mb: float
    n_tried: int
    n_accepted: int
    n_generated: int
    """Events Pythia produced for this chunk, kept or not (= n_events without preselection)."""
    seconds: float


def _import_pythia():
    try:
        import pythia8mc
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "modelzoo.lhc.generator needs Pythia 8's Python bindings: pip install pythia8mc "
            "(or pip install 'modelzoo[science]')"
        ) from err
    return pythia8mc


def _slha_path() -> str:
    """The SLHA file as a path Pythia can read: its settings parser stops at whitespace, so a
    path with spaces is copied to a temporary directory first."""
    path = str(SLHA_FILE)
    if any(ch.isspace() for ch in path):
        target = Path(tempfile.mkdtemp(prefix="modelzoo_slha_")) / SLHA_FILE.name
        shutil.copyfile(SLHA_FILE, target)
        path = str(target)
    return path


def _processes(sqrt_s_gev: float) -> list[_Process]:
    common = (
        f"Beams:eCM = {sqrt_s_gev!r}",
        # Pythia prints its banner, init tables and event counters to stdout otherwise.
        "Print:quiet = on",
        "Next:numberCount = 0",
        "Random:setSeed = on",
    )
    signal = _Process(
        "rpv_gluino_1400_850",
        1,
        common
        + (
            "SUSY:gg2gluinogluino = on",
            "SUSY:qqbar2gluinogluino = on",
            f"SLHA:file = {_slha_path()}",
            "SLHA:useDecayTable = on",
            "SLHA:verbose = 0",  # the SLHA reader prints the whole spectrum otherwise
        ),
    )
    background = []
    for lo, hi in QCD_PTHAT_SLICES:
        name = f"qcd_pthat_{lo:.0f}_{'inf' if hi is None else f'{hi:.0f}'}"
        settings = common + (
            "HardQCD:all = on",
            f"PhaseSpace:pTHatMin = {lo!r}",
            f"PhaseSpace:pTHatMax = {-1.0 if hi is None else hi!r}",
        )
        background.append(_Process(name, 0, settings, lo, hi))
    return [signal, *background]


def _final_particles(event) -> np.ndarray:
    """(n, 6) array of visible final-state particles: pdg id, px, py, pz, E, charge."""
    rows = [
        (p.id(), p.px(), p.py(), p.pz(), p.e(), p.charge())
        for p in event.particles()
        if p.isFinal() and p.isVisible()
    ]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def _image(
    particles: np.ndarray, size: int, calo: CalorimeterConfig, rng: np.random.Generator
) -> np.ndarray:
    """The three channels (3, size, size) of one event; rows are phi, columns eta."""
    pid = np.abs(particles[:, 0]).astype(np.int64)
    px, py, pz, e, charge = particles[:, 1:].T
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        # pT = 0 (along the beam) gives +-inf and falls outside the acceptance.
        eta = np.arcsinh(pz / pt)
    phi = np.arctan2(py, px)
    inside = np.abs(eta) < calo.eta_max
    row = np.clip(((phi + np.pi) / (2 * np.pi) * size).astype(np.int64), 0, size - 1)
    col = np.clip(((eta + calo.eta_max) / (2 * calo.eta_max) * size), 0, size - 1)
    pixel = row * size + np.where(inside, col, 0).astype(np.int64)

    is_em = (pid == 11) | (pid == 22)
    is_had = ~is_em & (pid != 13)  # muons are minimum-ionising: tracks, no calorimeter energy
    npix = size * size
    em = np.bincount(pixel[inside & is_em], weights=e[inside & is_em], minlength=npix)
    had = np.bincount(pixel[inside & is_had], weights=e[inside & is_had], minlength=npix)
    if calo.smear:
        # Smear whole cells: resolution is a property of the energy a cell measures.
        for deposit, stochastic in ((em, calo.em_stochastic), (had, calo.had_stochastic)):
            hit = np.flatnonzero(deposit > 0)
            sigma = stochastic * np.sqrt(deposit[hit])
            deposit[hit] = np.maximum(deposit[hit] + sigma * rng.standard_normal(hit.size), 0.0)
    tracks = inside & (charge != 0) & (pt > calo.track_pt_min)
    n_tracks = np.bincount(pixel[tracks], minlength=npix)
    out = np.stack([em + had, em, n_tracks]).astype(np.float32)
    return out.reshape(3, size, size)


@contextlib.contextmanager
def _quiet_stdout():
    """Send file descriptor 1 to /dev/null: C++ code writes there, past ``sys.stdout``."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _run_chunk(task: _Task) -> _ChunkResult:
    """Generate one chunk of events with a fresh, seeded Pythia."""
    start = time.perf_counter()
    pythia8mc = _import_pythia()
    pythia = pythia8mc.Pythia("", False)  # False: no banner
    for line in (*task.settings, f"Random:seed = {task.pythia_seed}"):
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected the setting {line!r}")
    if not pythia.init():
        raise RuntimeError(
            f"Pythia failed to initialise process {task.process_id} with {task.settings}"
        )
    # SlowJet through its bundled fjcore: ~1.5 ms per event where SlowJet's own algorithm takes
    # ~30 ms for the same jets. select=2: visible final-state particles; massSet=2: keep the
    # particles' masses.
    jets = pythia8mc.SlowJet(
        -1, FATJET_RADIUS, task.cuts.fatjet_pt_min, CONSTITUENT_ETA_MAX, 2, 2, None, True
    )
    n, size = task.n_events, task.image_size
    images = np.zeros((n, 3, size, size), dtype=np.float32)
    summary = np.zeros((n, 4), dtype=np.float64)
    failures = 0
    generated = 0
    i = 0
    while i < n:
        if not pythia.next():
            failures += 1
            if failures > _MAX_FAILED_NEXT:
                raise RuntimeError(f"Pythia failed {failures} times in chunk {task}")
            continue
        generated += 1
        if generated > _MAX_GENERATED_PER_KEPT * n:
            raise RuntimeError(
                f"the preselection kept {i} of {generated} events of process {task.process_id}; "
                "loosen it or generate this process without it"
            )
        event = pythia.event
        if generated == 1:
            with _quiet_stdout():  # fjcore prints its banner on first use in a process
                jets.analyze(event)
        else:
            jets.analyze(event)
        n_jets = jets.sizeJet()
        pt = [jets.pT(j) for j in range(n_jets)]
        eta = [jets.p(j).eta() for j in range(n_jets)]
        mass = [jets.m(j) for j in range(n_jets)]
        jet_summary = fatjet_summary(pt, eta, mass, task.cuts)
        # Jets first: a rejected event costs no image.
        if task.preselect and not baseline_mask(jet_summary[0], jet_summary[1], task.cuts):
            continue
        summary[i] = jet_summary
        rng = np.random.default_rng([*task.smear_key, i])
        images[i] = _image(_final_particles(event), size, task.calorimeter, rng)
        i += 1
    info = pythia.infoPython()
    return _ChunkResult(
        task=task,
        images=images,
        n_fatjets=summary[:, 0].astype(np.int32),
        leading_pt=summary[:, 1].astype(np.float32),
        summed_mass=summary[:, 2].astype(np.float32),
        delta_eta_12=summary[:, 3].astype(np.float32),
        sigma_mb=float(info.sigmaGen()),
        sigma_err_mb=float(info.sigmaErr()),
        n_tried=int(info.nTried()),
        n_accepted=int(info.nAccepted()),
        n_generated=generated,
        seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------------------------
# Orchestration and output


def _derive_seed(seed: int, *keys: int) -> int:
    # Pythia accepts seeds in [1, 900000000].
    state = np.random.SeedSequence([seed, *keys]).generate_state(1, dtype=np.uint32)[0]
    return int(state) % 900_000_000 + 1


def _split(total: int, fractions: Sequence[float]) -> list[int]:
    """``total`` in integer parts proportional to ``fractions`` (largest remainders first)."""
    share = np.asarray(fractions, dtype=np.float64) * total / np.sum(fractions)
    counts = np.floor(share).astype(int)
    for k in np.argsort(counts - share, kind="stable")[: total - counts.sum()]:
        counts[k] += 1
    return [int(c) for c in counts]


def _tasks(
    processes: list[_Process],
    counts: list[int],
    seed: int,
    image_size: int,
    calorimeter: CalorimeterConfig,
    cuts: SelectionCuts,
    preselect: bool,
) -> list[_Task]:
    tasks: list[_Task] = []
    row = 0
    for pid, (proc, count) in enumerate(zip(processes, counts)):
        for chunk, start in enumerate(range(0, count, CHUNK_EVENTS)):
            n = min(CHUNK_EVENTS, count - start)
            tasks.append(
                _Task(
                    process_id=pid,
                    chunk=chunk,
                    n_events=n,
                    first_row=row,
                    pythia_seed=_derive_seed(seed, 1, pid, chunk),
                    smear_key=(seed, 2, pid, chunk),
                    settings=proc.settings,
                    image_size=image_size,
                    calorimeter=calorimeter,
                    cuts=cuts,
                    preselect=preselect,
                )
            )
            row += n
    return tasks


def _create_image_datasets(handle: h5py.File, layout: str, n: int, size: int) -> list:
    opts = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if layout == "benchmark":
        # One event per HDF5 chunk: rows are written scattered (shuffled) and read in blocks.
        return [
            handle.create_dataset(
                "data", (n, 3, size, size), "f4", chunks=(1, 3, size, size), **opts
            )
        ]
    group = handle.create_group("all_events")
    return [
        group.create_dataset(name, (n, size, size), "f4", chunks=(1, size, size), **opts)
        for name in ("hist", "histEM", "histtrack")
    ]


def _write_images(datasets: list, layout: str, rows: np.ndarray, images: np.ndarray) -> None:
    order = np.argsort(rows)
    rows, images = rows[order], images[order]
    if layout == "benchmark":
        datasets[0][rows] = images
    else:
        for channel, dataset in enumerate(datasets):
            dataset[rows] = images[:, channel]


_LAYOUT_NAMES = {
    "benchmark": {"label": "label", "weight": "weight", "normweight": "normweight", "psr": "psr"},
    "acat": {
        "label": "all_events/y",
        "weight": "all_events/weight",
        "normweight": "all_events/normalized_weight",
        "psr": "all_events/passSR",
    },
}
"""Where each per-event column goes in each layout."""


def _combine_cross_sections(
    chunks: dict[tuple[int, int], tuple[float, float, int, int]], n_procs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-process cross section and its error in fb: the per-chunk estimates, weighted by
    accepted events and combined in chunk order so that the sum is deterministic."""
    sigma = np.zeros(n_procs)
    error = np.zeros(n_procs)
    for pid in range(n_procs):
        keys = sorted(k for k in chunks if k[0] == pid)
        if not keys:
            continue
        est = np.array([chunks[k] for k in keys], dtype=np.float64)
        accepted = est[:, 2]
        sigma[pid] = _MB_TO_FB * np.sum(est[:, 0] * accepted) / accepted.sum()
        error[pid] = _MB_TO_FB * np.sqrt(np.sum((est[:, 1] * accepted) ** 2)) / accepted.sum()
    return sigma, error


def _class_balanced(weight: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Weights rescaled so that each class sums to N/2 (mean 1 over the file)."""
    out = np.zeros(weight.shape, np.float32)
    for cls in (0, 1):
        mask = label == cls
        total = weight[mask].sum(dtype=np.float64)
        if total > 0:
            out[mask] = weight[mask] / total * (weight.size / 2)
    return out


def _weighted_rate(passed: np.ndarray, weight: np.ndarray, mask: np.ndarray) -> float:
    total = float(weight[mask].sum(dtype=np.float64))
    if total <= 0:
        return math.nan
    return float(weight[mask & passed].sum(dtype=np.float64)) / total


def _pythia_version() -> str:
    try:
        from importlib.metadata import version

        return version("pythia8mc")
    except Exception:  # noqa: BLE001 - metadata is informational only
        return "unknown"


def generate_lhc_events(
    path: str | os.PathLike,
    *,
    n_signal: int,
    n_background: int,
    image_size: int = 64,
    layout: str = "benchmark",
    seed: int = 0,
    processes: int = 1,
    progress: bool = True,
    sqrt_s_gev: float = 13000.0,
    luminosity_ifb: float = 36.0,
    cuts: SelectionCuts | None = None,
    calorimeter: CalorimeterConfig | None = None,
    preselection: bool = False,
    slice_fractions: Sequence[float] | None = None,
) -> GeneratorReport:
    """Generate RPV gluino (signal) and QCD multijet (background) events with Pythia 8 and write
    their calorimeter images, labels, weights and physics-selection flags to ``path``.

    Args:
        path: HDF5 file to write (replaced if it exists; written to ``path.partial`` first).
        n_signal: RPV gluino-pair events.
        n_background: QCD events, split over :data:`QCD_PTHAT_SLICES` by ``slice_fractions``.
        image_size: pixels per side of the (phi, eta) images.
        layout: ``"benchmark"`` (NERSC hep_cnn_benchmark) or ``"acat"`` (Bhimji et al. 2017).
        seed: everything (Pythia seeds, smearing, shuffle) derives from it.
        processes: worker processes; the output does not depend on it.
        progress: print a progress line to stderr every few seconds and at the end.
        sqrt_s_gev: proton-proton centre-of-mass energy.
        luminosity_ifb: integrated luminosity the weights are normalised to, in fb^-1.
        cuts: the physics selection (default: the published values).
        calorimeter: the toy detector (default: :class:`CalorimeterConfig`).
        preselection: keep only events that pass the baseline selection (:func:`baseline_mask`),
            signal and background alike, as the paper's test set does; the weights then carry
            the preselection's efficiency (``sigma * luminosity / events generated``).
        slice_fractions: shares of ``n_background`` per pT-hat slice; default even, or
            :data:`PRESELECTED_SLICE_FRACTIONS` with ``preselection``.

    Returns:
        What was written; its details hold the class counts and the physics selection's
        weighted TPR/FPR over the generated events (NaN for an empty class).
    """
    arguments = generator_arguments(locals())
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if n_signal < 0 or n_background < 0 or n_signal + n_background == 0:
        raise ConfigError(
            f"need n_signal, n_background >= 0 and some events, got {n_signal}, {n_background}"
        )
    if image_size < 1:
        raise ConfigError(f"image_size must be positive, got {image_size}")
    if seed < 0:
        raise ConfigError(f"seed must be non-negative, got {seed}")
    if slice_fractions is None:
        slice_fractions = (
            PRESELECTED_SLICE_FRACTIONS if preselection else (1.0,) * len(QCD_PTHAT_SLICES)
        )
    if len(slice_fractions) != len(QCD_PTHAT_SLICES) or min(slice_fractions) < 0 or not sum(
        slice_fractions
    ) > 0:
        raise ConfigError(
            f"slice_fractions needs {len(QCD_PTHAT_SLICES)} non-negative shares (one per pT-hat "
            f"slice {QCD_PTHAT_SLICES}), got {tuple(slice_fractions)}"
        )
    cuts = cuts or SelectionCuts()
    calorimeter = calorimeter or CalorimeterConfig()

    procs = _processes(sqrt_s_gev)
    counts = [n_signal, *_split(n_background, slice_fractions)]
    tasks = _tasks(procs, counts, seed, image_size, calorimeter, cuts, preselection)
    generated = [0] * len(procs)
    n_total = n_signal + n_background
    # Event j (generation order) is written to row position[j]: signal and background mix.
    position = np.random.default_rng([seed, 3]).permutation(n_total)

    label = np.zeros(n_total, np.int32)
    process_id = np.zeros(n_total, np.int8)
    n_fatjets = np.zeros(n_total, np.int32)
    leading_pt = np.zeros(n_total, np.float32)
    summed_mass = np.zeros(n_total, np.float32)
    delta_eta_12 = np.zeros(n_total, np.float32)
    chunk_sigma: dict[tuple[int, int], tuple[float, float, int, int]] = {}

    with generated_file(path, _run_chunk, tasks, processes=processes, label="lhc",
                        noun="events", total=n_total, progress=progress,
                        arguments=arguments) as out:
        handle = out.file
        image_sets = _create_image_datasets(handle, layout, n_total, image_size)
        for result in out.results:
            task = result.task
            rows = position[task.first_row : task.first_row + task.n_events]
            _write_images(image_sets, layout, rows, result.images)
            label[rows] = procs[task.process_id].label
            process_id[rows] = task.process_id
            n_fatjets[rows] = result.n_fatjets
            leading_pt[rows] = result.leading_pt
            summed_mass[rows] = result.summed_mass
            delta_eta_12[rows] = result.delta_eta_12
            generated[task.process_id] += result.n_generated
            chunk_sigma[(task.process_id, task.chunk)] = (
                result.sigma_mb,
                result.sigma_err_mb,
                result.n_accepted,
                result.n_tried,
            )
            out.advance(task.n_events)

        sigma_fb, sigma_err_fb = _combine_cross_sections(chunk_sigma, len(procs))
        # Each kept event stands for sigma * L / (events generated) physical events, so the
        # weights sum to the preselected yield.
        per_event = np.array(
            [sigma_fb[k] * luminosity_ifb / n if n else 0.0 for k, n in enumerate(generated)]
        )
        weight = per_event[process_id].astype(np.float32)
        psr = signal_region_mask(n_fatjets, leading_pt, summed_mass, delta_eta_12, cuts)
        names = _LAYOUT_NAMES[layout]
        columns = {
            "label": label,
            "weight": weight,
            "normweight": _class_balanced(weight, label),
            "psr": psr.astype(np.int8),
        }
        for key, values in columns.items():
            handle.create_dataset(names[key], data=values)
        jets = handle.create_group("jets")
        jets.create_dataset("n_fatjets", data=n_fatjets)
        jets.create_dataset("leading_pt", data=leading_pt)
        jets.create_dataset("summed_mass", data=summed_mass)
        jets.create_dataset("delta_eta_12", data=delta_eta_12)
        handle.create_group("truth").create_dataset("process_id", data=process_id)
        _write_attrs(
            handle,
            layout=layout,
            seed=seed,
            sqrt_s_gev=sqrt_s_gev,
            luminosity_ifb=luminosity_ifb,
            procs=procs,
            counts=counts,
            generated=generated,
            preselection=preselection,
            sigma_fb=sigma_fb,
            sigma_err_fb=sigma_err_fb,
            cuts=cuts,
            calorimeter=calorimeter,
        )
        tpr = _weighted_rate(psr, weight, label == 1)
        fpr = _weighted_rate(psr, weight, label == 0)
        out.details = {"n_signal": n_signal, "n_background": n_background,
                       "selection_tpr": tpr, "selection_fpr": fpr}
    if progress:
        print(f"lhc: selection TPR {tpr:.3g}, FPR {fpr:.3g} (weighted)",
              file=sys.stderr, flush=True)
    return out.report


def _write_attrs(handle: h5py.File, **kw: Any) -> None:
    procs: list[_Process] = kw["procs"]
    calo: CalorimeterConfig = kw["calorimeter"]
    version = _pythia_version()
    handle.attrs["generator"] = f"Pythia {version} (pythia8mc), modelzoo.lhc.generator"
    handle.attrs["generator_version"] = version
    handle.attrs["layout"] = kw["layout"]
    handle.attrs["seed"] = int(kw["seed"])
    handle.attrs["sqrt_s_gev"] = float(kw["sqrt_s_gev"])
    handle.attrs["luminosity_ifb"] = float(kw["luminosity_ifb"])
    handle.attrs["process_names"] = [p.name for p in procs]
    handle.attrs["process_labels"] = np.array([p.label for p in procs], np.int32)
    handle.attrs["process_events"] = np.array(kw["counts"], np.int64)
    handle.attrs["process_generated"] = np.array(kw["generated"], np.int64)
    handle.attrs["preselection"] = (
        "baseline: >= {baseline_n_fatjets_min} fat jets with pT > {fatjet_pt_min} GeV and "
        "|eta| < {fatjet_eta_max}, leading pT > {baseline_leading_pt_min} GeV".format(
            **asdict(kw["cuts"])
        )
        if kw["preselection"]
        else "none"
    )
    handle.attrs["cross_sections_fb"] = np.asarray(kw["sigma_fb"], np.float64)
    handle.attrs["cross_section_errors_fb"] = np.asarray(kw["sigma_err_fb"], np.float64)
    handle.attrs["qcd_pthat_slices_gev"] = json.dumps(QCD_PTHAT_SLICES)
    handle.attrs["channels"] = list(CHANNELS)
    handle.attrs["image_axes"] = "(channel, phi, eta)"
    handle.attrs["eta_range"] = np.array([-calo.eta_max, calo.eta_max])
    handle.attrs["phi_range"] = np.array([-np.pi, np.pi])
    handle.attrs["calorimeter"] = json.dumps(asdict(calo))
    handle.attrs["selection_cuts"] = json.dumps(asdict(kw["cuts"]))
    handle.attrs["fatjets"] = (
        f"anti-kT R={FATJET_RADIUS} (Pythia SlowJet), visible particles |eta| < "
        f"{CONSTITUENT_ETA_MAX}"
    )
    handle.attrs["weight_units"] = "events at the file's luminosity_ifb"
    handle.attrs["slha"] = SLHA_FILE.read_text()
    handle.attrs["references"] = "arXiv:1711.03573 (Bhimji et al. 2017); arXiv:1708.05256 (SC17)"


# ----------------------------------------------------------------------------------------------
# Command line: modelzoo data lhc --output events.h5 --signal 1000 --background 4000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``modelzoo data lhc``."""
    parser.add_argument("--output", required=True, help="HDF5 file to write")
    parser.add_argument("--signal", type=int, default=1000, help="RPV gluino-pair events")
    parser.add_argument("--background", type=int, default=1000, help="QCD multijet events")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--layout", choices=LAYOUTS, default="benchmark")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--sqrt-s", type=float, default=13000.0, help="GeV")
    parser.add_argument("--luminosity", type=float, default=36.0, help="fb^-1")
    parser.add_argument(
        "--preselection", action="store_true",
        help="keep only events passing the baseline selection (>= 3 fat jets, leading pT > 440 "
        "GeV), as the paper's test set",
    )
    parser.add_argument(
        "--slice-fractions", type=lambda text: tuple(float(v) for v in text.split(",")),
        default=None, metavar="F1,F2,F3,F4",
        help="shares of the background per pT-hat slice (200-400, 400-700, 700-1000, >1000 GeV)",
    )


def run(args: argparse.Namespace) -> None:
    """``modelzoo data lhc``: the generator reports progress and a summary line itself."""
    generate_lhc_events(
        args.output, n_signal=args.signal, n_background=args.background,
        image_size=args.image_size, layout=args.layout, seed=args.seed,
        processes=args.processes, sqrt_s_gev=args.sqrt_s, luminosity_ifb=args.luminosity,
        preselection=args.preselection, slice_fractions=args.slice_fractions,
    )
