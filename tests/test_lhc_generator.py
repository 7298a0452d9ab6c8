"""The Pythia 8 LHC generator: selection logic, detector geometry, determinism, layouts, physics.

The Pythia runs are small (tens to a few hundred events at 16x16 or 32x32) and shared through
module-scoped fixtures; together they take about 30 s on two cores.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math

import h5py
import numpy as np
import pytest

import modelzoo
from modelzoo.lhc import generator as lhc_pythia
from modelzoo.lhc.generator import (
    CalorimeterConfig,
    SelectionCuts,
    _split,
    baseline_mask,
    fatjet_summary,
    generate_lhc_events,
    passes_signal_region,
    signal_region_mask,
)
from modelzoo.parallel import GeneratorReport

# ----------------------------------------------------------------------------------------------
# Physics selection on hand-made jets (no Pythia needed)

# Four central jets: leading pT 600 > 440, |eta1 - eta2| = 1.0, masses sum to 900 > 800.
PT4 = [600.0, 400.0, 300.0, 250.0]
ETA4 = [0.2, -0.8, 1.0, -1.5]
MASS4 = [300.0, 250.0, 200.0, 150.0]


def test_four_jet_event_in_signal_region():
    assert passes_signal_region(PT4, ETA4, MASS4)


def test_three_jets_fail_the_signal_region():
    assert not passes_signal_region(PT4[:3], ETA4[:3], MASS4[:3])


def test_wide_leading_pair_fails():
    eta = [0.2, -1.8, 1.0, -1.5]  # |delta eta| = 2.0
    assert not passes_signal_region(PT4, eta, MASS4)


def test_soft_leading_jet_fails_baseline():
    assert not passes_signal_region([430.0, 400.0, 300.0, 250.0], ETA4, MASS4)


def test_mass_threshold_depends_on_multiplicity():
    light = [200.0, 200.0, 150.0, 150.0]  # 700 GeV: below the 4-jet cut, above the 5-jet one
    assert not passes_signal_region(PT4, ETA4, light)
    assert passes_signal_region(PT4 + [210.0], ETA4 + [0.0], light + [10.0])


def test_object_cuts_and_order():
    # A fifth jet at |eta| = 2.2 or pT = 150 is not a selected fat jet, so 700 GeV stays 4-jet.
    light = [200.0, 200.0, 150.0, 150.0]
    assert not passes_signal_region(PT4 + [500.0], ETA4 + [2.2], light + [50.0])
    assert not passes_signal_region(PT4 + [150.0], ETA4 + [0.0], light + [50.0])
    # Input order does not matter: jets are sorted by pT.
    order = [2, 0, 3, 1]
    assert passes_signal_region(
        [PT4[i] for i in order], [ETA4[i] for i in order], [MASS4[i] for i in order]
    )
    # Only the four leading jets enter the summed mass.
    n, leading, summed, deta = fatjet_summary(PT4 + [220.0], ETA4 + [0.0], MASS4 + [1000.0])
    assert (n, leading, summed, deta) == (5, 600.0, 900.0, pytest.approx(1.0))


def test_cuts_are_parameters():
    assert not passes_signal_region(PT4, ETA4, MASS4, SelectionCuts(sr4j_mass_min=1000.0))
    assert passes_signal_region(
        PT4, [0.2, -1.8, 1.0, -1.5], MASS4, SelectionCuts(sr_delta_eta_max=2.5)
    )


def test_vectorised_mask_matches_per_event_function():
    rng = np.random.default_rng(0)
    summaries, expected = [], []
    for _ in range(300):
        n = rng.integers(0, 7)
        pt = rng.uniform(100, 900, n)
        eta = rng.uniform(-2.5, 2.5, n)
        mass = rng.uniform(20, 400, n)
        summaries.append(fatjet_summary(pt, eta, mass))
        expected.append(passes_signal_region(pt, eta, mass))
    columns = [np.array(c) for c in zip(*summaries)]
    np.testing.assert_array_equal(signal_region_mask(*columns), np.array(expected))
    assert 0 < sum(expected) < len(expected)  # the sample exercises both outcomes


# ----------------------------------------------------------------------------------------------
# Detector geometry on hand-made particles (no Pythia needed)


def _particle(pid, pt, eta, phi, mass=0.0, charge=0.0):
    px, py, pz = pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta)
    return (pid, px, py, pz, math.sqrt(px * px + py * py + pz * pz + mass * mass), charge)


def test_image_channels_and_pixels():
    size = 8
    particles = np.array(
        [
            _particle(22, 50.0, 0.1, 0.1),  # photon: EM and total energy, no track
            _particle(211, 20.0, 0.1, 0.1, 0.14, 1.0),  # pi+: hadronic energy and a track
            _particle(13, 30.0, -1.0, -2.0, 0.106, -1.0),  # muon: track only
            _particle(211, 0.5, 0.1, 0.1, 0.14, 1.0),  # soft pi+: energy, below track pT cut
            _particle(22, 50.0, 3.0, 0.1),  # outside |eta| < 2.5
        ]
    )
    calo = CalorimeterConfig(smear=False)
    image = lhc_pythia._image(particles, size, calo, np.random.default_rng(0))
    assert image.shape == (3, size, size) and image.dtype == np.float32
    # Rows are phi over [-pi, pi], columns eta over [-2.5, 2.5].
    row, col = int((0.1 + math.pi) / (2 * math.pi) * size), int((0.1 + 2.5) / 5.0 * size)
    e = particles[:, 4]
    assert image[1, row, col] == pytest.approx(e[0], rel=1e-6)
    assert image[0, row, col] == pytest.approx(e[0] + e[1] + e[3], rel=1e-6)
    assert image[2, row, col] == 1
    mu_row, mu_col = int((-2.0 + math.pi) / (2 * math.pi) * size), int((-1.0 + 2.5) / 5.0 * size)
    assert image[2, mu_row, mu_col] == 1 and image[0, mu_row, mu_col] == 0
    assert image[0].sum() == pytest.approx(e[0] + e[1] + e[3], rel=1e-6)
    assert image[2].sum() == 2


def test_smearing_keeps_em_below_total_and_is_seeded():
    rng = np.random.default_rng(1)
    particles = np.array(
        [
            _particle(pid, rng.uniform(1, 200), rng.uniform(-2.4, 2.4), rng.uniform(-3, 3))
            for pid in rng.choice([22, 11, 211, 130, 2112], 400)
        ]
    )
    calo = CalorimeterConfig()
    a = lhc_pythia._image(particles, 16, calo, np.random.default_rng([7, 1]))
    b = lhc_pythia._image(particles, 16, calo, np.random.default_rng([7, 1]))
    c = lhc_pythia._image(particles, 16, calo, np.random.default_rng([7, 2]))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(a[1] <= a[0]) and np.all(a >= 0)
    exact = lhc_pythia._image(particles, 16, CalorimeterConfig(smear=False), None)
    # Stochastic smearing is unbiased: the totals agree to a few percent.
    assert a[0].sum() == pytest.approx(exact[0].sum(), rel=0.05)
    assert not np.array_equal(a[0], exact[0])


# ----------------------------------------------------------------------------------------------
# Pythia runs

# The selection and geometry tests above run without Pythia; the runs below need it.
needs_pythia = pytest.mark.skipif(
    importlib.util.find_spec("pythia8mc") is None, reason="pythia8mc is not installed"
)

BENCHMARK = {
    "data": ((3,), np.float32),
    "label": ((), np.int32),
    "weight": ((), np.float32),
    "normweight": ((), np.float32),
    "psr": ((), np.int8),
}
ACAT = {
    "all_events/hist": ((), np.float32),
    "all_events/histEM": ((), np.float32),
    "all_events/histtrack": ((), np.float32),
    "all_events/y": ((), np.int32),
    "all_events/weight": ((), np.float32),
    "all_events/normalized_weight": ((), np.float32),
    "all_events/passSR": ((), np.int8),
}
JETS = {
    "jets/n_fatjets": np.int32,
    "jets/leading_pt": np.float32,
    "jets/summed_mass": np.float32,
    "jets/delta_eta_12": np.float32,
}
SMALL = {"n_signal": 10, "n_background": 8, "image_size": 16, "progress": False}


def _read_all(path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(
            lambda name, obj: (
                out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return out


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    """The same tiny sample four ways; chunks of 4 events so each process spans chunks."""
    root = tmp_path_factory.mktemp("lhc_small")
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lhc_pythia, "CHUNK_EVENTS", 4)
        for key, kwargs in {
            "p1": {"seed": 5, "processes": 1},
            "p2": {"seed": 5, "processes": 2},
            "seed6": {"seed": 6, "processes": 2},
            "acat": {"seed": 5, "processes": 2, "layout": "acat"},
        }.items():
            path = root / f"{key}.h5"
            runs[key] = (path, generate_lhc_events(path, **SMALL, **kwargs))
    return runs


@pytest.mark.slow
@needs_pythia
def test_same_seed_is_byte_identical_for_any_process_count(small_runs):
    one, two = _read_all(small_runs["p1"][0]), _read_all(small_runs["p2"][0])
    assert one.keys() == two.keys()
    for key in one:
        assert one[key].dtype == two[key].dtype
        assert one[key].tobytes() == two[key].tobytes(), key


@pytest.mark.slow
@needs_pythia
def test_different_seed_gives_different_events(small_runs):
    five, six = _read_all(small_runs["p1"][0]), _read_all(small_runs["seed6"][0])
    assert not np.array_equal(five["data"], six["data"])
    assert not np.array_equal(five["jets/summed_mass"], six["jets/summed_mass"], equal_nan=True)


@pytest.mark.slow
@needs_pythia
def test_benchmark_layout(small_runs):
    path, report = small_runs["p1"]
    n = SMALL["n_signal"] + SMALL["n_background"]
    with h5py.File(path, "r") as f:
        for name, (extra, dtype) in BENCHMARK.items():
            shape = (n, *extra, 16, 16) if name == "data" else (n,)
            assert f[name].shape == shape and f[name].dtype == dtype, name
        for name, dtype in JETS.items():
            assert f[name].shape == (n,) and f[name].dtype == dtype, name
        assert "all_events" not in f
        assert list(f.attrs["channels"]) == ["calorimeter_energy", "em_energy", "track_count"]
        for attr in (
            "generator",
            "seed",
            "sqrt_s_gev",
            "luminosity_ifb",
            "cross_sections_fb",
            "process_names",
            "eta_range",
            "phi_range",
            "selection_cuts",
        ):
            assert attr in f.attrs, attr
        assert f.attrs["seed"] == 5 and f.attrs["sqrt_s_gev"] == 13000.0
        assert json.loads(f.attrs["selection_cuts"]) == dataclasses.asdict(SelectionCuts())
        label = f["label"][()]
    assert isinstance(report, GeneratorReport)
    assert (report.rows, report.details["n_signal"], report.details["n_background"]) == (n, 10, 8)
    assert int(label.sum()) == 10
    # Shuffled: the labels are not one block of signal followed by one of background.
    assert np.any(np.diff(label) != 0) and np.count_nonzero(np.diff(label)) > 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.rows = 0


@pytest.mark.slow
@needs_pythia
def test_acat_layout_holds_the_same_events(small_runs):
    acat, bench = _read_all(small_runs["acat"][0]), _read_all(small_runs["p2"][0])
    n = SMALL["n_signal"] + SMALL["n_background"]
    for name, (_, dtype) in ACAT.items():
        shape = (n, 16, 16) if name.startswith("all_events/hist") else (n,)
        assert acat[name].shape == shape and acat[name].dtype == dtype, name
    assert "data" not in acat and "label" not in acat
    for channel, name in enumerate(("hist", "histEM", "histtrack")):
        np.testing.assert_array_equal(acat[f"all_events/{name}"], bench["data"][:, channel])
    np.testing.assert_array_equal(acat["all_events/y"], bench["label"])
    np.testing.assert_array_equal(acat["all_events/weight"], bench["weight"])
    np.testing.assert_array_equal(acat["all_events/normalized_weight"], bench["normweight"])
    np.testing.assert_array_equal(acat["all_events/passSR"], bench["psr"])
    for name in JETS:
        np.testing.assert_array_equal(acat[name], bench[name])


@pytest.mark.slow
@needs_pythia
def test_the_zoo_reader_opens_both_layouts(small_runs):
    from modelzoo.lhc.reader import open_lhc

    for key, layout in (("p1", "benchmark"), ("acat", "acat")):
        path = small_runs[key][0]
        images = open_lhc(path)
        assert images.layout == layout and images.image_shape == (16, 16, 3)
        arrays = images.arrays((0, images.num_events))
        truth = _read_all(small_runs["p1"][0])
        np.testing.assert_array_equal(arrays["label"], truth["label"])
        np.testing.assert_array_equal(arrays["passes_selection"], truth["psr"])


def test_bad_arguments(tmp_path):
    with pytest.raises(modelzoo.ConfigError, match=r"layout must be one of .*got 'nchw'"):
        generate_lhc_events(tmp_path / "x.h5", n_signal=1, n_background=1, layout="nchw")
    with pytest.raises(modelzoo.ConfigError, match="some events, got 0, 0"):
        generate_lhc_events(tmp_path / "x.h5", n_signal=0, n_background=0)
    assert not (tmp_path / "x.h5").exists()


@pytest.fixture(scope="module")
def physics_sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("lhc_physics") / "events.h5"
    report = generate_lhc_events(
        path,
        n_signal=150,
        n_background=200,
        image_size=32,
        seed=11,
        processes=2,
        progress=False,
    )
    return _read_all(path), report, path


@pytest.mark.slow
@needs_pythia
def test_signal_is_more_jetty_and_heavier_than_qcd(physics_sample):
    data, _, _ = physics_sample
    sig = data["label"] == 1
    n_jets, mass = data["jets/n_fatjets"], data["jets/summed_mass"]
    # Ten hard partons from two 1.4 TeV gluinos against QCD 2 -> 2 with pT-hat > 200 GeV.
    assert n_jets[sig].mean() > n_jets[~sig].mean() + 1.0
    assert mass[sig].mean() > 1.5 * mass[~sig].mean()
    assert data["psr"][sig].mean() > data["psr"][~sig].mean()
    # And in the images: more deposited energy and more tracks.
    total = data["data"].sum(axis=(2, 3))
    assert total[sig, 0].mean() > total[~sig, 0].mean()
    assert total[sig, 2].mean() > total[~sig, 2].mean()


@pytest.mark.slow
@needs_pythia
def test_weights_follow_the_cross_sections(physics_sample):
    data, report, path = physics_sample
    weight, label = data["weight"], data["label"]
    assert np.all(np.isfinite(weight)) and np.all(weight > 0)
    assert np.all(np.isfinite(data["normweight"])) and np.all(data["normweight"] > 0)
    with h5py.File(path, "r") as f:
        sigma = f.attrs["cross_sections_fb"]
        lumi = f.attrs["luminosity_ifb"]
        names = list(f.attrs["process_names"])
    # LO gluino pairs at 1.4 TeV, 13 TeV: ~14 fb; QCD slices fall steeply with pT-hat.
    assert names[0].startswith("rpv_gluino") and 5.0 < sigma[0] < 40.0
    assert np.all(np.diff(sigma[1:]) < 0) and sigma[1] > 1e6 * sigma[0]
    # Summed weights reproduce sigma x luminosity per class.
    assert weight[label == 1].sum(dtype=np.float64) == pytest.approx(sigma[0] * lumi, rel=1e-5)
    assert weight[label == 0].sum(dtype=np.float64) == pytest.approx(
        sigma[1:].sum() * lumi, rel=1e-5
    )
    n = label.size
    for cls in (0, 1):
        assert data["normweight"][label == cls].sum(dtype=np.float64) == pytest.approx(
            n / 2, rel=1e-5
        )
    assert 0.0 <= report.details["selection_fpr"] < report.details["selection_tpr"] <= 1.0


@pytest.mark.slow
@needs_pythia
def test_images_are_physical(physics_sample):
    data, _, _ = physics_sample
    images = data["data"]
    assert images.dtype == np.float32 and np.all(np.isfinite(images)) and np.all(images >= 0)
    tracks = images[:, 2]
    assert np.array_equal(tracks, np.round(tracks))
    assert np.all(images[:, 1] <= images[:, 0])
    assert np.all(images[:, 0].sum(axis=(1, 2)) > 0)
    # Jet summary is consistent with the stored selection flag.
    mask = signal_region_mask(
        data["jets/n_fatjets"],
        data["jets/leading_pt"],
        data["jets/summed_mass"],
        data["jets/delta_eta_12"],
    )
    np.testing.assert_array_equal(mask.astype(np.int8), data["psr"])


@pytest.fixture(scope="module")
def preselected_sample(tmp_path_factory):
    """Preselected events, skipping the 200-400 GeV slice (it keeps ~1 event in 500)."""
    path = tmp_path_factory.mktemp("lhc_presel") / "events.h5"
    report = generate_lhc_events(
        path, n_signal=20, n_background=40, image_size=8, seed=12, processes=2, progress=False,
        preselection=True, slice_fractions=(0, 0.5, 0.25, 0.25),
    )
    return _read_all(path), report, path


@pytest.mark.slow
@needs_pythia
def test_preselection_keeps_only_baseline_events_and_weights_carry_its_efficiency(
    preselected_sample,
):
    data, report, path = preselected_sample
    # Every stored event passes the baseline, recomputed from the stored jet summary.
    assert baseline_mask(data["jets/n_fatjets"], data["jets/leading_pt"]).all()
    assert (data["jets/n_fatjets"] >= 3).all() and (data["jets/leading_pt"] > 440).all()
    with h5py.File(path, "r") as f:
        sigma, lumi = f.attrs["cross_sections_fb"], f.attrs["luminosity_ifb"]
        kept, generated = f.attrs["process_events"], f.attrs["process_generated"]
        assert "leading pT > 440.0 GeV" in f.attrs["preselection"]
    np.testing.assert_array_equal(kept, [20, 0, 20, 10, 10])
    # The QCD slices lose events to the preselection (signal hardly any: ~97% pass).
    assert np.all(generated[2:] > kept[2:]) and generated[0] >= kept[0]
    # Per process, the weights sum to sigma x L x (kept / generated): the preselected yield.
    for k in (0, 2, 3, 4):
        mine = data["truth/process_id"] == k
        assert data["weight"][mine].sum(dtype=np.float64) == pytest.approx(
            sigma[k] * lumi * kept[k] / generated[k], rel=1e-5)


def test_slice_fractions_are_checked(tmp_path):
    with pytest.raises(modelzoo.ConfigError, match="needs 4 non-negative shares"):
        generate_lhc_events(tmp_path / "x.h5", n_signal=1, n_background=1,
                            slice_fractions=(1, 1))


def test_baseline_mask_and_slice_split():
    np.testing.assert_array_equal(
        baseline_mask([3, 3, 2, 5], [441.0, 439.0, 900.0, 1000.0]), [True, False, False, True])
    assert _split(17100, (0.006, 0.585, 0.234, 0.175)) == [103, 10004, 4001, 2992]
    assert _split(10, (1, 1, 1, 1)) == [3, 3, 2, 2]
    assert _split(5, (0, 0.5, 0.25, 0.25)) == [0, 3, 1, 1]
