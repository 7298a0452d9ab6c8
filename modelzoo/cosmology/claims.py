"""The cosmology entries' published claims, from their evaluations: ``python -m
modelzoo.cosmology.claims FIGURES`` reads the ``metrics.json`` that ``modelzoo evaluate ...
--output FIGURES/<model>`` wrote for each default entry (``scripts/cosmology_claims.sh`` runs
them on the entries' fixed evaluation sets) and writes, into the manifest entry of each, the
metrics ``pretrained verify`` re-checks, their 95% ``intervals``, the ``comparisons`` with the
baselines (and the paper where it gave a number) worded ahead / tied / behind by the interval,
``interval_method`` and ``eval_size`` (the keys of the manifest's interval schema).

Differences are oriented so that positive favours the zoo's model: accuracy minus the
baseline's, the baseline's error minus the model's, one minus the model's share of a
baseline's MSE.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from modelzoo import manifest

ENTRIES = {"cosmo_cnn": "cosmo_cnn.synthetic_v1",
           "cosmo_cnn_regression": "cosmo_cnn_regression.synthetic_v1",
           "cosmo_dcae": "cosmo_dcae.synthetic_v1",
           "cosmoflow": "cosmoflow.synthetic32_v1"}
BASELINE_NAMES = {"power_spectrum": "power-spectrum", "peaks": "peak-count + moments",
                  "train_mean": "training-mean"}


def verdict(low: float, high: float) -> str:
    """ahead if the whole interval favours the model, behind if it all disfavours it."""
    return "ahead" if low > 0 else "behind" if high < 0 else "tied"


def _comparison(metric: str, against: str, difference: float, low: float,
                high: float) -> dict[str, Any]:
    return {"metric": metric, "against": against, "difference": difference,
            "interval": [low, high], "verdict": verdict(low, high)}


def _interval(m: dict[str, Any], key: str) -> list[float]:
    return [m[f"{key}_lo"], m[f"{key}_hi"]]


def classification(m: dict[str, Any]) -> dict[str, Any]:
    methods = ("cnn", "power_spectrum", "peaks")
    comparisons = [
        _comparison("accuracy_cnn", f"accuracy_{b} ({BASELINE_NAMES[b]} logistic regression, "
                    f"fitted on {m['baseline_fitted_on']})", m[f"accuracy_cnn_minus_{b}"],
                    *_interval(m, f"accuracy_cnn_minus_{b}"))
        for b in methods[1:]]
    paper = m["accuracy_seed_published"]
    comparisons.append(_comparison(
        "accuracy_cnn", "accuracy_seed_published (the seed's 80% on its own simulated maps; "
        "no interval; other maps, context only)", m["accuracy_cnn"] - paper,
        m["accuracy_cnn_lo"] - paper, m["accuracy_cnn_hi"] - paper))
    return {
        "metrics": {k: m[k] for k in ("maps", "classes", "chance", "accuracy_seed_published",
                                      "baseline_fitted_on", *(f"accuracy_{x}" for x in methods))},
        "intervals": {f"accuracy_{x}": _interval(m, f"accuracy_{x}") for x in methods},
        "interval_method": f"bootstrap over the {m['maps']} evaluation maps (independent "
                           "draws of the two cosmologies), 2000 resamples, percentile; "
                           "differences paired on the same resamples",
        "comparisons": comparisons,
        "eval_size": f"{m['maps']} maps, {m['classes']} classes (cosmologies)",
    }


def regression(m: dict[str, Any]) -> dict[str, Any]:
    keys = [f"rmse_{p}_{x}" for p in ("omega_m", "sigma_8")
            for x in ("cnn", "power_spectrum", "peaks")]
    comparisons = [
        _comparison(f"rmse_{p}_cnn", f"rmse_{p}_{b} ({BASELINE_NAMES[b]} ridge regression, "
                    f"fitted on {m['baseline_fitted_on']})", -m[f"rmse_{p}_cnn_minus_{b}"],
                    -m[f"rmse_{p}_cnn_minus_{b}_hi"], -m[f"rmse_{p}_cnn_minus_{b}_lo"])
        for p in ("omega_m", "sigma_8") for b in ("power_spectrum", "peaks")]
    return {
        "metrics": {k: m[k] for k in ("maps", "cosmologies", "baseline_fitted_on", *keys)},
        "intervals": {k: _interval(m, k) for k in keys},
        "interval_method": f"bootstrap over the {m['cosmologies']} evaluation cosmologies "
                           "(whole cosmologies resampled: the maps of one share its "
                           "parameters), 2000 resamples, percentile; differences paired",
        "comparisons": comparisons,
        "eval_size": f"{m['maps']} maps of {m['cosmologies']} cosmologies unseen in training",
    }


def reconstruction(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("maps", "keep_fraction", "mse_dcae", "mse_corrupted_input", "mse_ratio",
            "fraction_maps_improved", "mse_gaussian_filter", "gaussian_filter_sigma_pixels",
            "mse_ratio_to_filter", "fraction_maps_better_than_filter")
    return {
        "metrics": {k: m[k] for k in keys},
        "intervals": {"mse_ratio": _interval(m, "mse_ratio"),
                      "mse_ratio_to_filter": _interval(m, "mse_ratio_to_filter")},
        "interval_method": f"BCa bootstrap over the {m['maps']} evaluation maps (independent "
                           "draws), 1000 resamples, of the ratio of mean MSEs, both methods "
                           "on the same resamples",
        "comparisons": [
            _comparison("mse_ratio", "the corrupted input itself (identity), as 1 - MSE ratio",
                        1 - m["mse_ratio"], 1 - m["mse_ratio_hi"], 1 - m["mse_ratio_lo"]),
            _comparison("mse_ratio_to_filter", "a Gaussian filter of the same input (width "
                        f"{m['gaussian_filter_sigma_pixels']} px, chosen on training maps), as "
                        "1 - MSE ratio", 1 - m["mse_ratio_to_filter"],
                        1 - m["mse_ratio_to_filter_hi"], 1 - m["mse_ratio_to_filter_lo"]),
        ],
        "eval_size": f"{m['maps']} maps",
    }


def cosmoflow(m: dict[str, Any]) -> dict[str, Any]:
    names = ("omega_m", "sigma_8", "n_s", "h", "average")
    methods = ("cnn", "power_spectrum", "train_mean")
    keys = [f"{s}_{p}_{x}" for s in ("mae", "rmse") for p in names for x in methods]
    fitted = m["baseline_fitted_on"]
    fitted = fitted if fitted.startswith("out of fold") else f"fitted on {fitted}"
    kinds = {"power_spectrum": "power-spectrum ridge regression", "train_mean": "training mean"}
    comparisons = [
        _comparison(f"mae_{p}_cnn", f"mae_{p}_{b} ({kinds[b]}, {fitted})",
                    -m[f"mae_{p}_cnn_minus_{b}"], -m[f"mae_{p}_cnn_minus_{b}_hi"],
                    -m[f"mae_{p}_cnn_minus_{b}_lo"])
        for p in names for b in methods[1:]]
    cosmologies = m.get("cosmologies")
    return {
        "metrics": {k: m[k] for k in ("volumes", "split", "baseline_fitted_on",
                                      "mae_mlperf_target_context", *keys)},
        "intervals": {k: _interval(m, k) for k in keys},
        "interval_method": f"bootstrap over the {cosmologies} evaluation cosmologies (whole "
                           "cosmologies resampled), 1000 resamples, percentile; differences "
                           "paired",
        "comparisons": comparisons,
        "eval_size": f"{m['volumes']} volumes of {cosmologies} cosmologies unseen in training",
    }


CLAIMS = {"cosmo_cnn": classification, "cosmo_cnn_regression": regression,
          "cosmo_dcae": reconstruction, "cosmoflow": cosmoflow}


def entry_claims(model: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """The manifest keys of ``model``'s entry from its evaluation's ``metrics``."""
    return CLAIMS[model](metrics)


def write(figures: str, check: str | None = None) -> list[str]:
    """Update each entry whose ``FIGURES/<model>/metrics.json`` exists (its ``baseline_fit``
    from ``baseline_fit.json`` beside it, and its ``check_metrics`` from
    ``CHECK/<model>/metrics.json`` where the entry has a check set)."""
    entries = manifest.load_manifest()
    written = []
    for model, key in ENTRIES.items():
        path = os.path.join(figures, model, "metrics.json")
        if not os.path.exists(path):
            continue
        with open(path) as fh:
            claims = entry_claims(model, json.load(fh))
        entries[key].update(claims)
        # A baseline fitted on the training set travels with the entry, so that verify can
        # re-score it without that set (modelzoo.reproduce.evaluate_model).
        fitted = os.path.join(figures, model, "baseline_fit.json")
        entries[key].pop("baseline_fit", None)
        if os.path.exists(fitted):
            with open(fitted) as fh:
                entries[key]["baseline_fit"] = json.load(fh)
        checked = os.path.join(check or "", model, "metrics.json")
        if check and "check" in entries[key]["data_recipe"] and os.path.exists(checked):
            with open(checked) as fh:
                entries[key]["check_metrics"] = entry_claims(model, json.load(fh))["metrics"]
        written.append(key)
    target = manifest.PRETRAINED_DIR / manifest.MANIFEST
    target.write_text(json.dumps(entries, indent=2, default=float) + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelzoo.cosmology.claims",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("figures", help="folder with <model>/metrics.json from modelzoo evaluate")
    parser.add_argument("--check", help="the same for the entries' check sets")
    args = parser.parse_args(argv)
    for key in write(args.figures, args.check):
        print(f"updated {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
