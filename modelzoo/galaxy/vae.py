"""Probabilistic galaxy model: a variational auto-encoder whose decoder is a distribution.

The generative model of the seed's first case study (Regier, McAuliffe, Prabhat 2015): a latent
``z ~ N(0, I)`` and, given ``z``, an image ``x ~ N(mu(z), diag sigma^2(z))`` with one mean and
one variance per pixel and band, both computed by a neural network. The encoder gives the
approximate posterior ``q(z | x) = N(m(x), diag s^2(x))``; training maximises the evidence lower
bound (ELBO) ``E_q[log p(x | z)] - KL(q(z | x) || p(z))`` with reparameterised samples
``z = m + s * eps`` (Kingma & Welling 2014). The log-likelihood of an image is estimated by
importance sampling with the encoder as proposal (Burda, Grosse, Salakhutdinov 2016):

    log p(x) ~= log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x),   z_k ~ q(z | x),

a stochastic lower bound whose expectation never decreases with K and tends to log p(x).

Working with distributions (TensorFlow Probability ``tfd`` objects; ``tfp.layers`` do not work
with Keras 3, so the distributions live inside plain Keras layers and these functions):

    >>> from modelzoo import galaxy             # the verbs, from one place
    >>> model = modelzoo.get("galaxy_vae")
    >>> q = galaxy.encode(model, stamps)        # posterior over z, one per stamp
    >>> image = galaxy.decode(model, q.mode())  # how the galaxy most likely appears ...
    >>> image.mean(), image.variance()          # ... and the per-pixel uncertainty
    >>> galaxy.sample(model, 16)                # new galaxies
    >>> galaxy.log_prob(model, stamps, num_samples=128)  # nats per stamp
    >>> galaxy.log_prob(model, stamps, 128, refine_steps=30)  # tighter: refined, Laplace
    >>> galaxy.log_prob(model, stamps, 128, noise_variance=v)  # given the survey's noise map
    >>> galaxy.fit_prior(model, galaxy.posterior_draws(model, training_stamps))  # p(z)

Stamps are in *model units*: images divided by one constant per data set (the background noise
sigma, see :mod:`modelzoo.galaxy.reader`); densities are over those units.

References:
    J. Regier, J. McAuliffe, Prabhat, "A deep generative model for astronomical images of
    galaxies", NIPS 2015 Workshop: Advances in Approximate Bayesian Inference.
    D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014, arXiv:1312.6114.
    Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016,
    arXiv:1509.00519.
    P. Ghosh, M. S. M. Sajjadi, A. Vergari, M. Black, B. Scholkopf, "From Variational to
    Deterministic Autoencoders", ICLR 2020, arXiv:1903.12436 (ex-post density estimation).
    B. Dai, D. Wipf, "Diagnosing and Enhancing VAE Models", ICLR 2019, arXiv:1903.05789.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers

from modelzoo.galaxy.layers import (
    AsinhScale,
    ELBOLoss,
    GaussianHead,
    MixturePrior,
    ModelUnits,
    PosteriorScale,
    Reparameterize,
    _tfd,
)

ARCHITECTURES = ("conv", "dense")
MEAN_ACTIVATIONS = ("sinh", "linear")
# The posterior, prior, likelihood and ELBO layers compute in float32 under a mixed policy
# (``train.precision``): bfloat16's 8-bit mantissa cannot carry log-densities summed over
# thousands of pixels, and TFP's distributions want one dtype.
PROBABILISTIC_DTYPE = "float32"


def _conv_encoder(inputs, latent_dim: int, filters: list[int], hidden: list[int]):
    x = inputs
    for i, f in enumerate(filters):
        x = layers.Conv2D(f, 4, strides=2, padding="same", activation="elu",
                          name=f"enc_conv{i + 1}")(x)
    x = layers.Flatten(name="enc_flatten")(x)
    for i, units in enumerate(hidden):
        x = layers.Dense(units, activation="elu", name=f"enc_dense{i + 1}")(x)
    return layers.Dense(2 * latent_dim, name="enc_posterior")(x)


def _conv_decoder(z, image_size: int, channels: int, filters: list[int], hidden: list[int]):
    stages = len(filters)
    base = math.ceil(image_size / 2**stages)
    x = z
    for i, units in enumerate(reversed(hidden)):
        x = layers.Dense(units, activation="elu", name=f"dec_dense{i + 1}")(x)
    x = layers.Dense(base * base * filters[-1], activation="elu", name="dec_project")(x)
    x = layers.Reshape((base, base, filters[-1]), name="dec_reshape")(x)
    for i, f in enumerate(reversed(filters)):
        x = layers.Conv2DTranspose(f, 4, strides=2, padding="same", activation="elu",
                                   name=f"dec_deconv{i + 1}")(x)
    excess = base * 2**stages - image_size
    if excess:
        x = layers.Cropping2D(((excess // 2, excess - excess // 2),) * 2, name="dec_crop")(x)
    # One convolution at full resolution: sharp cores need capacity at the pixel scale.
    x = layers.Conv2D(filters[0], 3, padding="same", activation="elu", name="dec_refine")(x)
    return layers.Conv2D(2 * channels, 3, padding="same", name="dec_pixels")(x)


def _dense_decoder(z, image_size: int, channels: int, hidden: list[int]):
    x = z
    for i, units in enumerate(reversed(hidden)):
        x = layers.Dense(units, activation="elu", name=f"dec_dense{i + 1}")(x)
    x = layers.Dense(image_size * image_size * 2 * channels, name="dec_pixels")(x)
    return layers.Reshape((image_size, image_size, 2 * channels), name="dec_reshape")(x)


def galaxy_vae(
    image_size: int = 69,
    bands: int = 1,
    latent_dim: int = 16,
    architecture: str = "conv",
    filters: tuple[int, ...] = (32, 64, 128),
    hidden_units: tuple[int, ...] = (256,),
    softening: float = 3.0,
    mean_activation: str = "sinh",
    min_variance: float = 1e-3,
    input_transform: str = "asinh",
    beta_nll: float = 0.5,
    prior_components: int = 0,
    seed: int | None = None,
    input_scale: float = 1.0,
) -> keras.Model:
    """Variational auto-encoder of galaxy stamps with a per-pixel normal decoder (Regier et al.).

    Args:
        image_size: stamp side (the seed's 69).
        bands: channels per stamp (1 for one band, 5 for ugriz).
        latent_dim: size of z.
        architecture: ``"conv"`` (strided convolutions / transposed convolutions) or
            ``"dense"`` (fully connected; with ``hidden_units=()`` a linear-Gaussian model).
        filters: conv channels per stride-2 stage (conv only).
        hidden_units: dense layers between the image features and z (both networks).
        softening: scale (model units, ~ noise sigma) of the asinh input and sinh output.
        mean_activation: ``"sinh"`` or ``"linear"`` output for the decoder mean.
        min_variance: floor of the per-pixel variance (model units squared).
        input_transform: ``"asinh"`` or ``"none"`` before the encoder.
        beta_nll: gradient weighting of the pixel log-densities by variance^beta during
            training (0: the plain ELBO gradient); the loss value is the ELBO either way.
        prior_components: 0 for the fixed prior N(0, I); K > 0 for a K-component
            :class:`MixturePrior`, N(0, I) until :func:`fit_prior` fits it; the ELBO is
            always against the model's current prior.
        seed: seed of the reparameterisation noise during training.
        input_scale: image units per model unit (the training file's background noise sigma,
            ``data.scale``): the model divides a file's stamps by it itself, so the shipped
            weights take the stamps as stored.

    The model maps stamps (as stored) to the decoder's (mean, variance), in model units, at one
    posterior sample while training and at the posterior mean otherwise, and carries the
    negative ELBO as its loss, so ``model.fit(stamps)`` trains it; the nested ``encoder`` and
    ``decoder`` models (model units) back :func:`encode`, :func:`decode`, :func:`sample`,
    :func:`log_prob`.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    if mean_activation not in MEAN_ACTIVATIONS:
        raise ValueError(f"mean_activation must be one of {MEAN_ACTIVATIONS}")
    if input_transform not in ("asinh", "none"):
        raise ValueError("input_transform must be 'asinh' or 'none'")
    filters, hidden = [int(f) for f in filters], [int(h) for h in hidden_units]
    if architecture == "conv" and not filters:
        raise ValueError("the conv architecture needs at least one entry in filters")
    shape = (image_size, image_size, bands)

    # Encoder: x -> (loc, scale) of q(z | x).
    enc_in = keras.Input(shape=shape, name="stamp")
    h = AsinhScale(softening, name="asinh")(enc_in) if input_transform == "asinh" else enc_in
    if architecture == "conv":
        raw = _conv_encoder(h, latent_dim, filters, hidden)
    else:
        h = layers.Flatten(name="enc_flatten")(h)
        for i, units in enumerate(hidden):
            h = layers.Dense(units, activation="elu", name=f"enc_dense{i + 1}")(h)
        raw = layers.Dense(2 * latent_dim, name="enc_posterior")(h)
    loc, scale = PosteriorScale(latent_dim, dtype=PROBABILISTIC_DTYPE, name="posterior")(raw)
    encoder = keras.Model(enc_in, [loc, scale], name="encoder")

    # Decoder: z -> (mean, variance) of p(x | z).
    dec_in = keras.Input(shape=(latent_dim,), name="z")
    mixture = (MixturePrior(prior_components, dtype=PROBABILISTIC_DTYPE, name="prior")
               if prior_components else None)
    z_in = mixture(dec_in) if mixture else dec_in
    if architecture == "conv":
        raw = _conv_decoder(z_in, image_size, bands, filters, hidden)
    else:
        raw = _dense_decoder(z_in, image_size, bands, hidden)
    mean, variance = GaussianHead(bands, mean_activation, softening, min_variance,
                                  dtype=PROBABILISTIC_DTYPE, name="likelihood")(raw)
    decoder = keras.Model(dec_in, [mean, variance], name="decoder")

    # Training graph: encode, sample z with the reparameterisation, decode, add -ELBO.
    stamps = keras.Input(shape=shape, name="stamp")
    x = ModelUnits(input_scale, name="model_units")(stamps)
    q_loc, q_scale = encoder(x)
    z = Reparameterize(seed, dtype=PROBABILISTIC_DTYPE, name="reparameterize")(q_loc, q_scale)
    p_mean, p_var = decoder(z)
    outputs = ELBOLoss(beta_nll, mixture.distribution if mixture else None,
                       dtype=PROBABILISTIC_DTYPE, name="elbo")(x, q_loc, q_scale, z, p_mean, p_var)
    return keras.Model(stamps, list(outputs), name="galaxy_vae")


# --- working with the distributions -------------------------------------------------------


def input_scale(model: keras.Model) -> float:
    """Image units per model unit of a ``galaxy_vae`` model."""
    return model.get_layer("model_units").input_scale


def latent_dim(model: keras.Model) -> int:
    """Size of z of a ``galaxy_vae`` model."""
    return int(model.get_layer("decoder").inputs[0].shape[-1])



def encode(model: keras.Model, images: np.ndarray, batch_size: int = 256):
    """The approximate posterior q(z | x) of each stamp, a ``tfd.MultivariateNormalDiag`` with
    batch shape (N,): its mode is the most likely latent galaxy, its stddev the uncertainty."""
    import tensorflow as tf

    x = _as_stamps(model, images)
    loc, scale = model.get_layer("encoder").predict(x, batch_size=batch_size, verbose=0)
    return _tfd().MultivariateNormalDiag(tf.constant(loc), tf.constant(scale))


def decode(model: keras.Model, z, batch_size: int = 256):
    """p(x | z): per-pixel independent normals, a ``tfd.Independent(tfd.Normal)`` with batch
    shape (N,) and event shape (S, S, B). ``.mean()`` is the image, ``.variance()`` the per-pixel
    variance (the seed's figures 4 and 5)."""
    import tensorflow as tf

    z = np.asarray(z, np.float32).reshape(-1, latent_dim(model))
    mean, variance = model.get_layer("decoder").predict(z, batch_size=batch_size, verbose=0)
    tfd = _tfd()
    return tfd.Independent(tfd.Normal(tf.constant(mean), tf.sqrt(tf.constant(variance))), 3)


def noise_floored(likelihood, noise_variance: np.ndarray):
    """p(x | z, v): the decoder's pixel normals (:func:`decode`) with each variance floored at
    the pixel's known noise variance ``v`` (model units squared).

    A survey measures each pixel's noise (sky, read noise and the source's own shot noise: the
    variance map that pipelines ship), and no image model can predict a pixel more precisely
    than it was measured. The decoder learns its variance from all training stamps at once and
    undershoots that noise on some pixels of some stamps (a smooth variance map over a noisy
    image); the floor removes that overconfidence where the noise is known. It is the same
    knowledge the bivariate-normal baseline's likelihood uses (``noise="known"``), so the
    comparison conditions both models on the same noise map.
    """
    import tensorflow as tf

    tfd = _tfd()
    floor = tf.constant(_noise_floor(likelihood.mean().numpy(), noise_variance))
    variance = tf.maximum(likelihood.variance(), floor)
    return tfd.Independent(tfd.Normal(likelihood.mean(), tf.sqrt(variance)), 3)


def _noise_floor(x: np.ndarray, noise_variance: np.ndarray | None) -> np.ndarray:
    """Checked per-pixel variance floors shaped like ``x`` (zeros when the noise is unknown:
    max(variance, 0) leaves the decoder's variance as it is)."""
    if noise_variance is None:
        return np.zeros_like(x)
    floor = np.asarray(noise_variance, np.float32)
    if floor.size != x.size:
        raise ValueError(f"noise_variance of shape {floor.shape} does not match the stamps "
                         f"{x.shape}")
    floor = floor.reshape(x.shape)
    if not np.isfinite(floor).all() or (floor < 0).any():
        raise ValueError("noise_variance must be finite and non-negative")
    return floor


def _as_stamps(model: keras.Model, images: np.ndarray) -> np.ndarray:
    x = np.asarray(images, np.float32)
    want = tuple(model.inputs[0].shape[1:])
    if x.ndim == len(want) and x.shape == want:
        x = x[None]
    if x.ndim == 3 and want[-1] == 1:
        x = x[..., None]
    if x.shape[1:] != want:
        raise ValueError(f"stamps of shape {x.shape[1:]} do not fit the model's input {want}")
    return x
