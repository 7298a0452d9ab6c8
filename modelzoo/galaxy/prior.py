"""The galaxy VAE's prior p(z): N(0, I) or a Gaussian mixture fitted after (or during) training
to the aggregate posterior of the training stamps (two-stage VAE: Ghosh et al., ICLR 2020,
arXiv:1903.12436; Dai & Wipf, ICLR 2019, arXiv:1903.05789)."""

from __future__ import annotations

import math

import keras
import numpy as np

from modelzoo.galaxy.layers import MixturePrior, _tfd
from modelzoo.galaxy.vae import _as_stamps, decode, latent_dim


def prior_layer(model: keras.Model) -> MixturePrior | None:
    """The model's :class:`MixturePrior`, or None when p(z) is the fixed N(0, I)."""
    decoder = model.get_layer("decoder")
    return next((lay for lay in decoder.layers if isinstance(lay, MixturePrior)), None)


def prior(model: keras.Model):
    """p(z): N(0, I) as a ``tfd.MultivariateNormalDiag``, or the model's fitted
    :class:`MixturePrior` as a ``tfd.MixtureSameFamily``."""
    import tensorflow as tf

    layer = prior_layer(model)
    if layer is not None:
        return layer.distribution()
    d = latent_dim(model)
    return _tfd().MultivariateNormalDiag(tf.zeros(d), tf.ones(d))


def posterior_draws(model: keras.Model, batches, *, samples_per_stamp: int = 1,
                    seed: int = 0) -> np.ndarray:
    """Draws z ~ q(z | x), ``samples_per_stamp`` per stamp, of an array of stamps (N, S, S[, B])
    in model units or an iterable of such arrays: a sample of the aggregate posterior."""
    if isinstance(batches, np.ndarray):
        batches = [batches]
    rng = np.random.default_rng(seed)
    encoder = model.get_layer("encoder")
    draws = [np.zeros((0, latent_dim(model)), np.float32)]
    for images in batches:
        x = _as_stamps(model, images)
        if len(x):
            loc, scale = encoder.predict(x, batch_size=256, verbose=0)
            for _ in range(int(samples_per_stamp)):
                draws.append(loc + scale * rng.standard_normal(loc.shape).astype(np.float32))
    return np.concatenate(draws)


def fit_prior(model: keras.Model, draws: np.ndarray, *, seed: int = 0,
              max_iterations: int = 300, warm_start: bool = False) -> dict[str, float]:
    """Fit the model's :class:`MixturePrior` to posterior draws of training stamps
    (:func:`posterior_draws`): a full-covariance Gaussian mixture by expectation-maximisation
    (scikit-learn) becomes p(z); encoder and decoder are unchanged. Fit on training stamps only,
    so that log p(x) of held-out stamps stays an honest estimate.

    ``warm_start``: start EM from the current mixture if it has been fitted before (refits
    during training: the prior the encoder trains against then moves continuously, and EM
    needs few iterations); otherwise, and for the unfitted N(0, I), from k-means.

    Returns ``{"draws", "log_density_mixture", "log_density_standard_normal", "converged"}``:
    the mean log-density of the draws under the fitted mixture and under N(0, I); their
    difference is what the fitted prior saves per stamp, in nats, on the training stamps.
    """
    from scipy.special import softmax
    from sklearn.mixture import GaussianMixture

    layer = prior_layer(model)
    if layer is None:
        raise ValueError("the model has the fixed prior N(0, I); build it with "
                         "prior_components > 0 to fit one")
    z = np.asarray(draws, np.float64)
    if z.ndim != 2 or z.shape[1] != latent_dim(model):
        raise ValueError(f"draws must be (N, {latent_dim(model)}), got {z.shape}")
    if len(z) < 2 * layer.components:
        raise ValueError(f"{len(z)} posterior draws are too few for a {layer.components}-"
                         "component prior; use more training stamps or fewer components")
    init = {}
    locs = np.asarray(layer.locs, np.float64)
    if warm_start and np.ptp(locs, axis=0).max() > 0:  # identical components: never fitted
        scale_inv = np.linalg.inv(np.asarray(layer.scale_tril, np.float64))
        init = {"weights_init": softmax(np.asarray(layer.logits, np.float64)),
                "means_init": locs,
                "precisions_init": np.swapaxes(scale_inv, 1, 2) @ scale_inv}
    mixture = GaussianMixture(layer.components, covariance_type="full", reg_covar=1e-6,
                              max_iter=int(max_iterations), random_state=int(seed),
                              **init).fit(z)
    layer.logits.assign(np.log(mixture.weights_).astype(np.float32))
    layer.locs.assign(mixture.means_.astype(np.float32))
    layer.scale_tril.assign(np.linalg.cholesky(mixture.covariances_).astype(np.float32))
    standard = -0.5 * (np.sum(z**2, axis=1) + z.shape[1] * math.log(2 * math.pi))
    return {"draws": float(len(z)), "log_density_mixture": float(mixture.score(z)),
            "log_density_standard_normal": float(standard.mean()),
            "converged": float(mixture.converged_)}


def sample(model: keras.Model, n: int, seed: int | None = None,
           noise: bool = True) -> np.ndarray:
    """``n`` new galaxies (n, S, S, B): z ~ p(z), then x ~ p(x | z) (``noise=False`` returns
    the decoder mean instead of a draw)."""
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((n, latent_dim(model)))
    layer = prior_layer(model)
    if layer is None:
        z = eps
    else:
        logits = np.asarray(layer.logits, np.float64)
        weights = np.exp(logits - logits.max())
        component = rng.choice(len(weights), size=n, p=weights / weights.sum())
        z = (np.asarray(layer.locs)[component]
             + np.einsum("nij,nj->ni", np.asarray(layer.scale_tril)[component], eps))
    images = decode(model, z.astype(np.float32))
    if not noise:
        return images.mean().numpy()
    mean, std = images.mean().numpy(), images.stddev().numpy()
    return (mean + std * rng.standard_normal(mean.shape)).astype(np.float32)
