"""Training and the comparison for CosmoFlow (``cosmoflow``).

Training follows the MLPerf HPC reference through the zoo's one training path (recipe
``recipes/cosmoflow.yaml``): MSE on the four targets in [-1, 1], mean absolute error as the
metric, SGD with momentum, the learning rate scaled linearly with the global batch, warmed up,
decayed in steps.

The comparison (``evaluate``): per-parameter MAE and RMSE of the CNN on held-out volumes (other
cosmologies than any training volume), next to a power-spectrum baseline on the same volumes:
log P(k) of each redshift's overdensity in log-spaced k bins, regressed with scikit-learn's
cross-validated ridge regression, and the training targets' mean. Both are fitted as the CNN
was trained: on the training volumes of the CNN's training set (``data.baseline_train``), or
taken already fitted from ``data.baseline_fit`` (the parameters such a fit wrote, which a
manifest entry carries so that ``pretrained verify`` re-scores the baseline without
re-simulating the training set); without either, on the training split of the evaluated file
(``--split val``), or out of fold by cosmology on a separate evaluation file. Intervals are 95%
bootstrap intervals that resample whole cosmologies (the same resamples for all methods, so
differences are paired). The MLPerf target (MAE 0.124 on the benchmark's N-body volumes) is
quoted as context only.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import keras
import numpy as np

from modelzoo.cosmology import comparison
from modelzoo.cosmology.comparison import cosmology_groups
from modelzoo.cosmology.cosmoflow_reader import PARAMETERS, H5Volumes, open_volumes
from modelzoo.cosmology.cosmoflow_statistics import count_spectra, k_bins
from modelzoo.distributed import ProcessGroup
from modelzoo.errors import ConfigError
from modelzoo.tasks import Datasets, Task, gather_shards, split_streams

MLPERF_TARGET_MAE = 0.124  # MLPerf HPC CosmoFlow quality target (reference configs/cosmo.yaml)


@functools.lru_cache(maxsize=8)
def _opened(path: str, stamp: tuple, data_key: str):
    import json

    return open_volumes(path, json.loads(data_key))


def volumes_of(path: str, data_cfg: dict):
    """The checked volumes of ``path`` (opened once per file version and reader settings: the
    TFRecord check reads every record)."""
    import json

    path = os.fspath(path)
    stat = os.stat(path) if os.path.exists(path) else None
    stamp = (stat.st_mtime_ns, stat.st_size) if stat else ()
    keys = ("val_fraction", "sample_shape", "validate", "samples_per_file")
    return _opened(path, stamp, json.dumps({k: data_cfg.get(k) for k in keys if k in data_cfg}))


def error_table(truth: np.ndarray, predictions: dict[str, np.ndarray], *, resamples: int = 1000,
                seed: int = 0) -> dict[str, float]:
    """:func:`modelzoo.cosmology.comparison.error_table` over the four CosmoFlow targets."""
    return comparison.error_table(truth, predictions, PARAMETERS, resamples=resamples, seed=seed)


def out_of_fold_mean(targets: np.ndarray, folds: int = 10) -> np.ndarray:
    """Each sample's prediction by the mean of the targets of the other cosmologies' folds
    (the same folds by cosmology as :func:`spectrum_baseline`): the training mean of a
    baseline that never saw the cosmology it predicts."""
    from sklearn.model_selection import GroupKFold

    groups = cosmology_groups(targets)
    predicted = np.empty_like(np.asarray(targets, np.float64))
    splitter = GroupKFold(min(folds, int(groups.max()) + 1))
    for train, test in splitter.split(targets, groups=groups):
        predicted[test] = targets[train].mean(axis=0)
    return predicted


def _spectrum_regression():
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15)))


def spectrum_baseline(features: np.ndarray, targets: np.ndarray,
                      test_features: np.ndarray | None = None, folds: int = 10) -> np.ndarray:
    """Targets predicted by a ridge regression (its regularisation chosen by cross-validation)
    on power-spectrum ``features``: of ``test_features`` after fitting on (``features``,
    ``targets``), or, without test features, out of fold over ``features`` by cosmology (each
    predicted by a fit that saw no volume of its cosmology)."""
    from sklearn.model_selection import GroupKFold, cross_val_predict

    if test_features is None:
        groups = cosmology_groups(targets)
        folds = GroupKFold(min(folds, int(groups.max()) + 1))
        predicted = cross_val_predict(_spectrum_regression(), features, targets, cv=folds,
                                      groups=groups)
    else:
        predicted = _spectrum_regression().fit(features, targets).predict(test_features)
    return np.clip(predicted, -1.2, 1.2)


FIT_FORMAT = "modelzoo-cosmoflow-baseline-v1"


def fit_baselines(features: np.ndarray, targets: np.ndarray, *, npix: int, box_side: float,
                  bins: int, fitted_on: str) -> dict[str, Any]:
    """The power-spectrum ridge regression and the training mean fitted on (``features``,
    ``targets``), as plain numbers (JSON): what :func:`fitted_predictions` needs to score other
    volumes without the training set, and the grid and k bins the features were measured on."""
    regression = _spectrum_regression().fit(features, targets)
    scaler, ridge = regression[0], regression[-1]
    return {"format": FIT_FORMAT, "fitted_on": fitted_on, "volumes": int(len(targets)),
            "npix": int(npix), "box_side": float(box_side), "bins": int(bins),
            "feature_mean": scaler.mean_.tolist(), "feature_scale": scaler.scale_.tolist(),
            "coefficients": ridge.coef_.tolist(), "intercept": ridge.intercept_.tolist(),
            "alpha": float(ridge.alpha_), "train_mean": targets.mean(axis=0).tolist()}


def load_fit(fit: dict[str, Any] | str | os.PathLike, *, npix: int, box_side: float,
             bins: int, where: str) -> dict[str, Any]:
    """A fit written by :func:`fit_baselines` (the dict, or a JSON file holding it), checked
    against the evaluated volumes' grid and k bins; ``where`` names those volumes."""
    import json

    source = "the baseline fit"
    if not isinstance(fit, dict):
        source = os.fspath(fit)
        try:
            with open(source) as fh:
                fit = json.load(fh)
        except (OSError, ValueError) as err:
            raise ConfigError(f"data.baseline_fit {source}: cannot be read as a fitted "
                              f"baseline ({err}); expected the baseline_fit.json that "
                              "modelzoo evaluate writes") from None
    if not isinstance(fit, dict) or fit.get("format") != FIT_FORMAT:
        raise ConfigError(f"data.baseline_fit {source}: not a fitted CosmoFlow baseline "
                          f"(format {FIT_FORMAT!r} expected)")
    want = {"npix": int(npix), "box_side": float(box_side), "bins": int(bins)}
    have = {key: fit.get(key) for key in want}
    if have != want:
        raise ConfigError(f"data.baseline_fit {source}: fitted on volumes with {have}, but "
                          f"{where} has {want}; expected a fit on volumes of the same grid")
    return fit


def fitted_predictions(fit: dict[str, Any], features: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(power-spectrum ridge, training mean) predictions of ``features`` by a stored fit: the
    pipeline's own arithmetic (standardise, linear map), clipped as :func:`spectrum_baseline`."""
    scaled = (features - np.asarray(fit["feature_mean"])) / np.asarray(fit["feature_scale"])
    predicted = scaled @ np.asarray(fit["coefficients"]).T + np.asarray(fit["intercept"])
    mean = np.broadcast_to(np.asarray(fit["train_mean"], np.float64), predicted.shape)
    return np.clip(predicted, -1.2, 1.2), mean


def _read_blocks(volumes, split: str, rows: tuple[int, int], block: int = 64):
    for start in range(rows[0], rows[1], block):
        yield volumes.read(split, (start, min(start + block, rows[1])))


class CosmoFlowRegression(Task):
    """The four cosmological parameters of a dark-matter volume (Mathuriya et al. SC18)."""

    name = "cosmoflow_regression"
    tune_monitor = "val_loss"
    #: The data keys :func:`modelzoo.reproduce.evaluate_model` fills from a manifest entry: its
    #: stored baseline fit where it has one, else its training set (re-simulated).
    training_file_key = "baseline_train"
    fitted_baseline_key = "baseline_fit"
    model_outputs = {"parameters": None}

    def open(self, path: str, data_cfg: dict):
        return volumes_of(path, data_cfg)

    def model_config(self, path: str, data_cfg: dict) -> dict[str, Any]:
        return {"input_shape": list(volumes_of(path, data_cfg).sample_shape)}

    def datasets(self, path: str, data_cfg: dict, batch_size: int, group: ProcessGroup,
                 seed: int, first_epoch: int) -> Datasets:
        volumes = volumes_of(path, data_cfg)
        shuffle = bool(data_cfg.get("shuffle", True))
        if isinstance(volumes, H5Volumes):
            return split_streams(
                volumes.source, lambda block: (block["x"], block["y"].astype(np.float32)),
                volumes.rows("train"), volumes.rows("val"), batch_size=batch_size, group=group,
                seed=seed, first_epoch=first_epoch, shuffle=shuffle, path=path,
                noun="volumes", block_rows=16)
        per_rank = volumes.rank_volumes("train", group)
        steps = min(per_rank) // batch_size
        if steps < 1:
            raise ConfigError(f"{path}: the training files give the ranks {per_rank} volumes, "
                              f"fewer than one batch of {batch_size} each; lower the batch size "
                              "or use more files")
        # A rank without validation files has no val_ metrics; AverageMetrics averages over
        # the ranks that have them.
        train = volumes.dataset("train", batch_size, group, seed=seed, shuffle=shuffle,
                                repeat=True, first_epoch=first_epoch, steps_per_epoch=steps,
                                shuffle_buffer=int(data_cfg.get("shuffle_buffer", 64)))
        validation, validation_steps = None, None
        if volumes.rank_volumes("val", group)[group.rank]:
            validation = volumes.dataset("val", batch_size, group, seed=seed, shuffle=False,
                                         repeat=False)
            validation_steps = -(-volumes.rank_volumes("val", group)[group.rank] // batch_size)
        return Datasets(train, steps, validation, volumes.num_volumes("train"),
                        volumes.num_volumes("val"), validation_steps)

    def compile(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                cfg: dict) -> None:
        model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])

    def inputs(self, path: str, data_cfg: dict, rows: tuple[int, int]) -> dict[str, np.ndarray]:
        """Counts of ``rows`` of all volumes (training files first), as the model takes them,
        and their targets as ``values``."""
        volumes = volumes_of(path, data_cfg)
        rows = (rows[0], min(rows[1], volumes.num_volumes("all")))
        x, y = volumes.read("all", rows)
        return {"inputs": x, "values": y}

    def outputs(self, model: keras.Model, volumes, data_cfg: dict, rows: tuple[int, int],
                group: ProcessGroup, split: str = "all") -> dict[str, np.ndarray]:
        """Predicted and true targets of ``rows`` of ``split`` (training files first for
        ``all``), computed by shards and gathered on every rank in row order."""
        def compute(shard):
            preds, truth = [], []
            for x, y in _read_blocks(volumes, split, shard, block=16):
                preds.append(model.predict(x, verbose=0, batch_size=8))
                truth.append(y)
            return {"output": np.concatenate(preds).astype(np.float64),
                    "truth": np.concatenate(truth).astype(np.float64)}

        width = model.output_shape[-1]
        return gather_shards(rows, group, compute, {"output": ((width,), "float64"),
                                                    "truth": ((width,), "float64")})

    def predict(self, model: keras.Model, path: str, data_cfg: dict,
                group: ProcessGroup) -> dict[str, np.ndarray]:
        volumes = volumes_of(path, data_cfg)
        out = self.outputs(model, volumes, data_cfg, (0, volumes.num_volumes("all")), group)
        return {"parameters": out["output"].astype(np.float32)}

    def _fit(self, volumes, data_cfg: dict, split: str, grid: dict,
             edges: np.ndarray) -> dict[str, Any]:
        """The baselines fitted on the training volumes of ``data.baseline_train`` (the file
        the CNN trained on: its first 1 - ``val_fraction``, whole cosmologies), else on the
        other split of the evaluated file (``train`` for ``val``, ``val`` for ``train``)."""
        limit = int(data_cfg.get("baseline_train_volumes", 4096))
        if data_cfg.get("baseline_train"):
            train_path = os.fspath(data_cfg["baseline_train"])
            source, fit_split = volumes_of(train_path, data_cfg), "train"
            if source.sample_shape != volumes.sample_shape:
                raise ConfigError(
                    f"data.baseline_train {train_path}: volumes of {source.sample_shape}, but "
                    f"the evaluated ones are {volumes.sample_shape}; expected the training "
                    "file of the evaluated model")
            name = os.path.basename(train_path.rstrip(os.sep))
            count = min(source.num_volumes("train"), limit)
            fitted_on = f"the {count} training volumes of {name}"
        else:
            source, fit_split = volumes, "train" if split == "val" else "val"
            count = min(volumes.num_volumes(fit_split), limit)
            fitted_on = f"{count} {fit_split} volumes"
        if count == 0:
            raise ConfigError(f"no {fit_split} volumes to fit the baselines on")

        features, targets = [], []
        for x, y in _read_blocks(source, fit_split, (0, count)):
            features.append(count_spectra(x, grid["box_side"], edges))
            targets.append(y)
        return fit_baselines(np.concatenate(features), np.concatenate(targets).astype(np.float64),
                             fitted_on=fitted_on, **grid)

    def evaluate(self, model: keras.Model, path: str, data_cfg: dict, split: str,
                 output_dir: str | None, group: ProcessGroup) -> dict[str, Any]:
        """The comparison on ``split``, the baselines fitted as the module says (the fit used is
        written to ``output_dir/baseline_fit.json``, for ``data.baseline_fit``). The
        CNN never trained on an evaluation file."""
        volumes = volumes_of(path, data_cfg)
        count = volumes.num_volumes(split)
        if count == 0:
            raise ConfigError(f"{path}: no {split} volumes to evaluate")
        limit = data_cfg.get("eval_max_volumes")
        rows = (0, min(count, int(limit)) if limit else count)
        out = self.outputs(model, volumes, data_cfg, rows, group, split)
        truth = out["truth"]
        box_side = float(data_cfg.get("box_side", 128.0))
        edges = k_bins(volumes.sample_shape[0], box_side, int(data_cfg.get("baseline_bins", 8)))

        def spectra(split_name: str, rows_of: tuple[int, int]):
            parts = [(count_spectra(x, box_side, edges), y)
                     for x, y in _read_blocks(volumes, split_name, rows_of)]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

        test_features, _ = spectra(split, rows)
        grid = {"npix": volumes.sample_shape[0], "box_side": box_side, "bins": len(edges) - 1}
        fit = None
        if data_cfg.get("baseline_fit"):
            fit = load_fit(data_cfg["baseline_fit"], where=path, **grid)
        elif data_cfg.get("baseline_train") or split != "all":
            fit = self._fit(volumes, data_cfg, split, grid, edges)
        if fit is None:
            baseline = spectrum_baseline(test_features, truth)
            fitted_on = "out of fold (10 folds by cosmology) over the evaluated volumes"
            mean_only = out_of_fold_mean(truth)
        else:
            baseline, mean_only = fitted_predictions(fit, test_features)
            fitted_on = fit["fitted_on"]
            if output_dir:  # what verify re-scores with, without the training set
                import json

                with open(os.path.join(output_dir, "baseline_fit.json"), "w") as fh:
                    json.dump(fit, fh, indent=1)
        predictions = {"cnn": out["output"], "power_spectrum": baseline,
                       "train_mean": np.broadcast_to(mean_only, truth.shape)}
        result: dict[str, Any] = {
            "volumes": int(len(truth)), "cosmologies": int(cosmology_groups(truth).max() + 1),
            "split": split, "baseline_fitted_on": fitted_on,
            **error_table(truth, predictions, resamples=int(data_cfg.get("bootstrap", 1000))),
            "mae_mlperf_target_context": MLPERF_TARGET_MAE,
        }
        if output_dir:  # rank 0 only; the core writes metrics.json beside the figure
            from modelzoo.cosmology.cosmoflow_analysis import prediction_figure

            prediction_figure(truth, predictions, os.path.join(output_dir, "parameters.png"))
        return result
