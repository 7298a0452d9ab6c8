"""Pretrained weights: folders, integrity checks, config mismatch, and every shipped entry."""

from __future__ import annotations

import json

import numpy as np
import pytest

import modelzoo
from modelzoo import manifest, pretrained, reproduce

TINY = {"input_shape": (16, 16, 3), "filters": 4, "dense_units": 8}


def _fake_shipped(tmp_path, monkeypatch):
    """A private pretrained/ folder with one compact float16 entry."""
    monkeypatch.setattr(manifest, "PRETRAINED_DIR", tmp_path)
    model = modelzoo.get("lhc_cnn", **TINY)
    path = tmp_path / "lhc_cnn.test.float16.h5"
    pretrained.write_compact(model, path)
    entries = {"lhc_cnn.test": {
        "model": "lhc_cnn", "tag": "test", "default": True, "file": path.name,
        "sha256": pretrained.sha256_of(path), "bytes": path.stat().st_size,
        "config": json.loads(json.dumps(TINY)), "metrics": {}, "description": "test entry",
    }}
    (tmp_path / "manifest.json").write_text(json.dumps(entries))
    return model, path


def _same_weights(a, b, rtol=0.0, atol=0.0):
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_allclose(np.asarray(wa), np.asarray(wb), rtol=rtol, atol=atol)


def test_shipped_entry_loads_with_float16_precision(tmp_path, monkeypatch):
    original, _ = _fake_shipped(tmp_path, monkeypatch)
    loaded = modelzoo.get("lhc_cnn", weights="default")
    assert loaded.input_shape == (None, 16, 16, 3)
    assert all(np.asarray(w).dtype == np.float32 for w in loaded.weights)
    _same_weights(original, loaded, rtol=1e-3, atol=1e-4)
    assert modelzoo.list_models("lhc*", pretrained=True) == ["lhc_cnn"]
    same = modelzoo.get("lhc_cnn", weights="test", filters=4)
    assert same.count_params() == loaded.count_params()


def test_tampered_truncated_missing_and_mismatched(tmp_path, monkeypatch):
    _, path = _fake_shipped(tmp_path, monkeypatch)
    data = path.read_bytes()

    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(modelzoo.PretrainedError, match="sha256 .* does not match expected"):
        modelzoo.get("lhc_cnn", weights="default")

    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(modelzoo.PretrainedError, match="truncated"):
        modelzoo.get("lhc_cnn", weights="default")

    path.unlink()
    with pytest.raises(modelzoo.PretrainedError, match="weights file is missing"):
        modelzoo.get("lhc_cnn", weights="default")

    path.write_bytes(data)
    with pytest.raises(modelzoo.PretrainedError, match="changes its variables"):
        modelzoo.get("lhc_cnn", weights="default", filters=8)
    with pytest.raises(modelzoo.PretrainedError, match="has no weights 'v9'"):
        modelzoo.get("lhc_cnn", weights="v9")
    with pytest.raises(modelzoo.PretrainedError, match="no pretrained weights ship"):
        modelzoo.get("lhc_cnn_15pf", weights="default")
    # Loading into a different architecture names both shapes.
    with pytest.raises(modelzoo.PretrainedError, match="another configuration"):
        pretrained._load_into(modelzoo.get("lhc_cnn", **{**TINY, "dense_units": 4}),
                              "lhc_cnn.test")


@pytest.fixture
def weights_server(tmp_path):
    """A local HTTP server over ``tmp_path / "served"``: (folder, base URL)."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def test_url_entry_downloads_once_verifies_and_refuses_a_wrong_hash(tmp_path, monkeypatch,
                                                                     weights_server):
    original, path = _fake_shipped(tmp_path, monkeypatch)
    served, base = weights_server
    path.rename(served / path.name)
    entries = json.loads((tmp_path / "manifest.json").read_text())
    entries["lhc_cnn.test"]["url"] = f"{base}/{path.name}"
    (tmp_path / "manifest.json").write_text(json.dumps(entries))
    cache = tmp_path / "cache"
    monkeypatch.setenv("MODELZOO_CACHE_DIR", str(cache))

    _same_weights(original, modelzoo.get("lhc_cnn", weights="default"), rtol=1e-3, atol=1e-4)
    assert (cache / path.name).exists()
    # Once fetched, the cached copy is used: the server no longer needs to hold the file.
    (served / path.name).rename(tmp_path / "elsewhere.h5")
    _same_weights(original, modelzoo.get("lhc_cnn", weights="default"), rtol=1e-3, atol=1e-4)

    # A served file that is not the manifest's is refused in one line and not kept.
    (cache / path.name).unlink()
    (tmp_path / "elsewhere.h5").rename(served / path.name)
    entries["lhc_cnn.test"]["sha256"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(entries))
    with pytest.raises(modelzoo.PretrainedError) as err:
        modelzoo.get("lhc_cnn", weights="default")
    assert "\n" not in str(err.value)
    assert f"downloaded sha256 {pretrained.sha256_of(served / path.name)} does not match " \
        f"lhc_cnn.test's {'0' * 64}; the file was not kept" in str(err.value)
    assert not (cache / path.name).exists()

    entries["lhc_cnn.test"]["url"] = f"{base}/missing.h5"
    (tmp_path / "manifest.json").write_text(json.dumps(entries))
    with pytest.raises(modelzoo.PretrainedError, match="missing.h5: cannot download lhc_cnn"):
        modelzoo.get("lhc_cnn", weights="default")


def test_save_pretrained_and_get_round_trip(tmp_path):
    model = modelzoo.get("lhc_cnn", **TINY)
    folder = modelzoo.save_pretrained(model, tmp_path / "mine", metadata={"note": "mine"})
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["note"] == "mine" and len(meta["sha256"]) == 64
    again = modelzoo.get("lhc_cnn", weights=folder)
    _same_weights(model, again)
    with pytest.raises(modelzoo.PretrainedError, match="holds a 'lhc_cnn' model, not"):
        modelzoo.get("lhc_cnn_15pf", weights=folder)

    weights = folder / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(modelzoo.PretrainedError, match="truncated"):
        modelzoo.get("lhc_cnn", weights=folder)


def test_save_pretrained_needs_config_for_foreign_models(tmp_path):
    import keras

    inputs = keras.Input((2,))
    foreign = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    with pytest.raises(ValueError, match="needs name= and config="):
        modelzoo.save_pretrained(foreign, tmp_path / "x")


SHIPPED = manifest.list_pretrained()


def test_manifest_files_exist_and_hash_right():
    for key, entry in manifest.load_manifest().items():
        if "url" in entry:  # fetched into the cache on first use, not in the tree
            continue
        path = manifest.PRETRAINED_DIR / entry["file"]
        assert path.exists(), key
        assert path.stat().st_size == entry["bytes"], key
        assert pretrained.sha256_of(path) == entry["sha256"], key
    # The weights travel in the repository and in the wheel: a clone and a pip install stay
    # quick (the largest entry, ecog_mlp at the published width, is 20 MB as compressed
    # float16). Only default entries ship; larger weights carry a URL and are fetched into a
    # cache.
    sizes = {p.name: p.stat().st_size for p in manifest.PRETRAINED_DIR.glob("*")}
    assert max(sizes.values()) < 25e6 and sum(sizes.values()) <= 50_000_000, sizes
    superseded = [k for k, e in manifest.load_manifest().items() if not e.get("default")]
    assert superseded == [], superseded


def test_check_sets_measure_what_the_evaluation_sets_do():
    # A check set too small for a comparison (the LHC operating point refused for want of
    # background events) would leave verify re-checking only the side metrics.
    for key, entry in manifest.load_manifest().items():
        if "check_metrics" in entry:
            skipped = set(entry["metrics"]) - set(entry["check_metrics"]) - reproduce.UNTIMED
            assert not skipped, (key, skipped)
            assert "operating_point_refused" not in entry["check_metrics"], key


@pytest.fixture(scope="module")
def verify_data(tmp_path_factory) -> str:
    """One folder for every entry's regenerated sets: entries with the same set share it."""
    return str(tmp_path_factory.mktemp("verify_data"))


def test_sets_with_one_seed_and_different_arguments_get_different_files(tmp_path):
    small = reproduce.data_path(tmp_path, "lhc", "check", {"seed": 3102, "image_size": 64})
    large = reproduce.data_path(tmp_path, "lhc", "check", {"seed": 3102, "image_size": 224})
    again = reproduce.data_path(tmp_path, "lhc", "check", {"image_size": 64, "seed": 3102})
    assert small != large and small == again and small.parent == tmp_path


def test_verify_tolerance_counts_samples_for_fractions_and_scales_the_rest():
    galaxy = {"stamps": 60, "isolated_stamps": 7, "fraction_vae_better": 58 / 60,
              "fraction_vae_better_isolated": 6 / 7, "vae_log_prob_mean": -7179.2}
    allowed = lambda metric, want: reproduce.verify_tolerance(metric, want, galaxy)  # noqa: E731
    # One stamp of 60 flipping is round-off; three is a changed model.
    assert reproduce.compare({**galaxy, "fraction_vae_better": 59 / 60}, galaxy, allowed) == []
    assert reproduce.compare({**galaxy, "fraction_vae_better": 55 / 60}, galaxy, allowed)
    # A group's fraction is counted over the group: one of 7 isolated stamps may flip.
    assert reproduce.compare({**galaxy, "fraction_vae_better_isolated": 1.0}, galaxy,
                             allowed) == []
    assert reproduce.compare({**galaxy, "fraction_vae_better_isolated": 3 / 7}, galaxy, allowed)
    # A scale is relative: 0.2% of it is a regenerated set, 5% is not.
    assert reproduce.compare({**galaxy, "vae_log_prob_mean": -7193.5}, galaxy, allowed) == []
    assert reproduce.compare({**galaxy, "vae_log_prob_mean": -7538.0}, galaxy, allowed)

    # A tiny MSE fails by its own scale, not by an absolute 5e-3 it could never reach.
    dcae = {"maps": 200, "mse_dcae": 5.8e-6}
    worse = reproduce.compare({"maps": 200, "mse_dcae": 6.4e-6}, dcae,
                              lambda m, w: reproduce.verify_tolerance(m, w, dcae))
    assert worse == ["mse_dcae: measured 6.4e-06, manifest 5.8e-06 (allowed difference 5.8e-08)"]
    missing = reproduce.compare({}, dcae, lambda m, w: 0.0)
    assert missing == ["maps: in the manifest, not measured", "mse_dcae: in the manifest, "
                       "not measured"]


@pytest.mark.slow  # regenerates each entry's check set with the case's simulator
@pytest.mark.parametrize("key", SHIPPED)
def test_shipped_model_reproduces_manifest_metrics(key, verify_data):
    outcome = reproduce.verify(key, data_dir=verify_data)
    assert outcome["problems"] == [], outcome


_OTHER_ONEDNN = """
import json, resource, sys
from tensorflow.python.util import _pywrap_util_port
from modelzoo import reproduce
problems = {key: reproduce.verify(key, data_dir=sys.argv[1])["problems"] for key in sys.argv[2:]}
print(json.dumps({"onednn": bool(_pywrap_util_port.IsMklEnabled()), "problems": problems,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""

# Models whose evaluation holds gigabytes (224 x 224 events, 384 x 576 maps, 3-D volumes, the
# galaxy baseline's fits): an interpreter each, as TensorFlow keeps what an evaluation allocated.
# The others share one interpreter (a TensorFlow start-up each would cost more than they do).
_HEAVY = {"lhc_cnn_15pf", "galaxy_vae", "climate_segmenter", "cosmoflow"}


def _interpreters(keys: list[str]) -> list[list[str]]:
    heavy = [[key] for key in keys if manifest.load_manifest()[key]["model"] in _HEAVY]
    light = [key for key in keys if [key] not in heavy]
    return heavy + ([light] if light else [])


@pytest.mark.slow  # re-evaluates every entry on the check sets the test above generated
def test_shipped_entries_verify_with_onednn_switched(verify_data):
    # oneDNN's kernels (on by default on some CPUs, off on others) change round-off: verify's
    # tolerances must pass the shipped weights both ways, so the run in a fresh interpreter
    # takes the opposite of this one's setting.
    import os
    import subprocess
    import sys

    from tensorflow.python.util import _pywrap_util_port

    here = bool(_pywrap_util_port.IsMklEnabled())
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0" if here else "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    problems, peaks = {}, {}
    groups = _interpreters(SHIPPED)
    assert sorted(sum(groups, [])) == sorted(SHIPPED)
    for keys in groups:
        done = subprocess.run([sys.executable, "-c", _OTHER_ONEDNN, verify_data, *keys], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, (keys, done.stderr[-3000:])
        report = json.loads(done.stdout.splitlines()[-1])
        assert report["onednn"] is not here, keys
        problems.update(report["problems"])
        peaks[", ".join(keys)] = round(report["peak_rss_gb"], 2)
    print(f"\npeak memory per interpreter (GB): {peaks}")
    assert problems == {key: [] for key in SHIPPED}, problems


def _degraded_copy(key: str, folder) -> None:
    """``folder`` as a pretrained folder where entry ``key``'s last kernel is zeroed: one
    weight tensor, the one nearest the output, so every metric of the model moves."""
    import keras

    entry = manifest.load_manifest()[key]
    model = modelzoo.get(entry["model"], weights=entry["tag"])
    kernel = [var for var in model.weights if var.path.endswith("kernel")][-1]
    kernel.assign(keras.ops.zeros_like(kernel))
    path = folder / entry["file"]
    pretrained.write_compact(model, path)
    degraded = {**entry, "sha256": pretrained.sha256_of(path), "bytes": path.stat().st_size}
    (folder / manifest.MANIFEST).write_text(json.dumps({key: degraded}))


DEFAULTS = [k for k in SHIPPED if manifest.load_manifest()[k].get("default")]


@pytest.mark.slow  # evaluates each default entry on its check set (shared with the test above)
@pytest.mark.parametrize("key", DEFAULTS)
def test_verify_fails_on_degraded_weights(key, verify_data, tmp_path, monkeypatch):
    _degraded_copy(key, tmp_path)
    monkeypatch.setattr(manifest, "PRETRAINED_DIR", tmp_path)
    assert reproduce.verify(key, data_dir=verify_data)["problems"]



def test_published_comparisons_follow_their_intervals():
    # The words a reader sees (ahead / tied / behind) are the intervals', and every interval
    # holds the number it is published with.
    for key, entry in manifest.load_manifest().items():
        intervals = entry.get("intervals") or {}
        for metric, (low, high) in intervals.items():
            assert low <= entry["metrics"][metric] <= high, (key, metric)
        for item in entry.get("comparisons", []):
            assert item["metric"] in intervals, (key, item)
            low, high = item["interval"]
            assert low <= item["difference"] <= high, (key, item)
            assert item["verdict"] == pretrained.verdict(item["interval"]), (key, item)
        if intervals:
            assert entry["interval_method"] and entry["eval_size"], key
    assert pretrained.verdict([0.01, 0.2]) == "ahead"
    assert pretrained.verdict([-0.01, 0.2]) == "tied"
    assert pretrained.verdict([-0.3, -0.2]) == "behind"


def test_stored_baseline_fits_were_made_on_the_training_sets():
    # A baseline an entry carries already fitted (re-scored by verify without re-simulating
    # its training set) was fitted on that training set, as the model was trained: never on
    # the evaluated samples, and on the training rows only.
    stored = {k: e for k, e in manifest.load_manifest().items() if e.get("baseline_fit")}
    assert "cosmoflow.synthetic32_v1" in stored
    for key, entry in stored.items():
        fit, train = entry["baseline_fit"], entry["data_recipe"]["train"]
        assert entry["metrics"]["baseline_fitted_on"] == fit["fitted_on"], key
        assert entry["check_metrics"]["baseline_fitted_on"] == fit["fitted_on"], key
        assert fit["volumes"] == round(train["n_volumes"] * (1 - train["val_fraction"])), key
        assert fit["fitted_on"].startswith(f"the {fit['volumes']} training volumes of "), key


def test_data_written_by_a_readme_command_matches_its_entry(tmp_path):
    # The galaxy README's `modelzoo data galaxy --population prominent` must record the
    # population it drew, or evaluating the shipped entry on it warns that the data differ.
    import argparse

    from modelzoo.galaxy import generator

    parser = argparse.ArgumentParser()
    generator.add_arguments(parser)
    path = tmp_path / "stamps.h5"
    generator.run(parser.parse_args(["--output", str(path), "--count", "1", "--population",
                                     "prominent"]))
    assert reproduce.unlike_training("galaxy_vae.galsim_prominent_v3", path) is None
    generator.run(parser.parse_args(["--output", str(path), "--count", "1"]))
    assert "population=\"default\"" in reproduce.unlike_training(
        "galaxy_vae.galsim_prominent_v3", path)


RESULTS_PAGE = manifest.PRETRAINED_DIR.parent / "docs" / "results.md"


def test_results_page_is_current():
    assert RESULTS_PAGE.read_text() == pretrained.results_page("../"), (
        f"docs/results.md is stale: run {pretrained.RESULTS_COMMAND}")


@pytest.mark.slow  # a fresh interpreter, to see what the command imports
def test_results_command_checks_the_page_without_tensorflow():
    import subprocess
    import sys

    page = RESULTS_PAGE
    code = ("import sys; from modelzoo import cli; "
            f"code = cli.main(['pretrained', 'table', '--output', {str(page)!r}, '--check']); "
            "print(code, 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["0", "False"], done.stderr[-2000:]


def test_results_table_marks_entries_without_intervals(tmp_path, monkeypatch):
    _fake_shipped(tmp_path, monkeypatch)
    entries = json.loads((tmp_path / "manifest.json").read_text())
    measured = {**entries["lhc_cnn.test"], "tag": "measured", "eval_size": "10 events",
                "metrics": {"accuracy": 0.9},
                "intervals": {"accuracy": [0.8, 0.95]},
                "comparisons": [{"metric": "accuracy", "against": "selection", "difference": 0.1,
                                 "interval": [-0.02, 0.2], "verdict": "tied"}]}
    (tmp_path / "manifest.json").write_text(json.dumps({**entries, "lhc_cnn.measured": measured}))
    rows = pretrained.results_table().splitlines()
    assert rows[2] == ("| [`lhc_cnn.measured`](modelzoo/lhc/README.md) | `accuracy` | 0.9 | "
                       "[0.8, 0.95] | selection | +0.1 [-0.02, 0.2] | **tied** | 10 events |")
    assert rows[3].startswith("| [`lhc_cnn.test`](modelzoo/lhc/README.md) | | | *no interval* |")


def test_every_builtin_model_ships_default_weights():
    shipped = manifest.load_manifest()
    defaults = {e["model"] for e in shipped.values() if e.get("default")}
    assert set(modelzoo.list_models()) <= defaults
