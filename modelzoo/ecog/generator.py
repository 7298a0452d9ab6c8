"""Synthetic high-gamma ECoG of consonant-vowel syllables, in the published HDF5 layout.

A stand-in for the ventral sensorimotor cortex (vSMC) recordings of Bouchard et al., Nature
495:327 (2013) decoded by Livezey, Bouchard & Chang, PLoS Comput Biol 15(9): e1007091 (2019): a
speaker produces 57 syllables (19 consonants x 3 vowels), about 2,000 trials per subject, and each
trial is the high-gamma amplitude of ``n_channels`` electrodes over ``n_samples`` samples
(85 x 258 for the paper's subject 1: -0.5 s to +0.79 s around the consonant-vowel transition at
200 Hz).

Physics (physiology) choices
----------------------------
* **Electrode grid** over vSMC: electrodes on a regular grid, rows along the dorsal-ventral axis
  (``u`` in [0, 1]) and columns across the central sulcus (``v`` in [0, 1]).
* **Somatotopy**: each articulator drives a patch of cortex, ordered dorsal to ventral as found by
  Bouchard et al. 2013: larynx (dorsal), lips, jaw, tongue, larynx (ventral). A patch is a
  Gaussian bump on the grid, times a per-electrode gain drawn once per *subject* (so files of
  one subject with different ``seed`` share one brain and one classifier applies to both).
* **Consonant part**, peaking shortly before the transition: the major articulator's patch
  (labial, coronal = tongue blade, dorsal = tongue body, laryngeal), shifted within the patch by
  the place of articulation (bilabial/labiodental, dental/alveolar/postalveolar, palatal/velar);
  the temporal profile follows the manner (stops brief, fricatives sustained, nasals and
  approximants in between); voiced consonants add the laryngeal patches through the vowel; and a
  consonant's own smaller spatial pattern makes consonants of one group distinct. Consonants that
  share an articulator therefore share most of their pattern, which is the structure the
  confusion dendrogram should recover.
* **Vowel part**, after the transition: /a/ opens the jaw and lowers the tongue body, /i/
  raises the tongue front, /u/ rounds the lips and raises the tongue back; plus a weak
  syllable-specific coarticulation pattern at the transition.
* **Trial variability**: the whole trial shifts in time (``jitter_ms``, s.d.), the
  consonant-to-vowel interval stretches with the speaking rate (10% s.d.), the consonant and
  vowel parts have independent log-normal gains (``amplitude_sd``), and the noise is
  temporally smooth (20 ms) and partly shared across electrodes, at ``noise`` times the unit peak
  amplitude of a single articulator patch.

Files
-----
``X`` (N, n_channels, n_samples) float32 high-gamma amplitude (z-score units, baseline 0),
``y`` (N,) int32 syllable labels (``3 * consonant + vowel``, order of
:mod:`modelzoo.ecog.phonetics`), ``y_consonant`` (N,) int32 and ``y_vowel`` (N,) int32, and
attributes naming the generator, seeds, sampling rate, time window, syllables, the articulator
of each consonant and the electrode positions. Trials are in random order, classes balanced.

Reproducibility: trial ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` and the
subject's maps from ``default_rng([subject])``, so the file is the same for any ``processes``.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from modelzoo.ecog import phonetics
from modelzoo.errors import ConfigError
from modelzoo.parallel import GeneratorReport, generated_file, generator_arguments

SAMPLE_RATE_HZ = 200.0
WINDOW_START_S = -0.5
CHUNK_TRIALS = 128

# Dorsal-ventral centres (u) of the articulator patches (Bouchard et al. 2013, Fig. 2).
_PATCH_U = {"larynx_dorsal": 0.08, "lips": 0.3, "jaw": 0.48, "tongue": 0.7,
            "larynx_ventral": 0.92}
_PATCH_WIDTH_U, _PATCH_WIDTH_V = 0.08, 0.35
# Where the consonant's constriction sits inside its articulator's patch: (articulator,
# du, dv), shifts that separate places of articulation that share an articulator.
_PLACE_PATCH = {
    "bilabial": ("lips", 0.0, -0.15), "labiodental": ("lips", 0.04, 0.15),
    "dental": ("tongue", -0.08, -0.2), "alveolar": ("tongue", -0.05, 0.0),
    "postalveolar": ("tongue", -0.02, 0.2),
    "palatal": ("tongue", 0.05, -0.15), "velar": ("tongue", 0.09, 0.1),
    "glottal": ("larynx_ventral", 0.0, 0.0),
}
# Temporal width (s.d., seconds) of the consonant's activity by manner.
_MANNER_WIDTH_S = {"stop": 0.035, "fricative": 0.08, "nasal": 0.055, "approximant": 0.065}
_CONSONANT_PEAK_S = -0.08
_VOWEL_PEAK_S = 0.16
_VOWEL_WIDTH_S = 0.09
# Vowel gestures relative to consonant constrictions. Chosen so that vowels are not decoded
# near-perfectly (the paper: 79-86% on subject 1); stronger vowels make the vowel, not the
# articulator, the first split of the confusion dendrogram.
_VOWEL_GAIN = 0.55
# Vowel gestures: (articulator, du, dv, amplitude).
_VOWEL_PATCHES = {
    "aa": (("jaw", 0.0, 0.0, 1.0), ("tongue", 0.08, 0.25, 0.5)),
    "ee": (("tongue", -0.03, -0.25, 1.0),),
    "oo": (("lips", 0.0, 0.0, 0.8), ("tongue", 0.08, -0.1, 0.7)),
}


def grid_positions(n_channels: int) -> np.ndarray:
    """(n_channels, 2) electrode positions (u dorsal-ventral, v anterior-posterior) in [0, 1]:
    a grid about 3.4 times longer than wide along vSMC (5 x 17 for 85 electrodes)."""
    rows = max(1, int(round(np.sqrt(n_channels / 3.4))))
    cols = -(-n_channels // rows)
    u, v = np.meshgrid(np.linspace(0, 1, cols), np.linspace(0, 1, rows) if rows > 1 else [0.5])
    return np.stack([u.ravel(), v.ravel()], axis=1)[:n_channels]


@dataclass(frozen=True)
class Subject:
    """One simulated brain: the spatial maps of every gesture on its electrode grid."""

    positions: np.ndarray          # (C, 2)
    consonant_maps: np.ndarray     # (19, C): main articulator patch, place-shifted
    consonant_own: np.ndarray      # (19, C): consonant-specific pattern
    larynx_map: np.ndarray         # (C,): voicing
    vowel_maps: np.ndarray         # (3, C)
    coarticulation: np.ndarray     # (57, C)


def _patch(positions: np.ndarray, u: float, v: float) -> np.ndarray:
    du = (positions[:, 0] - u) / _PATCH_WIDTH_U
    dv = (positions[:, 1] - v) / _PATCH_WIDTH_V
    return np.exp(-0.5 * (du**2 + dv**2))


def make_subject(subject: int, n_channels: int) -> Subject:
    """The maps of subject number ``subject`` (deterministic)."""
    rng = np.random.default_rng([subject])
    pos = grid_positions(n_channels)
    # Per-electrode gain (contact impedance, distance to the cortical surface).
    gain = rng.lognormal(0.0, 0.3, n_channels)

    def smooth_pattern(scale: float) -> np.ndarray:
        # A few random bumps: an individual, spatially smooth pattern.
        centres = rng.uniform(0, 1, (4, 2))
        signs = rng.choice([-1.0, 1.0], 4) * rng.uniform(0.5, 1.0, 4)
        return scale * sum(s * _patch(pos, cu, cv) for s, (cu, cv) in zip(signs, centres))

    consonant_maps, consonant_own = [], []
    for c in phonetics.CONSONANTS:
        articulator, du, dv = _PLACE_PATCH[phonetics.PLACE[c]]
        main = _patch(pos, _PATCH_U[articulator] + du, 0.5 + dv)
        if phonetics.PLACE[c] in ("bilabial", "labiodental", "postalveolar") or c == "w":
            main = main + 0.4 * _patch(pos, _PATCH_U["jaw"], 0.5)   # jaw assists the lips
        if c == "w":
            main = main + 0.6 * _patch(pos, _PATCH_U["tongue"] + 0.09, 0.6)  # labio-velar
        consonant_maps.append(main)
        consonant_own.append(smooth_pattern(0.35))
    larynx = _patch(pos, _PATCH_U["larynx_dorsal"], 0.5) + _patch(pos, _PATCH_U["larynx_ventral"],
                                                                  0.5)
    vowel_maps = [
        sum(a * _patch(pos, _PATCH_U[art] + du, 0.5 + dv) for art, du, dv, a in gestures)
        for gestures in _VOWEL_PATCHES.values()
    ]
    coarticulation = [smooth_pattern(0.15) for _ in phonetics.SYLLABLES]
    return Subject(pos, gain * np.array(consonant_maps), gain * np.array(consonant_own),
                   gain * 0.5 * larynx, gain * np.array(vowel_maps),
                   gain * np.array(coarticulation))


@dataclass(frozen=True)
class _Chunk:
    first: int
    labels: np.ndarray
    seed: int
    subject: int
    n_channels: int
    n_samples: int
    noise: float
    jitter_ms: float
    amplitude_sd: float


def _bump(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - centre) / width) ** 2)


_SUBJECTS: dict[tuple[int, int], Subject] = {}


def _subject(subject: int, n_channels: int) -> Subject:
    key = (subject, n_channels)
    if key not in _SUBJECTS:
        _SUBJECTS[key] = make_subject(subject, n_channels)
    return _SUBJECTS[key]


def simulate_trial(rng: np.random.Generator, label: int, subject: Subject, n_samples: int,
                   noise: float, jitter_ms: float, amplitude_sd: float) -> np.ndarray:
    """One trial of syllable ``label``: (channels, samples) high-gamma amplitude."""
    c, v = phonetics.consonant_of(label), phonetics.vowel_of(label)
    consonant = phonetics.CONSONANTS[c]
    t = WINDOW_START_S + np.arange(n_samples) / SAMPLE_RATE_HZ
    shift = rng.normal(0.0, jitter_ms / 1000.0)
    rate = rng.normal(1.0, 0.1)
    g_consonant, g_vowel = rng.lognormal(0.0, amplitude_sd, 2)
    t_c = _CONSONANT_PEAK_S + shift
    t_v = t_c + (_VOWEL_PEAK_S - _CONSONANT_PEAK_S) * rate
    width = _MANNER_WIDTH_S[phonetics.MANNER[consonant]]
    consonant_time = _bump(t, t_c, width)
    signal = g_consonant * np.outer(subject.consonant_maps[c] + subject.consonant_own[c],
                                    consonant_time)
    if consonant in phonetics.VOICED:
        signal += g_vowel * np.outer(subject.larynx_map, _bump(t, 0.5 * (t_c + t_v), 0.12))
    signal += g_vowel * _VOWEL_GAIN * np.outer(subject.vowel_maps[v], _bump(t, t_v, _VOWEL_WIDTH_S))
    signal += np.outer(subject.coarticulation[label], _bump(t, 0.5 * (t_c + t_v), 0.05))
    # Noise: 20 ms smooth in time, 30% of its variance shared by all electrodes.
    n_channels = signal.shape[0]
    own = rng.standard_normal((n_channels, n_samples))
    shared = rng.standard_normal(n_samples)
    raw = np.sqrt(0.7) * own + np.sqrt(0.3) * shared[None, :]
    smooth = gaussian_filter1d(raw, sigma=0.02 * SAMPLE_RATE_HZ, axis=1)
    smooth /= smooth.std()
    return (signal + noise * smooth).astype(np.float32)


def _run_chunk(chunk: _Chunk) -> tuple[int, np.ndarray]:
    subject = _subject(chunk.subject, chunk.n_channels)
    x = np.empty((len(chunk.labels), chunk.n_channels, chunk.n_samples), np.float32)
    for k, label in enumerate(chunk.labels):
        rng = np.random.default_rng([chunk.seed, chunk.first + k])
        x[k] = simulate_trial(rng, int(label), subject, chunk.n_samples, chunk.noise,
                              chunk.jitter_ms, chunk.amplitude_sd)
    return chunk.first, x


def balanced_labels(n_trials: int, seed: int) -> np.ndarray:
    """Syllable labels of ``n_trials`` trials, every class as often as possible, random order."""
    n_classes = len(phonetics.SYLLABLES)
    labels = np.arange(n_trials) % n_classes
    return np.random.default_rng([seed, 57]).permutation(labels).astype(np.int32)


def generate_ecog(
    path: str | os.PathLike,
    *,
    n_trials: int = 2000,
    n_channels: int = 85,
    n_samples: int = 258,
    subject: int = 1,
    seed: int = 0,
    noise: float = 0.35,
    jitter_ms: float = 40.0,
    amplitude_sd: float = 0.3,
    processes: int = 1,
    progress: bool = True,
) -> GeneratorReport:
    """Write ``n_trials`` synthetic consonant-vowel trials of subject ``subject`` to ``path``.

    Args:
        path: HDF5 file (written to ``path.partial`` first, then renamed).
        n_trials: trials (the published subjects have about 2,000).
        n_channels: electrodes on the simulated vSMC grid.
        n_samples: samples per trial at 200 Hz from -0.5 s.
        subject: which simulated brain (electrode gains, individual patterns).
        seed: the trials (labels, variability, noise) derive from it.
        noise: noise s.d. relative to the unit peak of an articulator patch.
        jitter_ms: s.d. of each trial's timing shift.
        amplitude_sd: s.d. of the log gain of the consonant and vowel parts.
        processes: worker processes; the output does not depend on it.
        progress: progress lines on stderr.

    Returns:
        What was written (:class:`~modelzoo.parallel.GeneratorReport`).
    """
    arguments = generator_arguments(locals())
    if n_trials < 1 or n_channels < 1 or n_samples < 1:
        raise ConfigError(f"need positive n_trials, n_channels, n_samples, got {n_trials}, "
                         f"{n_channels}, {n_samples}")
    if seed < 0 or subject < 0:
        raise ConfigError(f"seed and subject must be non-negative, got {seed}, {subject}")
    if noise < 0 or jitter_ms < 0 or amplitude_sd < 0:
        raise ConfigError("noise, jitter_ms and amplitude_sd must be non-negative")
    labels = balanced_labels(n_trials, seed)
    chunks = [
        _Chunk(first, labels[first:first + CHUNK_TRIALS], seed, subject, n_channels, n_samples,
               noise, jitter_ms, amplitude_sd)
        for first in range(0, n_trials, CHUNK_TRIALS)
    ]
    with generated_file(path, _run_chunk, chunks, processes=processes, label="ecog",
                        noun="trials", total=n_trials, progress=progress,
                        arguments=arguments) as out:
        handle = out.file
        x = handle.create_dataset("X", (n_trials, n_channels, n_samples), np.float32,
                                  chunks=(min(64, n_trials), n_channels, n_samples))
        for first, block in out.results:
            x[first:first + len(block)] = block
            out.advance(len(block))
        handle.create_dataset("y", data=labels)
        handle.create_dataset("y_consonant", data=labels // len(phonetics.VOWELS))
        handle.create_dataset("y_vowel", data=labels % len(phonetics.VOWELS))
        subject_maps = _subject(subject, n_channels)
        attrs = handle.attrs
        attrs["generator"] = "modelzoo.ecog.generator (synthetic vSMC high-gamma)"
        attrs["seed"] = seed
        attrs["subject"] = subject
        attrs["sampling_rate_hz"] = SAMPLE_RATE_HZ
        attrs["window_s"] = np.array([WINDOW_START_S,
                                      WINDOW_START_S + (n_samples - 1) / SAMPLE_RATE_HZ])
        attrs["noise"], attrs["jitter_ms"], attrs["amplitude_sd"] = noise, jitter_ms, \
            amplitude_sd
        attrs["syllables"] = list(phonetics.SYLLABLES)
        attrs["consonants"] = list(phonetics.CONSONANTS)
        attrs["vowels"] = list(phonetics.VOWELS)
        attrs["major_articulator"] = json.dumps(phonetics.MAJOR_ARTICULATOR)
        attrs["electrode_positions"] = subject_maps.positions
        attrs["references"] = ("Livezey, Bouchard & Chang, PLoS Comput Biol 15:e1007091 "
                               "(2019); Bouchard et al., Nature 495:327 (2013)")
    return out.report


# ----------------------------------------------------------------------------------------------
# Command line: modelzoo data ecog --output cv.h5 --trials 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``modelzoo data ecog``."""
    parser.add_argument("--output", required=True, help="HDF5 file to write")
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--channels", type=int, default=85)
    parser.add_argument("--samples", type=int, default=258, help="at 200 Hz from -0.5 s")
    parser.add_argument("--subject", type=int, default=1, help="which simulated brain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.35)
    parser.add_argument("--jitter-ms", type=float, default=40.0)
    parser.add_argument("--amplitude-sd", type=float, default=0.3)
    parser.add_argument("--processes", type=int, default=1)


def run(args: argparse.Namespace) -> None:
    """``modelzoo data ecog``: the generator reports progress itself."""
    generate_ecog(args.output, n_trials=args.trials, n_channels=args.channels,
                  n_samples=args.samples, subject=args.subject, seed=args.seed, noise=args.noise,
                  jitter_ms=args.jitter_ms, amplitude_sd=args.amplitude_sd,
                  processes=args.processes)
