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

    >>> from modelzoo.models import galaxy
    >>> model = modelzoo.get("galaxy_vae")
    >>> q = galaxy.encode(model, stamps)        # posterior over z, one per stamp
    >>> image = galaxy.decode(model, q.mode())  # how the galaxy most likely appears ...
    >>> image.mean(), image.variance()          # ... and the per-pixel uncertainty
    >>> galaxy.sample(model, 16)                # new galaxies
    >>> galaxy.log_prob(model, stamps, num_samples=128)  # nats per stamp
    >>> galaxy.log_prob(model, stamps, 128, refine_steps=30)  # tighter: per-stamp q refined

Stamps are in *model units*: images divided by one constant per data set (the background noise
sigma, see :mod:`modelzoo.data.galaxy`); densities are over those units.

References:
    J. Regier, J. McAuliffe, Prabhat, "A deep generative model for astronomical images of
    galaxies", NIPS 2015 Workshop: Advances in Approximate Bayesian Inference.
    D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014, arXiv:1312.6114.
    Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016,
    arXiv:1509.00519.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import keras
import numpy as np
from keras import layers

from modelzoo.registry import register_model

_CITATION = (
    "Regier, McAuliffe, Prabhat, A deep generative model for astronomical images of galaxies, "
    "NIPS 2015 Workshop on Advances in Approximate Bayesian Inference; Kingma & Welling, "
    "Auto-Encoding Variational Bayes, ICLR 2014; Burda et al., Importance Weighted "
    "Autoencoders, ICLR 2016"
)
_LAYOUT = (
    "HDF5 images (N,S,S) or (N,S,S,B) sky-subtracted; optional noise_variance (same shape) and "
    "psf (N,P,P[,B]); attribute noise_sigma sets the model unit"
)
_PUBLISHED = (
    "Trained on 43,444 SDSS galaxy images (69x69); on 97.2% of held-out images the VAE assigns a "
    "higher likelihood than the bivariate-Gaussian galaxy model (Prabhat, O'Reilly 2017)."
)
ARCHITECTURES = ("conv", "dense")
MEAN_ACTIVATIONS = ("sinh", "linear")
_MAX_LOG_VARIANCE = 20.0  # exp(20) ~ 5e8 (model units^2): far above any real stamp
# Posterior refinement: ELBO samples per step, Adam step (posterior widths), decodes per batch.
_REFINE_SAMPLES, _REFINE_LEARNING_RATE, _REFINE_DECODES = 4, 0.3, 256


def _tfd():
    import tensorflow_probability as tfp

    return tfp.distributions


@keras.saving.register_keras_serializable(package="modelzoo")
class AsinhScale(layers.Layer):
    """``asinh(x / softening)``: compresses the encoder's input (stamps span ~3 decades) while
    staying linear within the noise; it only shapes q(z|x), not the density over x."""

    def __init__(self, softening: float = 3.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.softening = float(softening)

    def call(self, x):
        return keras.ops.arcsinh(x / self.softening)

    def get_config(self) -> dict:
        return {**super().get_config(), "softening": self.softening}


@keras.saving.register_keras_serializable(package="modelzoo")
class GaussianHead(layers.Layer):
    """Splits raw network outputs into a mean and a positive variance per element.

    ``mean = softening * sinh(h)`` (or ``h``): the network works on the asinh scale, in which a
    faint disk and a bright core differ by a few units, not by hundreds;
    ``variance = min_variance + exp(g)`` with ``g`` clipped for numerical safety.
    """

    def __init__(self, channels: int, mean_activation: str = "sinh", softening: float = 3.0,
                 min_variance: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.mean_activation = mean_activation
        self.softening = float(softening)
        self.min_variance = float(min_variance)

    def call(self, raw):
        ops = keras.ops
        h, g = raw[..., : self.channels], raw[..., self.channels :]
        if self.mean_activation == "sinh":
            mean = self.softening * ops.sinh(ops.clip(h, -20.0, 20.0))
        else:
            mean = h
        variance = self.min_variance + ops.exp(ops.clip(g, -30.0, _MAX_LOG_VARIANCE))
        return mean, variance

    def get_config(self) -> dict:
        return {**super().get_config(), "channels": self.channels,
                "mean_activation": self.mean_activation, "softening": self.softening,
                "min_variance": self.min_variance}


@keras.saving.register_keras_serializable(package="modelzoo")
class PosteriorScale(layers.Layer):
    """Raw encoder outputs -> (loc, scale) of the diagonal normal q(z | x)."""

    def __init__(self, latent_dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)

    def call(self, raw):
        loc, pre = raw[..., : self.latent_dim], raw[..., self.latent_dim :]
        return loc, keras.ops.softplus(pre) + 1e-4

    def get_config(self) -> dict:
        return {**super().get_config(), "latent_dim": self.latent_dim}


@keras.saving.register_keras_serializable(package="modelzoo")
class Reparameterize(layers.Layer):
    """``z = loc + scale * eps``, eps ~ N(0, I): a sample of q(z | x) that gradients flow
    through (Kingma & Welling 2014). Seeded by a Keras SeedGenerator (state in the weights)."""

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, loc, scale):
        eps = keras.random.normal(keras.ops.shape(loc), seed=self.seed_generator)
        return loc + scale * eps

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="modelzoo")
class ELBOLoss(layers.Layer):
    """Adds the negative ELBO (nats per stamp, batch mean) as the model's loss and passes the
    decoder's mean and variance through.

    ``log p(x|z)`` is the log-density of the diagonal normal over all pixels and bands; the KL
    divergence between the diagonal-normal posterior and the standard-normal prior is analytic.

    With ``beta_nll > 0`` the loss *value* stays the negative ELBO but its gradient is that of
    the beta-NLL (Seitzer et al., ICLR 2022): each pixel's log-density is weighted by its
    variance^beta, held constant. A heteroscedastic decoder otherwise learns to explain a bright
    core by a huge variance, which then starves the mean there of gradient (the cores stay
    blurred); the weights are per-pixel constants, so each pixel's optimum (mean, variance) is
    unchanged.
    """

    def __init__(self, beta_nll: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta_nll = float(beta_nll)

    def call(self, x, loc, scale, mean, variance):
        import tensorflow as tf

        tfd = _tfd()
        pixel_log_prob = tfd.Normal(mean, tf.sqrt(variance)).log_prob(x)
        posterior = tfd.MultivariateNormalDiag(loc, scale)
        prior = tfd.MultivariateNormalDiag(tf.zeros_like(loc), tf.ones_like(scale))
        kl = tfd.kl_divergence(posterior, prior)
        elbo = tf.reduce_sum(pixel_log_prob, axis=(1, 2, 3)) - kl
        loss = -tf.reduce_mean(elbo)
        if self.beta_nll > 0:
            weight = tf.stop_gradient(variance**self.beta_nll)
            surrogate = -tf.reduce_mean(
                tf.reduce_sum(weight * pixel_log_prob, axis=(1, 2, 3)) - kl)
            loss = tf.stop_gradient(loss) + surrogate - tf.stop_gradient(surrogate)
        self.add_loss(loss)
        return mean, variance

    def get_config(self) -> dict:
        return {**super().get_config(), "beta_nll": self.beta_nll}


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


@register_model(
    domain="astronomy",
    task="density estimation",
    inputs="(69, 69, bands) galaxy stamps in units of the background noise sigma",
    outputs="per-pixel normal (mean, variance) of the reconstruction; loss = -ELBO",
    citation=_CITATION,
    data_layout=_LAYOUT,
    published=_PUBLISHED,
    recipe="galaxy_vae",
)
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
    seed: int | None = None,
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
        seed: seed of the reparameterisation noise during training.

    The model maps stamps to the decoder's (mean, variance) at one posterior sample and carries
    the negative ELBO as its loss, so ``model.fit(stamps)`` trains it; the nested ``encoder`` and
    ``decoder`` models back :func:`encode`, :func:`decode`, :func:`sample`, :func:`log_prob`.
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
    loc, scale = PosteriorScale(latent_dim, name="posterior")(raw)
    encoder = keras.Model(enc_in, [loc, scale], name="encoder")

    # Decoder: z -> (mean, variance) of p(x | z).
    dec_in = keras.Input(shape=(latent_dim,), name="z")
    if architecture == "conv":
        raw = _conv_decoder(dec_in, image_size, bands, filters, hidden)
    else:
        raw = _dense_decoder(dec_in, image_size, bands, hidden)
    mean, variance = GaussianHead(bands, mean_activation, softening, min_variance,
                                  name="likelihood")(raw)
    decoder = keras.Model(dec_in, [mean, variance], name="decoder")

    # Training graph: encode, sample z with the reparameterisation, decode, add -ELBO.
    x = keras.Input(shape=shape, name="stamp")
    q_loc, q_scale = encoder(x)
    z = Reparameterize(seed, name="reparameterize")(q_loc, q_scale)
    p_mean, p_var = decoder(z)
    outputs = ELBOLoss(beta_nll, name="elbo")(x, q_loc, q_scale, p_mean, p_var)
    return keras.Model(x, list(outputs), name="galaxy_vae")


# --- working with the distributions -------------------------------------------------------


def latent_dim(model: keras.Model) -> int:
    """Size of z of a ``galaxy_vae`` model."""
    return int(model.get_layer("decoder").inputs[0].shape[-1])


def prior(model: keras.Model):
    """p(z) = N(0, I) as a ``tfd.MultivariateNormalDiag``."""
    import tensorflow as tf

    d = latent_dim(model)
    return _tfd().MultivariateNormalDiag(tf.zeros(d), tf.ones(d))


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


def sample(model: keras.Model, n: int, seed: int | None = None,
           noise: bool = True) -> np.ndarray:
    """``n`` new galaxies (n, S, S, B): z ~ p(z), then x ~ p(x | z) (``noise=False`` returns
    the decoder mean instead of a draw)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, latent_dim(model))).astype(np.float32)
    images = decode(model, z)
    if not noise:
        return images.mean().numpy()
    mean, std = images.mean().numpy(), images.stddev().numpy()
    return (mean + std * rng.standard_normal(mean.shape)).astype(np.float32)


def log_prob(
    model: keras.Model,
    images: np.ndarray,
    num_samples: int = 64,
    *,
    seed: int | None = 0,
    max_decodes: int = 2048,
    refine_steps: int = 0,
) -> np.ndarray:
    """Importance-weighted estimate of log p(x) per stamp, in nats (Burda et al. 2016).

    ``log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)`` with ``z_k ~ q(z|x)``: a stochastic lower
    bound of log p(x) (its expectation, not each draw), non-decreasing in K on average, equal to
    the ELBO at K = 1 and consistent as K grows.

    With ``refine_steps > 0`` the proposal is the equal mixture of the encoder's q(z|x) and a
    per-stamp refined posterior (:func:`refine_posterior`), half of the K draws from each
    (stratified; weights use the mixture density, so the estimate stays unbiased for p(x)).
    The mixture is a *defensive* proposal (Hesterberg 1995): it costs at most log 2 against the
    better of the two, so refinement can only tighten the bound, never break it.

    Args:
        model: a ``galaxy_vae`` model.
        images: (N, S, S[, B]) stamps in model units.
        num_samples: K, importance samples per stamp.
        seed: seed of the proposal draws (None: fresh randomness).
        max_decodes: stamps x samples decoded per step (memory).
        refine_steps: gradient steps of :func:`refine_posterior` (0: the encoder alone).
    """
    import tensorflow as tf

    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    x = _as_stamps(model, images)
    encoder, decoder = model.get_layer("encoder"), model.get_layer("decoder")
    rng = np.random.default_rng(seed)
    d, k = latent_dim(model), int(num_samples)
    loc, scale = encoder.predict(x, batch_size=256, verbose=0)
    refined_loc, refined_scale = loc, scale
    # Draws from the encoder's q: all of them, or the first half when refining.
    from_encoder = k
    if refine_steps > 0:
        refined_loc, refined_scale = _refine(
            model, x, loc, scale, refine_steps, seed=None if seed is None else seed + 1)
        from_encoder = k // 2
    step = max(1, max_decodes // k)
    chunk_log_prob = _compiled(model, ("log_prob", k, from_encoder),
                               lambda: _make_log_prob_fn(decoder, d, k, from_encoder))
    out = []
    for start in range(0, len(x), step):
        rows = slice(start, start + step)
        eps = rng.standard_normal((k, len(x[rows]), d)).astype(np.float32)
        out.append(chunk_log_prob(
            tf.constant(x[rows]), tf.constant(loc[rows]), tf.constant(scale[rows]),
            tf.constant(refined_loc[rows]), tf.constant(refined_scale[rows]),
            tf.constant(eps)).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def refine_posterior(
    model: keras.Model,
    images: np.ndarray,
    steps: int = 50,
    *,
    num_samples: int = _REFINE_SAMPLES,
    learning_rate: float = _REFINE_LEARNING_RATE,
    seed: int | None = 0,
    max_decodes: int = _REFINE_DECODES,
):
    """q(z | x) fitted to each stamp by stochastic ELBO ascent, started from the encoder's.

    The encoder is one network for all stamps and leaves an *amortisation gap* on each
    (Cremer, Li, Duvenaud, "Inference Suboptimality in Variational Autoencoders", ICML 2018);
    a few gradient steps on the stamp's own ELBO close part of it (semi-amortised inference,
    Kim et al., ICML 2018). Steps are taken with Adam in the encoder posterior's whitened
    coordinates (``loc = m + s * u``, ``log scale = log s + w``), so ``learning_rate`` is in
    posterior widths, whatever the stamp's signal-to-noise; it decays to zero over the steps
    (cosine), so early steps travel and late ones settle. The decoder is not changed.

    Returns a ``tfd.MultivariateNormalDiag`` with batch shape (N,).
    """
    import tensorflow as tf

    x = _as_stamps(model, images)
    loc, scale = model.get_layer("encoder").predict(x, batch_size=256, verbose=0)
    loc, scale = _refine(model, x, loc, scale, steps, num_samples=num_samples,
                         learning_rate=learning_rate, seed=seed, max_decodes=max_decodes)
    return _tfd().MultivariateNormalDiag(tf.constant(loc), tf.constant(scale))


def _refine(model: keras.Model, x: np.ndarray, loc: np.ndarray, scale: np.ndarray, steps: int,
            *, num_samples: int = _REFINE_SAMPLES,
            learning_rate: float = _REFINE_LEARNING_RATE, seed: int | None = 0,
            max_decodes: int = _REFINE_DECODES) -> tuple[np.ndarray, np.ndarray]:
    """:func:`refine_posterior` from the encoder's (loc, scale), already computed."""
    import tensorflow as tf

    if steps < 1:
        return loc, scale
    rng = np.random.default_rng(seed)
    d, s = latent_dim(model), int(num_samples)
    refine = _compiled(model, ("refine", s),
                       lambda: _make_refine_fn(model.get_layer("decoder"), d))
    step = max(1, max_decodes // s)
    out_loc, out_scale = [], []
    for start in range(0, len(x), step):
        rows = slice(start, start + step)
        eps = rng.standard_normal((int(steps), s, len(x[rows]), d)).astype(np.float32)
        new_loc, new_scale = refine(tf.constant(x[rows]), tf.constant(loc[rows]),
                                    tf.constant(scale[rows]), tf.constant(eps),
                                    tf.constant(learning_rate, tf.float32))
        out_loc.append(new_loc.numpy())
        out_scale.append(new_scale.numpy())
    return np.concatenate(out_loc), np.concatenate(out_scale)


# Compiled steps per model (tracing takes a second or two), keyed by what changes the graph.
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled(model: keras.Model, key: tuple, make):
    fns = _COMPILED.setdefault(model, {})
    if key not in fns:
        fns[key] = make()
    return fns[key]


def _log_likelihood(decoder: keras.Model, xb, z, d: int):
    """log p(x | z) for draws z (K, n, d) of n stamps xb: (K, n)."""
    import tensorflow as tf

    tfd = _tfd()
    k, n = tf.shape(z)[0], tf.shape(xb)[0]
    mean, variance = decoder(tf.reshape(z, (-1, d)), training=False)
    shape = tf.concat([[k, n], tf.shape(xb)[1:]], 0)
    mean, variance = tf.reshape(mean, shape), tf.reshape(variance, shape)
    return tfd.Independent(tfd.Normal(mean, tf.sqrt(variance)), 3).log_prob(xb[None])


def _make_log_prob_fn(decoder: keras.Model, d: int, k: int, from_encoder: int):
    import tensorflow as tf

    tfd = _tfd()
    share = from_encoder / k

    @tf.function(reduce_retracing=True)
    def chunk_log_prob(xb, loc, scale, refined_loc, refined_scale, eps):
        q = tfd.MultivariateNormalDiag(loc, scale)
        z = tf.concat([loc + scale * eps[:from_encoder],
                       refined_loc + refined_scale * eps[from_encoder:]], 0)  # (K, n, d)
        log_q = q.log_prob(z)
        if from_encoder < k:  # the stratified mixture's density
            refined_q = tfd.MultivariateNormalDiag(refined_loc, refined_scale)
            parts = [refined_q.log_prob(z) + math.log(1 - share)]
            if from_encoder:
                parts.append(log_q + math.log(share))
            log_q = tf.reduce_logsumexp(tf.stack(parts), axis=0)
        log_pz = tfd.MultivariateNormalDiag(tf.zeros(d), tf.ones(d)).log_prob(z)
        log_w = tf.cast(_log_likelihood(decoder, xb, z, d) + log_pz - log_q, tf.float64)
        return tf.reduce_logsumexp(log_w, axis=0) - math.log(k)

    return chunk_log_prob


def _make_refine_fn(decoder: keras.Model, d: int):
    import tensorflow as tf

    beta1, beta2, tiny = 0.9, 0.999, 1e-8

    def adam(param, grad, first, second, step, learning_rate):
        first = beta1 * first + (1 - beta1) * grad
        second = beta2 * second + (1 - beta2) * grad**2
        m_hat, v_hat = first / (1 - beta1**step), second / (1 - beta2**step)
        return param - learning_rate * m_hat / (tf.sqrt(v_hat) + tiny), first, second

    @tf.function(reduce_retracing=True)
    def refine(xb, loc, scale, eps, learning_rate):
        # u, w: whitened shifts of loc and log scale; m_*, v_*: Adam's moment estimates.
        u, w = tf.zeros_like(loc), tf.zeros_like(loc)
        m_u, v_u, m_w, v_w = (tf.zeros_like(loc) for _ in range(4))
        log_scale = tf.math.log(scale)
        total = tf.cast(tf.shape(eps)[0], tf.float32)
        for t in tf.range(tf.shape(eps)[0]):
            with tf.GradientTape() as tape:
                tape.watch([u, w])
                q_loc, q_log_scale = loc + scale * u, log_scale + w
                z = q_loc + tf.exp(q_log_scale) * eps[t]
                kl = tf.reduce_sum(
                    0.5 * (q_loc**2 + tf.exp(2.0 * q_log_scale) - 1.0) - q_log_scale, axis=-1)
                elbo = tf.reduce_mean(_log_likelihood(decoder, xb, z, d), axis=0) - kl
                loss = -tf.reduce_sum(elbo)  # stamps are independent: one sum, own gradients
            grad_u, grad_w = tape.gradient(loss, [u, w])
            step = tf.cast(t + 1, tf.float32)
            rate = learning_rate * 0.5 * (1.0 + tf.cos(math.pi * (step - 1.0) / total))
            u, m_u, v_u = adam(u, grad_u, m_u, v_u, step, rate)
            w, m_w, v_w = adam(w, grad_w, m_w, v_w, step, rate)
        return loc + scale * u, tf.exp(log_scale + w)

    return refine


def elbo(model: keras.Model, images: np.ndarray, *, seed: int | None = 0) -> np.ndarray:
    """One-sample ELBO per stamp (= :func:`log_prob` with K = 1)."""
    return log_prob(model, images, num_samples=1, seed=seed)


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
