"""Training and the paper's comparisons for convergence maps.

* :class:`MapReconstruction` (``cosmo_dcae``): maps corrupted with binomial noise (each pixel
  kept with probability ``data.keep_fraction``, else zeroed) are rebuilt under MSE, towards the
  noiseless map where the file has one (then with fresh shape noise every step); evaluation:
  MSE of the reconstruction against the clean map next to the corrupted input's (identity), the
  noisy map's and a Gaussian filter's, ratios with bootstrap intervals, and the seed's figures
  8 (map / reconstruction) and 9 (saliency).
* :class:`CosmologyClassification` (``cosmo_cnn``): accuracy of the CNN next to logistic
  regressions on the binned power spectrum and on peak counts + moments of the same maps, the
  seed's 80%, and figure 10 (t-SNE of the CNN's features); intervals over maps.
* :class:`ParameterRegression` (``cosmo_cnn_regression``): RMSE of (Omega_m, sigma_8) against
  ridge regressions on the same statistics (Gupta et al. 2018's comparison); intervals over
  cosmologies.

The baselines are fitted as the network was trained: on the training rows of the network's
training file (``data.baseline_train``; ``modelzoo pretrained verify`` passes the entry's), and
score the same evaluated maps (:meth:`_MapTask.baselines`).

Every task also has ``inputs(path, data_cfg, rows)``: network inputs (and labels / clean
targets) for ``modelzoo explain``.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import keras
import numpy as np

from modelzoo import interpret
from modelzoo.cosmology import baseline
from modelzoo.cosmology.comparison import accuracy_table, cosmology_groups, error_table
from modelzoo.cosmology.reader import PARAMETERS, MassMaps, open_mass_maps
from modelzoo.cosmology.statistics import binned_power_spectrum, ell_bins
from modelzoo.distributed import ProcessGroup
from modelzoo.errors import ConfigError
from modelzoo.hdf5 import stream
from modelzoo.tasks import (
    ClassLabels,
    Datasets,
    Task,
    augment_training,
    augmentations,
    gather_shards,
    select_rows,
    shard_rows,
    split_rows,
    split_streams,
    square_dihedral,
)

SEED_ACCURACY = 0.80  # Prabhat 2017 (seed): two cosmological models, 5,000 maps


def corrupt(maps: np.ndarray, keep_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Binomial corruption: every pixel kept with probability ``keep_fraction``, else zeroed."""
    if not 0.0 < keep_fraction <= 1.0:
        raise ConfigError(f"data.keep_fraction must be in (0, 1], got {keep_fraction}")
    return maps * rng.binomial(1, keep_fraction, size=maps.shape).astype(maps.dtype)


def fixed_corruption(maps: np.ndarray, keep_fraction: float, seed: int) -> np.ndarray:
    """:func:`corrupt` with a mask that depends only on each map's content and ``seed``: the
    same evaluation inputs whatever the batching, sharding or row order (drawn with
    ``rng.binomial``, as when the shipped metrics were measured)."""
    out = np.empty_like(maps)
    for i, one in enumerate(maps):
        rng = np.random.default_rng([seed, zlib.crc32(np.ascontiguousarray(one).tobytes())])
        out[i] = corrupt(one, keep_fraction, rng)
    return out


def _keep_fraction(data_cfg: dict) -> float:
    keep = float(data_cfg.get("keep_fraction", 0.7))
    if not 0.0 < keep <= 1.0:
        raise ConfigError(f"data.keep_fraction must be in (0, 1], got {keep}")
    return keep


def _fresh_noise(data_cfg: dict) -> bool:
    value = data_cfg.get("fresh_noise", True)
    if not isinstance(value, bool):
        raise ConfigError(f"data.fresh_noise must be true or false, got {value!r}")
    return value


def _moved_noise(noise, seed):
    """Each noise field of the batch ``(B, S, S, 1)`` rolled by its own random offset along
    both axes (periodic maps) and under a random symmetry of the square, from the stateless
    ``seed``."""
    import tensorflow as tf

    size = tf.shape(noise)[1]
    offsets = tf.random.stateless_uniform(tf.stack([tf.shape(noise)[0], 2]),
                                          seed=tf.bitwise.bitwise_xor(seed, 0x5EED),
                                          maxval=size, dtype=tf.int32)
    rows = (tf.range(size)[None, :] + offsets[:, :1]) % size
    cols = (tf.range(size)[None, :] + offsets[:, 1:]) % size
    noise = tf.gather(noise, rows, axis=1, batch_dims=1)
    noise = tf.gather(noise, cols, axis=2, batch_dims=1)
    return square_dihedral(noise, tf.bitwise.bitwise_xor(seed, 0xD4))


def gaussian_filtered(maps: np.ndarray, keep_fraction: float, sigma: float) -> np.ndarray:
    """Normalised convolution (Knutsson & Westin 1993) of maps whose pixels were zeroed with
    probability 1 - ``keep_fraction``: a Gaussian filter of width ``sigma`` pixels of the map,
    divided by the same filter of its mask of kept pixels (periodic edges, as the maps)."""
    from scipy.ndimage import gaussian_filter

    sigmas = (0, sigma, sigma, 0)
    mask = (maps != 0).astype(np.float64) if keep_fraction < 1 else np.ones(maps.shape)
    weight = gaussian_filter(mask, sigmas, mode="wrap")
    return (gaussian_filter(np.asarray(maps, np.float64), sigmas, mode="wrap")
            / np.maximum(weight, 1e-6)).astype(np.float32)



def compact_png(path: str, max_bytes: int = 200_000, colours: int = 128) -> int:
    """Rewrite the figure at ``path`` with a palette of ``colours`` (maps drawn in one colour
    map lose nothing visible), shrunk by steps of 0.8 until it fits in ``max_bytes``: pixel
    noise, as in a noisy or corrupted map, makes true-colour PNGs of a few panels megabytes.
    Returns the final size."""
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    scale = 1.0
    while True:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image.resize(size, Image.LANCZOS).quantize(colours).save(path, optimize=True)
        written = os.path.getsize(path)
        if written <= max_bytes or scale < 0.2:
            return written
        scale *= 0.8


def recalibrate_batch_norm(model: keras.Model, inputs_of, rows: tuple[int, int],
                           group: ProcessGroup, batch_size: int = 64) -> dict[str, float]:
    """Sets every BatchNormalization layer's moving mean and variance to the exact statistics of
    its inputs over ``rows`` (all ranks' shards together; "precise BN", Wu & Johnson 2021,
    arXiv:2105.07576), layer by layer in model order.

    The CNN's pooled features differ between cosmologies by a few per cent, so the noise in
    moving averages of batch statistics moves its decision threshold; exact population
    statistics remove that, and every rank ends with the same values. ``inputs_of(lo, hi)``
    gives the network inputs of rows lo..hi.
    """
    lo, hi = shard_rows(rows, group)
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for index, layer in enumerate(layers):
        probe = keras.Model(model.input, layer.input)
        sums = None
        for start in range(lo, hi, batch_size):
            x = np.asarray(probe(inputs_of(start, min(start + batch_size, hi)), training=False),
                           np.float64)
            x = x.reshape(-1, x.shape[-1])
            part = np.stack([x.sum(axis=0), (x**2).sum(axis=0), np.full(x.shape[1], len(x))])
            sums = part if sums is None else sums + part
        if sums is None:  # a rank without rows still joins the allreduce
            sums = np.zeros((3, layer.moving_mean.shape[0]))
        total = group.allreduce_sum(sums, name=f"batch_norm_{index}")
        mean = total[0] / total[2]
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(total[1] / total[2] - mean**2, 0.0)
                                     .astype(np.float32))
    return {"batch_norm_layers_recalibrated": len(layers), "batch_norm_rows": rows[1] - rows[0]}


def mse_ratio_interval(numerator: np.ndarray, denominator: np.ndarray, *, resamples: int = 1000,
                       seed: int = 0) -> tuple[float, float]:
    """95% bootstrap (BCa) interval of mean(``numerator``) / mean(``denominator``), per-map
    squared errors of two methods on the same maps resampled together (the maps are independent
    draws)."""
    from scipy.stats import bootstrap

    result = bootstrap((np.asarray(numerator), np.asarray(denominator)),
                       lambda a, b, axis: a.mean(axis=axis) / b.mean(axis=axis), paired=True,
                       vectorized=True, n_resamples=resamples,
                       rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


class _MapTask(Task):
    """What the three map tasks share: opening the file, row ranges, the examples."""

    need: tuple[str, ...] = ()
    eval_keys: tuple[str, ...] = ()
    #: The data key naming the file the network trained on, whose training rows the baselines
    #: fit on (:func:`modelzoo.reproduce.evaluate_model` sets it to the entry's training set).
    training_file_key = "baseline_train"

    def open(self, path: str, data_cfg: dict) -> MassMaps:
        return open_mass_maps(path, need=self.need, pixel_arcmin=data_cfg.get("pixel_arcmin"))

    def eval_rows(self, maps: MassMaps, data_cfg: dict, split: str) -> tuple[int, int]:
        lo, hi = select_rows(maps.num_maps, data_cfg.get("val_fraction", 0.2), split)
        limit = data_cfg.get("eval_max_maps")
        return (lo, min(hi, lo + int(limit))) if limit else (lo, hi)

    def targets_of(self, maps: MassMaps, rows: tuple[int, int]) -> np.ndarray:
        """What the baselines learn for ``rows``: class labels or parameters."""
        raise NotImplementedError

    def baselines(self, maps: MassMaps, raw: np.ndarray, targets: np.ndarray, data_cfg: dict,
                  split: str) -> tuple[dict[str, np.ndarray], str]:
        """Each baseline's predictions of the evaluated maps ``raw`` (class probabilities or
        parameters), and what it was fitted on.

        Fitted as the CNN was trained: on the training rows (the first 1 - ``val_fraction``)
        of ``data.baseline_train``, the file the CNN trained on, or of the evaluated file
        itself when the split is ``val`` or ``train``. An evaluation file on its own (split
        ``all``) gets predictions out of fold (:func:`baseline.out_of_fold`): no baseline sees
        the map it scores, nor, for parameters, any map of its cosmology."""
        kinds = list(data_cfg.get("baselines", list(baseline.BASELINES)))
        if not kinds:
            return {}, "no baselines"
        classify = isinstance(self, CosmologyClassification)
        pixel = maps.require_pixel_scale()
        fit_on = data_cfg.get("baseline_train")
        source = None
        if fit_on:
            source = self.open(str(fit_on), data_cfg)
            if source.map_shape != maps.map_shape or not np.isclose(
                    source.require_pixel_scale(), pixel):
                raise ConfigError(
                    f"data.baseline_train {fit_on}: maps of {source.map_shape} pixels of "
                    f"{source.require_pixel_scale():.4g}' but {maps.source.path} has "
                    f"{maps.map_shape} of {pixel:.4g}'; expected the training file of these maps")
        elif split != "all":
            source = maps
        if source is None:
            folds = "5 stratified folds" if classify else "10 folds by cosmology"
            return ({kind: baseline.out_of_fold(kind, raw, targets, pixel, classify)
                     for kind in kinds},
                    f"out of fold ({folds}) over the {len(raw)} evaluated maps")
        rows, _ = split_rows(source.num_maps, data_cfg.get("val_fraction", 0.2))
        fit_maps, fit_targets = source.read_maps(rows), self.targets_of(source, rows)
        predictions = {kind: baseline.Baseline(kind, pixel, classify).fit(fit_maps, fit_targets)
                       .predict(raw) for kind in kinds}
        return predictions, (f"the {rows[1] - rows[0]} training maps of "
                             f"{os.path.basename(source.source.path)}")

    def examples(self, maps: MassMaps, data_cfg: dict, seed: int, training: bool):
        """``block -> (inputs, targets)`` for the tf.data streams (training: before
        :meth:`training_change`)."""
        raise NotImplementedError

    def training_change(self, data_cfg: dict):
        """The random change of every training batch's inputs, ``(inputs, seed) -> inputs``
        drawn statelessly from (seed, step) by :func:`modelzoo.tasks.augment_training`, or
        None: the named symmetries of ``data.augment`` (``[dihedral]`` by default: a
        statistically isotropic field keeps its cosmology under rotations and reflections)."""
        if augmentations(data_cfg, ("dihedral",), default=("dihedral",)):
            return square_dihedral
        return None

    def datasets(self, path: str, data_cfg: dict, batch_size: int, group: ProcessGroup,
                 seed: int, first_epoch: int) -> Datasets:
        maps = self.open(path, data_cfg)
        train_rows, val_rows = split_rows(maps.num_maps, data_cfg.get("val_fraction", 0.2))
        data = split_streams(
            maps.source, self.examples(maps, data_cfg, seed, True),
            train_rows, val_rows, batch_size=batch_size, group=group, seed=seed,
            first_epoch=first_epoch, shuffle=bool(data_cfg.get("shuffle", True)), path=path,
            noun="maps",
        )
        change = self.training_change(data_cfg)
        if change is not None:
            data = augment_training(data, change, seed=seed, rank=group.rank,
                                    first_epoch=first_epoch)
        if data.validation is not None:  # validation inputs must not change between epochs
            data.validation = stream(maps.source, self.examples(maps, data_cfg, seed, False),
                                     rows=shard_rows(val_rows, group), batch_size=batch_size)
        return data

    def finalize(self, model: keras.Model, path: str, data_cfg: dict, group: ProcessGroup,
                 seed: int) -> dict[str, float]:
        """Exact batch-normalisation statistics over (up to ``data.batch_norm_maps``) training
        maps, the same on every rank."""
        maps = self.open(path, data_cfg)
        train_rows, _ = split_rows(maps.num_maps, data_cfg.get("val_fraction", 0.2))
        limit = int(data_cfg.get("batch_norm_maps", 2000))
        rows = (train_rows[0], min(train_rows[1], train_rows[0] + limit))
        to_example = self.examples(maps, data_cfg, seed, False)
        return recalibrate_batch_norm(
            model, lambda lo, hi: to_example(maps.source.read(lo, hi))[0], rows, group)

    def inputs(self, path: str, data_cfg: dict, rows: tuple[int, int]) -> dict[str, np.ndarray]:
        """Network inputs of ``rows`` (clipped to the file) with what explains them:
        ``labels`` (classes) and, for the autoencoder, the clean ``targets``."""
        maps = self.open(path, data_cfg)
        rows = (rows[0], min(rows[1], maps.num_maps))
        block = maps.source.read(*rows)
        inputs, targets = self.examples(maps, data_cfg, 0, False)(block)
        result = {"inputs": inputs}
        if maps.has_labels:
            result["labels"] = block["label"].reshape(-1).astype(np.int64)
        if targets.shape == inputs.shape:
            result["targets"] = targets
        return result

    def outputs(self, model: keras.Model, maps: MassMaps, data_cfg: dict,
                rows: tuple[int, int], group: ProcessGroup,
                batch_size: int = 64) -> dict[str, np.ndarray]:
        """Model outputs and per-map truth for ``rows``, computed by shards, gathered."""
        shape = tuple(model.output_shape[1:])
        keys = tuple(k for k in self.eval_keys if k in maps.source.fields)
        to_example = self.examples(maps, data_cfg, 0, False)

        def compute(shard: tuple[int, int]) -> dict[str, np.ndarray]:
            parts = []
            for start in range(shard[0], shard[1], batch_size):
                block = maps.source.read(start, min(start + batch_size, shard[1]))
                parts.append(model.predict(to_example(block)[0], verbose=0))
            columns = maps.columns(shard, keys)
            return {"output": np.concatenate(parts).astype(np.float32),
                    **{k: columns[k].astype(np.float64) for k in keys}}

        empty = {"output": (shape, "float32"), **{k: ((), "float64") for k in keys}}
        return gather_shards(rows, group, compute, empty)


class MapReconstruction(_MapTask):
    """The denoising autoencoder's task."""

    name = "cosmo_reconstruction"
    model_outputs = {"reconstruction": None}

    def examples(self, maps: MassMaps, data_cfg: dict, seed: int, training: bool):
        keep = _keep_fraction(data_cfg)
        fresh_noise = training and maps.has_clean and _fresh_noise(data_cfg)

        def to_example(block):
            observed, clean = maps.maps(block), maps.clean_maps(block)
            if fresh_noise:  # the noiseless map rides along as a second channel (training_change)
                return np.concatenate([observed, clean], axis=-1), clean
            # Training inputs are corrupted afresh every step (training_change).
            return ((observed if training else fixed_corruption(observed, keep, seed)), clean)

        return to_example

    def training_change(self, data_cfg: dict):
        """Binomial corruption of the training maps, a new mask every step. On files with the
        noiseless maps (and ``data.fresh_noise``, the default), every step first gives each map
        new shape noise: its own noise field (noisy - noiseless) under a random periodic shift
        and one of the 8 symmetries of the square. Smoothed shape noise is stationary and
        isotropic on the periodic map, so this is another draw of the same noise; without it
        the network memorises the few hundred noise fields of a small training set (held-out
        error rising after ~10 epochs on 320 maps of 64 x 64)."""
        keep = _keep_fraction(data_cfg)

        def corrupt_batch(maps, seed):
            import tensorflow as tf

            if maps.shape[-1] == 2:  # (noisy, noiseless), from examples()
                maps = maps[..., 1:] + _moved_noise(maps[..., :1] - maps[..., 1:], seed)
            if keep == 1.0:
                return maps
            kept = tf.random.stateless_uniform(tf.shape(maps), seed=seed) < keep
            return maps * tf.cast(kept, maps.dtype)

        return corrupt_batch

    def compile(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, cfg: dict) -> None:
        # The loss in the network's unit (kappa / kappa_scale), as the shipped weights were
        # trained: the model's output is in kappa, whose squared errors are ~1e-5 as large.
        units = 1.0 / float(model.get_layer("kappa").scale) ** 2

        def network_unit_mse(y_true, y_pred):
            return keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1) * units

        model.compile(optimizer=optimizer, loss=network_unit_mse)

    def predict(self, model: keras.Model, path: str, data_cfg: dict,
                group: ProcessGroup) -> dict[str, np.ndarray]:
        maps = self.open(path, data_cfg)
        out = self.outputs(model, maps, data_cfg, (0, maps.num_maps), group)["output"]
        return {"reconstruction": out[..., 0]}

    def filter_width(self, maps: MassMaps, data_cfg: dict, count: int = 200) -> float:
        """The Gaussian filter width (pixels) that best rebuilds the target from the input the
        DCAE sees, chosen on (up to ``count``) training maps: the baseline's one fitted value.
        Training maps are those of ``data.baseline_train`` (the DCAE's training file) where it
        is named, else the first 1 - ``val_fraction`` of the evaluated file."""
        if data_cfg.get("baseline_train"):
            maps = self.open(str(data_cfg["baseline_train"]), data_cfg)
        train_rows, _ = split_rows(maps.num_maps, data_cfg.get("val_fraction", 0.2))
        block = maps.source.read(train_rows[0], min(train_rows[1], train_rows[0] + count))
        noisy, clean = self.examples(maps, data_cfg, 1, False)(block)
        keep = _keep_fraction(data_cfg)
        widths = [0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]
        errors = [((gaussian_filtered(noisy, keep, w) - clean) ** 2).mean() for w in widths]
        return widths[int(np.argmin(errors))]

    def evaluate(self, model: keras.Model, path: str, data_cfg: dict, split: str,
                 output_dir: str | None, group: ProcessGroup) -> dict[str, Any]:
        """MSE against the noiseless map (``kappa_clean`` where the file has it) of the DCAE,
        of its corrupted input, of the noisy map itself, and of a Gaussian filter of the same
        input the DCAE sees (its width fitted on training maps)."""
        maps = self.open(path, data_cfg)
        rows = self.eval_rows(maps, data_cfg, split)
        to_example = self.examples(maps, data_cfg, 0, False)

        keep = _keep_fraction(data_cfg)
        sigma = self.filter_width(maps, data_cfg)

        def compute(shard: tuple[int, int]) -> dict[str, np.ndarray]:
            errors: dict[str, list] = {"model": [], "identity": [], "filter": [], "noisy": []}
            for start in range(shard[0], shard[1], 64):
                block = maps.source.read(start, min(start + 64, shard[1]))
                noisy, clean = to_example(block)
                recon = model.predict(noisy, verbose=0)
                for key, value in (("model", recon), ("identity", noisy),
                                   ("filter", gaussian_filtered(noisy, keep, sigma)),
                                   ("noisy", maps.maps(block))):
                    errors[key].append(((value - clean) ** 2).mean(axis=(1, 2, 3)))
            return {k: np.concatenate(v) for k, v in errors.items()}

        err = gather_shards(rows, group, compute, {k: ((), "float64") for k in
                                                   ("model", "identity", "filter", "noisy")})
        result = {
            "maps": int(len(err["model"])),
            "keep_fraction": keep,
            "target": "noiseless map (kappa_clean)" if maps.has_clean else "the map (noiseless)",
            "mse_dcae": float(err["model"].mean()),
            "mse_corrupted_input": float(err["identity"].mean()),
            "mse_ratio": float(err["model"].mean() / err["identity"].mean()),
            "fraction_maps_improved": float((err["model"] < err["identity"]).mean()),
            "mse_gaussian_filter": float(err["filter"].mean()),
            "gaussian_filter_sigma_pixels": sigma,
            "fraction_maps_better_than_filter": float((err["model"] < err["filter"]).mean()),
        }
        result["mse_ratio_lo"], result["mse_ratio_hi"] = mse_ratio_interval(err["model"],
                                                                            err["identity"])
        result["mse_ratio_to_filter"] = float(err["model"].mean() / err["filter"].mean())
        (result["mse_ratio_to_filter_lo"],
         result["mse_ratio_to_filter_hi"]) = mse_ratio_interval(err["model"], err["filter"])
        if maps.has_clean:
            result["mse_noisy_input"] = float(err["noisy"].mean())
            result["mse_ratio_to_noisy"] = float(err["model"].mean() / err["noisy"].mean())
            (result["mse_ratio_to_noisy_lo"],
             result["mse_ratio_to_noisy_hi"]) = mse_ratio_interval(err["model"], err["noisy"])
            result["fraction_maps_better_than_noisy"] = float((err["model"] < err["noisy"]).mean())
        if output_dir:
            sample = self.inputs(path, data_cfg, (rows[0], rows[0] + 4))
            interpret.reconstruction_figure(model, sample["inputs"],
                                            os.path.join(output_dir, "reconstruction.png"),
                                            targets=sample["targets"])
            interpret.saliency(model, sample["targets"], "sum",
                               os.path.join(output_dir, "saliency.png"))
            for name in ("reconstruction.png", "saliency.png"):
                compact_png(os.path.join(output_dir, name))
        return result


class CosmologyClassification(_MapTask):
    """Which cosmology produced a map."""

    name = "cosmo_classification"
    model_outputs = {"probabilities": None}
    need = ("label",)
    eval_keys = ("label",)

    def class_labels(self, path: str, data_cfg: dict) -> list[ClassLabels]:
        maps = self.open(path, data_cfg)
        return [ClassLabels(path, "label", maps.columns((0, maps.num_maps), ("label",))["label"])]

    def examples(self, maps: MassMaps, data_cfg: dict, seed: int, training: bool):
        def to_example(block):
            return maps.maps(block), block["label"].reshape(-1).astype(np.int32)

        return to_example

    def compile(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, cfg: dict) -> None:
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])

    def predict(self, model: keras.Model, path: str, data_cfg: dict,
                group: ProcessGroup) -> dict[str, np.ndarray]:
        maps = self.open(path, data_cfg)
        probs = self.outputs(model, maps, data_cfg, (0, maps.num_maps), group)["output"]
        return {"probabilities": probs, "predicted_class": probs.argmax(axis=1)}

    def targets_of(self, maps: MassMaps, rows: tuple[int, int]) -> np.ndarray:
        return maps.columns(rows, ("label",))["label"].astype(int)

    def evaluate(self, model: keras.Model, path: str, data_cfg: dict, split: str,
                 output_dir: str | None, group: ProcessGroup) -> dict[str, Any]:
        """Accuracy of the CNN and of each baseline on the same maps, with 95% intervals over
        maps and the paired interval of the CNN's accuracy minus each baseline's."""
        maps = self.open(path, data_cfg)
        rows = self.eval_rows(maps, data_cfg, split)
        out = self.outputs(model, maps, data_cfg, rows, group)
        labels = out["label"].astype(int)
        classes = max(int(labels.max()) + 1, out["output"].shape[1])
        if out["output"].shape[1] < classes:
            raise ConfigError(f"{path}: labels go up to {classes - 1} but the model has "
                              f"{out['output'].shape[1]} classes (model.config.num_classes)")
        raw = maps.read_maps(rows)
        predicted = {"cnn": out["output"].argmax(axis=1)}
        baselines, fitted_on = self.baselines(maps, raw, labels, data_cfg, split)
        predicted.update({kind: probs.argmax(axis=1) for kind, probs in baselines.items()})
        result = {
            "maps": int(len(labels)),
            "classes": int(classes),
            "chance": float(np.bincount(labels).max() / len(labels)),
            "accuracy_seed_published": SEED_ACCURACY,
            "baseline_fitted_on": fitted_on,
            **accuracy_table(labels, predicted, resamples=int(data_cfg.get("bootstrap", 2000))),
        }
        if output_dir:
            self._figures(model, maps, raw, labels, data_cfg, rows, result, output_dir)
        return result

    def _figures(self, model, maps: MassMaps, raw: np.ndarray, labels: np.ndarray,
                 data_cfg: dict, rows: tuple[int, int], result: dict, output_dir: str) -> None:
        count = min(len(labels), int(data_cfg.get("embedding_max_maps", 500)))
        inputs = maps.maps({"kappa": raw[:count]})
        features = interpret.layer_features(model, inputs, data_cfg.get("embedding_layer"))
        interpret.embed(features, labels[:count], os.path.join(output_dir, "tsne.png"))
        plt = interpret._pyplot()
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        edges = ell_bins(raw.shape[-1], maps.require_pixel_scale(), 12)
        ell, cl = binned_power_spectrum(raw, maps.require_pixel_scale(), edges)
        for c in np.unique(labels):
            mean, spread = cl[labels == c].mean(0), cl[labels == c].std(0)
            left.fill_between(ell, (mean - spread) * ell**2, (mean + spread) * ell**2, alpha=0.3)
            left.plot(ell, mean * ell**2, label=f"class {c}")
        left.set(xscale="log", yscale="log", xlabel="ell", ylabel="ell^2 C_ell (maps)",
                 title="power spectra (mean, 1 sd)")
        left.legend()
        names = [k.removeprefix("accuracy_") for k in result if k.startswith("accuracy_")
                 and f"{k}_lo" in result and "_minus_" not in k]
        values = np.array([result[f"accuracy_{k}"] for k in names])
        spans = np.array([[result[f"accuracy_{k}"] - result[f"accuracy_{k}_lo"] for k in names],
                          [result[f"accuracy_{k}_hi"] - result[f"accuracy_{k}"] for k in names]])
        right.bar(names, values, yerr=spans, capsize=4)
        right.axhline(SEED_ACCURACY, color="tab:red", ls="--", label="seed (published)")
        right.axhline(result["chance"], color="k", ls=":", label="chance")
        bottom = min(result["chance"], SEED_ACCURACY, float((values - spans[0]).min())) - 0.05
        right.set(ylim=(max(0.0, bottom), 1), ylabel="accuracy (95% interval)",
                  title=f"{result['maps']} maps; baselines: {result['baseline_fitted_on']}")
        right.title.set_fontsize(8)
        right.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(output_dir, "comparison.png"), dpi=100)
        plt.close(fig)


class ParameterRegression(_MapTask):
    """(Omega_m, sigma_8) of a map."""

    name = "cosmo_regression"
    model_outputs = {"parameters": None}
    need = ("parameters",)
    eval_keys = PARAMETERS

    def examples(self, maps: MassMaps, data_cfg: dict, seed: int, training: bool):
        def to_example(block):
            y = np.stack([block[p].reshape(-1) for p in PARAMETERS], axis=1).astype(np.float32)
            return maps.maps(block), y

        return to_example

    def compile(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, cfg: dict) -> None:
        model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])

    def predict(self, model: keras.Model, path: str, data_cfg: dict,
                group: ProcessGroup) -> dict[str, np.ndarray]:
        maps = self.open(path, data_cfg)
        out = self.outputs(model, maps, data_cfg, (0, maps.num_maps), group)["output"]
        return {"parameters": out, **{p: out[:, i] for i, p in enumerate(PARAMETERS)}}

    def targets_of(self, maps: MassMaps, rows: tuple[int, int]) -> np.ndarray:
        columns = maps.columns(rows, PARAMETERS)
        return np.stack([columns[p] for p in PARAMETERS], axis=1).astype(np.float64)

    def evaluate(self, model: keras.Model, path: str, data_cfg: dict, split: str,
                 output_dir: str | None, group: ProcessGroup) -> dict[str, Any]:
        """RMSE of (Omega_m, sigma_8) of the CNN and of each baseline on the same maps, with
        95% intervals that resample whole cosmologies, and the paired interval of the CNN's
        RMSE minus each baseline's."""
        maps = self.open(path, data_cfg)
        rows = self.eval_rows(maps, data_cfg, split)
        out = self.outputs(model, maps, data_cfg, rows, group)
        truth = np.stack([out[p] for p in PARAMETERS], axis=1)
        predictions = {"cnn": out["output"].astype(np.float64)}
        baselines, fitted_on = self.baselines(maps, maps.read_maps(rows), truth, data_cfg, split)
        predictions.update(baselines)
        table = error_table(truth, predictions, PARAMETERS,
                            resamples=int(data_cfg.get("bootstrap", 2000)))
        result: dict[str, Any] = {
            "maps": int(len(truth)),
            "cosmologies": int(cosmology_groups(truth).max() + 1),
            "baseline_fitted_on": fitted_on,
            **{k: v for k, v in table.items() if k.startswith("rmse_")},
        }
        if output_dir:
            plt = interpret._pyplot()
            fig, axes = plt.subplots(1, 2, figsize=(9, 4))
            for i, (ax, p) in enumerate(zip(axes, PARAMETERS)):
                for name, pred in predictions.items():
                    ax.scatter(truth[:, i], pred[:, i], s=4, alpha=0.5,
                               label=f"{name} (rmse {result[f'rmse_{p}_{name}']:.3f})")
                lo, hi = truth[:, i].min(), truth[:, i].max()
                ax.plot([lo, hi], [lo, hi], "k:")
                ax.set(xlabel=f"true {p}", ylabel=f"predicted {p}")
                ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(os.path.join(output_dir, "parameters.png"), dpi=100)
            plt.close(fig)
        return result
