"""Density estimation of galaxy stamps (``galaxy_vae``) and the seed's comparison.

Training maximises the ELBO (the model carries it as its loss). Evaluation estimates log p(x)
of each held-out stamp under the VAE by importance sampling (K = ``data.eval_samples``), fits
the Celeste-style bivariate-normal galaxy model to the same stamps by maximum likelihood
(:mod:`modelzoo.galaxy.baseline`), and reports the fraction of stamps on which the VAE assigns
the higher density (the seed: 97.2% of 43,444 SDSS galaxies). Both densities are over the same
numbers, the stamps divided by the model's unit (its ``input_scale``), under the same kind of
likelihood (independent normal pixels); ``log p`` in the file's own units is
``log p - num_pixels * log(scale)`` for both.

Figures (``output_dir``): a held-out stamp, the decoder mean and per-pixel variance at its
posterior mode (the seed's figures 4 and 5), the baseline's fit, samples, and the histogram of
log-likelihood differences.

Recipe keys (``data`` section): ``scale`` (the model's ``input_scale`` when training: ``auto``,
the file's background noise sigma, or a number), ``val_fraction``,
``shuffle``, ``augment`` (``[]``, or ``[dihedral]``: each training stamp reflected/rotated
by one of the 8 symmetries of the square, :func:`modelzoo.tasks.square_dihedral`: a field of
galaxies has no preferred orientation or handedness), ``eval_samples``,
``eval_refine_steps`` (per-stamp posterior refinement before importance sampling, see
:func:`modelzoo.galaxy.density.log_prob`; 0 uses the encoder alone),
``eval_noise_floor`` (``auto``: where the file has a ``noise_variance`` map and the baseline
uses it, the VAE's density is conditioned on it too, each pixel's variance floored at its
known noise, see :func:`modelzoo.galaxy.vae.noise_floored`; ``false``: the decoder's
variance alone),
``eval_max_stamps``, ``prior_draws`` (posterior draws per training stamp to which a model
built with ``prior_components > 0`` fits its mixture prior after training),
``prior_refit_from`` (epoch from which the prior is also refitted at the start of every epoch,
so that encoder and decoder train against it; unset: only after training),
``baseline_noise`` (``auto``, ``known``, ``constant``), ``baseline_psf_components``.
"""

from __future__ import annotations

import os
import time

import h5py
import keras
import numpy as np

from modelzoo.distributed import ProcessGroup
from modelzoo.errors import ConfigError
from modelzoo.galaxy import baseline, density, prior, vae
from modelzoo.galaxy.reader import GalaxyStamps, open_galaxies
from modelzoo.tasks import (
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


class GalaxyDensity(Task):
    name = "galaxy_density"
    # The decoder at the posterior mean (model units): what the model computes at inference.
    model_outputs = {"reconstruction_mean": 0, "reconstruction_variance": 1}

    def open(self, path: str, data_cfg: dict) -> GalaxyStamps:
        """The stamps as stored (the model divides them by its ``input_scale`` itself)."""
        return open_galaxies(path, scale=1.0)

    @staticmethod
    def in_model_units(model: keras.Model, path: str) -> GalaxyStamps:
        """The stamps divided by the model's unit: what its encoder, decoder and densities
        (and the baseline it is compared with) work in."""
        return open_galaxies(path, scale=vae.input_scale(model))

    def model_config(self, path: str, data_cfg: dict) -> dict:
        """The model's unit: ``data.scale``, or with ``auto`` the file's background noise
        sigma (:func:`modelzoo.galaxy.reader.estimate_scale`)."""
        return {"input_scale": open_galaxies(path, scale=data_cfg.get("scale", "auto")).scale}

    def datasets(
        self, path: str, data_cfg: dict, batch_size: int, group: ProcessGroup, seed: int,
        first_epoch: int,
    ) -> Datasets:
        stamps = self.open(path, data_cfg)
        train_rows, val_rows = split_rows(stamps.num_stamps, data_cfg.get("val_fraction", 0.1))
        streams = split_streams(
            stamps.source, stamps.to_example, train_rows, val_rows, batch_size=batch_size,
            group=group, seed=seed, first_epoch=first_epoch,
            shuffle=bool(data_cfg.get("shuffle", True)), path=path, noun="stamps",
        )
        symmetries = augmentations(data_cfg, ("dihedral",))
        if symmetries:
            height, width = stamps.image_shape[:2]
            if height != width:
                raise ConfigError(f"{path}: data.augment=dihedral needs square stamps, the "
                                 f"file's are {height}x{width}")
            streams = augment_training(streams, square_dihedral, seed=seed, rank=group.rank,
                                       first_epoch=first_epoch)
        return streams

    def inputs(self, path: str, data_cfg: dict, rows: tuple[int, int]) -> dict[str, np.ndarray]:
        """The stamps as stored, and as the reconstruction (model units, ``data.scale``) aims
        at them."""
        rows = (rows[0], min(rows[1], self.open(path, data_cfg).num_stamps))
        scaled = open_galaxies(path, scale=data_cfg.get("scale", "auto"))
        return {"inputs": self.open(path, data_cfg).arrays(rows)["images"],
                "targets": scaled.arrays(rows)["images"]}

    def callbacks(
        self, model: keras.Model, path: str, data_cfg: dict, group: ProcessGroup, seed: int,
    ) -> list[keras.callbacks.Callback]:
        """``data.prior_refit_from: E``: refit the model's mixture prior at the start of every
        epoch from E on, so that the last epochs train against it (none by default)."""
        first = data_cfg.get("prior_refit_from")
        if first is None:
            return []
        if prior.prior_layer(model) is None:
            raise ConfigError("data.prior_refit_from needs a model built with "
                             "prior_components > 0 (--model-config prior_components=K)")
        return [_PriorRefit(self, path, data_cfg, group, seed, int(first))]

    def finalize(
        self, model: keras.Model, path: str, data_cfg: dict, group: ProcessGroup, seed: int,
    ) -> dict[str, float]:
        """After training, fit the model's mixture prior (if it has one) to the aggregate
        posterior of the training stamps (:func:`modelzoo.galaxy.prior.fit_prior`)."""
        if prior.prior_layer(model) is None:
            return {}
        return self.fit_prior(model, path, data_cfg, group, seed)

    def fit_prior(
        self, model: keras.Model, path: str, data_cfg: dict, group: ProcessGroup, seed: int,
    ) -> dict[str, float]:
        """Each rank draws from its shard of the training stamps; every rank fits the same
        mixture to all draws, starting from the current one if it was fitted before."""
        began = time.perf_counter()
        stamps = self.in_model_units(model, path)
        train_rows, _ = split_rows(stamps.num_stamps, data_cfg.get("val_fraction", 0.1))
        here = shard_rows(train_rows, group)
        block = 2048
        batches = (stamps.arrays((start, min(start + block, here[1])))["images"]
                   for start in range(here[0], here[1], block))
        draws = prior.posterior_draws(model, batches,
                                    samples_per_stamp=int(data_cfg.get("prior_draws", 2)),
                                    seed=seed + 7919 * group.rank)
        stats = prior.fit_prior(model, group.allgather(draws, name="prior_draws"), seed=seed,
                              warm_start=True)
        return {**stats, "seconds": time.perf_counter() - began}

    def compile(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, cfg: dict) -> None:
        # The loss is the negative ELBO the model adds itself (ELBOLoss layer).
        model.compile(optimizer=optimizer)

    def evaluate(
        self, model: keras.Model, path: str, data_cfg: dict, split: str, output_dir: str | None,
        group: ProcessGroup,
    ) -> dict[str, float]:
        stamps = self.in_model_units(model, path)
        rows = select_rows(stamps.num_stamps, data_cfg.get("val_fraction", 0.1), split)
        limit = data_cfg.get("eval_max_stamps")
        if limit:
            rows = (rows[0], min(rows[1], rows[0] + int(limit)))
        num_samples = int(data_cfg.get("eval_samples", 128))
        refine_steps = int(data_cfg.get("eval_refine_steps", 0))
        noise = data_cfg.get("baseline_noise", "auto")
        noise_floor = _noise_floor_setting(data_cfg, stamps)
        start = time.perf_counter()

        def compute(shard: tuple[int, int]) -> dict[str, np.ndarray]:
            return compare(model, stamps, shard, num_samples=num_samples, noise=noise,
                           psf_components=int(data_cfg.get("baseline_psf_components", 2)),
                           refine_steps=refine_steps, noise_floor=noise_floor)

        gathered = gather_shards(rows, group, compute, {k: ((), "float64") for k in COMPARED})
        seconds = time.perf_counter() - start
        vae_lp, base_lp = gathered["vae_log_prob"], gathered["baseline_log_prob"]
        delta = vae_lp - base_lp
        num_pixels = int(np.prod(stamps.image_shape))
        metrics: dict[str, float] = {
            "stamps": int(len(delta)),
            "fraction_vae_better": float(np.mean(delta > 0)),
            "seed_reference_fraction": 0.972,
            "vae_log_prob_mean": float(vae_lp.mean()),
            "baseline_log_prob_mean": float(base_lp.mean()),
            "delta_log_prob_median": float(np.median(delta)),
            "vae_elbo_mean": float(gathered["vae_elbo"].mean()),
            "importance_samples": num_samples,
            "refine_steps": refine_steps,
            "vae_noise_floor": noise_floor,
            "prior_components": getattr(prior.prior_layer(model), "components", 0),
            "baseline_noise": baseline.resolve_noise(noise, stamps.has_noise_variance),
            "baseline_converged_fraction": float(gathered["baseline_converged"].mean()),
            "scale": stamps.scale,
            "log_prob_unit_offset": float(-num_pixels * np.log(stamps.scale)),
            "seconds": seconds,
        }
        names, truth = _generator_truth(stamps, rows, ("morphology", "n_neighbours"))
        if names and "morphology" in truth:
            for code, label in enumerate(names):
                sel = truth["morphology"] == code
                if sel.any():
                    metrics[f"fraction_vae_better_{label}"] = float(np.mean(delta[sel] > 0))
        # The baseline describes one galaxy; neighbours in the stamp are misfit it cannot
        # avoid. The fraction on stamps without any shows the comparison without that help.
        neighbours = truth.get("n_neighbours")
        if neighbours is not None and (neighbours == 0).any():
            isolated = neighbours == 0
            metrics["isolated_stamps"] = int(isolated.sum())
            metrics["fraction_vae_better_isolated"] = float(np.mean(delta[isolated] > 0))
        if output_dir:
            np.savez(os.path.join(output_dir, "log_probs.npz"), vae=vae_lp, baseline=base_lp,
                     rows=np.arange(*rows))
            write_figures(model, stamps, rows, delta, metrics, output_dir)
        return metrics

    def predict(self, model: keras.Model, path: str, data_cfg: dict,
                group: ProcessGroup) -> dict[str, np.ndarray]:
        """Per stamp: the posterior mean and standard deviation of z, the decoder's mean and
        variance at the posterior mean (the reconstruction), and the importance-weighted
        log p(x) with ``data.eval_samples`` samples (model units)."""
        stamps = self.in_model_units(model, path)
        return self.outputs(model, stamps, data_cfg, (0, stamps.num_stamps), group)

    def outputs(self, model: keras.Model, stamps: GalaxyStamps, data_cfg: dict,
                rows: tuple[int, int], group: ProcessGroup) -> dict[str, np.ndarray]:
        """What :meth:`predict` writes, for ``rows``."""
        floor_on = _noise_floor_setting(data_cfg, stamps)
        num_samples = int(data_cfg.get("eval_samples", 128))
        d, shape = vae.latent_dim(model), stamps.image_shape

        def compute(shard: tuple[int, int]) -> dict[str, np.ndarray]:
            arrays = stamps.arrays(shard)
            posterior = vae.encode(model, arrays["images"])
            likelihood = vae.decode(model, posterior.mean())
            floor = arrays["noise_variance"] if floor_on else None
            return {
                "latent_mean": posterior.mean().numpy(),
                "latent_stddev": posterior.stddev().numpy(),
                "reconstruction_mean": likelihood.mean().numpy(),
                "reconstruction_variance": likelihood.variance().numpy(),
                "log_prob": density.log_prob(model, arrays["images"], num_samples,
                                             noise_variance=floor),
            }

        empty = {"latent_mean": ((d,), "float32"), "latent_stddev": ((d,), "float32"),
                 "reconstruction_mean": (shape, "float32"),
                 "reconstruction_variance": (shape, "float32"), "log_prob": ((), "float64")}
        return gather_shards(rows, group, compute, empty)


def _noise_floor_setting(data_cfg: dict, stamps: GalaxyStamps) -> bool:
    """``auto``: the VAE is conditioned on the noise map exactly when the baseline is (the file
    has one and ``baseline_noise`` is not ``constant``)."""
    setting = data_cfg.get("eval_noise_floor", "auto")
    has_map = stamps.has_noise_variance
    if setting == "auto":
        noise_model = baseline.resolve_noise(data_cfg.get("baseline_noise", "auto"), has_map)
        return has_map and noise_model == "known"
    if setting is True and not has_map:
        raise ConfigError(f"{stamps.source.path}: data.eval_noise_floor=true needs a "
                         "'noise_variance' dataset (per-pixel noise variance, same shape as "
                         "'images'); the file has none")
    if setting not in (True, False):
        raise ConfigError(f"data.eval_noise_floor must be auto, true or false, got {setting!r}")
    return setting


class _PriorRefit(keras.callbacks.Callback):
    """Refits the prior at the start of each epoch from ``first_epoch`` on (every rank). The
    epoch's checkpoint then holds the prior it trained against, and a run resumed at a later
    epoch refits at that epoch's start just as the uninterrupted run does."""

    def __init__(self, task: GalaxyDensity, path: str, data_cfg: dict, group: ProcessGroup,
                 seed: int, first_epoch: int) -> None:
        super().__init__()
        self.task, self.path, self.data_cfg, self.group = task, path, data_cfg, group
        self.seed, self.first_epoch = seed, first_epoch

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch < self.first_epoch:
            return
        stats = self.task.fit_prior(self.model, self.path, self.data_cfg, self.group,
                                    self.seed + 104729 * (epoch + 1))
        if self.group.is_root:
            print(f"epoch {epoch + 1}: prior refitted to {stats['draws']:.0f} posterior draws, "
                  f"log-density {stats['log_density_mixture']:.1f} nats (N(0, I): "
                  f"{stats['log_density_standard_normal']:.1f}) in {stats['seconds']:.0f} s",
                  flush=True)


COMPARED = ("vae_log_prob", "vae_elbo", "baseline_log_prob", "baseline_converged")


def compare(
    model: keras.Model, stamps: GalaxyStamps, rows: tuple[int, int], *, num_samples: int = 128,
    noise: str = "auto", psf_components: int = 2, seed: int = 0, refine_steps: int = 0,
    noise_floor: bool = False,
) -> dict:
    """Per-stamp log p(x) under the VAE (importance-weighted) and the fitted baseline, in model
    units, for ``rows`` of ``stamps``; with ``noise_floor`` the VAE's density is conditioned on
    the file's noise map (:func:`modelzoo.galaxy.vae.noise_floored`)."""
    arrays = stamps.arrays(rows)
    images = arrays["images"]
    floor = arrays["noise_variance"] if noise_floor else None
    vae_lp = density.log_prob(model, images, num_samples=num_samples, seed=seed,
                          refine_steps=refine_steps, noise_variance=floor)
    vae_elbo = density.elbo(model, images, seed=seed + 1, noise_variance=floor)
    psf = None
    if "psf" in arrays:
        psf = baseline.fit_psf(arrays["psf"], components=psf_components)
    fit = baseline.fit(images, arrays.get("noise_variance"), psf, noise=noise)
    return {
        "vae_log_prob": vae_lp.astype(np.float64),
        "vae_elbo": vae_elbo.astype(np.float64),
        "baseline_log_prob": fit.log_prob.astype(np.float64),
        "baseline_converged": fit.converged.astype(np.float64),
    }


def _generator_truth(
    stamps: GalaxyStamps, rows: tuple[int, int], fields: tuple[str, ...]
) -> tuple[list[str], dict[str, np.ndarray]]:
    """(morphology names, ``truth/<field>`` for ``rows``) of a generator file, in one read; real
    data has neither, and missing fields are left out."""
    with h5py.File(stamps.source.path, "r") as fh:
        names = str(fh.attrs["morphologies"]).split(",") if "morphologies" in fh.attrs else []
        truth = {f: fh[f"truth/{f}"][rows[0] : rows[1]] for f in fields if f"truth/{f}" in fh}
    return names, truth


def write_figures(
    model: keras.Model, stamps: GalaxyStamps, rows: tuple[int, int], delta: np.ndarray,
    metrics: dict, output_dir: str, num_show: int = 64,
) -> list[str]:
    """The seed's figures as PNGs: stamp, posterior mean, per-pixel variance (figures 4 and 5),
    the baseline's fit, samples, and the log-likelihood comparison."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = stamps.arrays((rows[0], min(rows[1], rows[0] + num_show)))
    images = show["images"]
    # The stamp with the most signal among the first few: structure is what the figures show.
    index = int(np.argmax(np.clip(images, 0, None).sum(axis=(1, 2, 3))))
    stamp = images[index : index + 1]
    posterior = vae.encode(model, stamp)
    likelihood = vae.decode(model, posterior.mode())
    mean, variance = likelihood.mean().numpy()[0], likelihood.variance().numpy()[0]
    psf = None
    if "psf" in show:
        psf = baseline.fit_psf(show["psf"][index : index + 1])
    noise_var = show["noise_variance"][index : index + 1] if "noise_variance" in show else None
    base = baseline.fit(stamp, noise_var, psf)
    paths = []

    def save_image(array: np.ndarray, title: str, name: str, cmap: str = "magma",
                   label: str = "intensity (noise sigma)") -> None:
        fig, ax = plt.subplots(figsize=(4.2, 3.6))
        im = ax.imshow(array[..., 0], origin="lower", cmap=cmap)
        fig.colorbar(im, ax=ax, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.tight_layout()
        path = os.path.join(output_dir, name)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)

    save_image(stamp[0], f"held-out stamp (row {rows[0] + index})", "galaxy_stamp.png")
    save_image(mean, "VAE mean at the posterior mode (seed fig. 4)", "galaxy_posterior_mean.png")
    save_image(variance, "VAE per-pixel variance (seed fig. 5)", "galaxy_posterior_variance.png",
               cmap="viridis", label="variance (noise sigma^2)")
    save_image(base.model_images[0], "bivariate-normal galaxy model, ML fit",
               "galaxy_baseline_fit.png")

    samples = prior.sample(model, 16, seed=0)
    fig, axes = plt.subplots(4, 4, figsize=(7, 7))
    for ax, img in zip(axes.flat, samples):
        ax.imshow(np.arcsinh(img[..., 0] / 3.0), origin="lower", cmap="magma")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("samples x ~ p(x|z), z ~ N(0, I) (asinh stretch)", fontsize=10)
    fig.tight_layout()
    path = os.path.join(output_dir, "galaxy_samples.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)

    fig, ax = plt.subplots(figsize=(5, 3.6))
    # Differences span ~1e1 to ~1e5 nats on either side: a symmetric-log axis keeps the sign
    # change (what the fraction counts) and the long tail readable together.
    edge = max(float(np.abs(delta).max()), 10.0) if len(delta) else 10.0
    bins = np.concatenate([-np.geomspace(edge, 1.0, 25), np.geomspace(1.0, edge, 25)])
    ax.hist(delta, bins=bins, color="tab:blue")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.axvline(0, color="k", lw=1)
    ax.set_xlabel("log p_VAE(x) - log p_bivariate normal(x)  [nats]")
    ax.set_ylabel("held-out stamps")
    ax.set_title(f"VAE higher on {100 * metrics['fraction_vae_better']:.1f}% of "
                 f"{metrics['stamps']} stamps (seed: 97.2%)", fontsize=10)
    fig.tight_layout()
    path = os.path.join(output_dir, "galaxy_loglik_comparison.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)
    return paths

