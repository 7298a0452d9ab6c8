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
    >>> galaxy.log_prob(model, stamps, 128, refine_steps=30)  # tighter: refined, Laplace
    >>> galaxy.log_prob(model, stamps, 128, noise_variance=v)  # given the survey's noise map
    >>> galaxy.fit_prior(model, galaxy.posterior_draws(model, training_stamps))  # p(z)

Stamps are in *model units*: images divided by one constant per data set (the background noise
sigma, see :mod:`modelzoo.data.galaxy`); densities are over those units.

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
import weakref
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import layers

from modelzoo.registry import register_model

_CITATION = (
    "Regier, McAuliffe, Prabhat, A deep generative model for astronomical images of galaxies, "
    "NIPS 2015 Workshop on Advances in Approximate Bayesian Inference; Kingma & Welling, "
    "Auto-Encoding Variational Bayes, ICLR 2014; Burda et al., Importance Weighted "
    "Autoencoders, ICLR 2016; fitted prior: Ghosh et al., From Variational to Deterministic "
    "Autoencoders, ICLR 2020, and Dai & Wipf, Diagnosing and Enhancing VAE Models, ICLR 2019"
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
class MixturePrior(layers.Layer):
    """p(z) as a mixture of full-covariance normals, kept as non-trainable weights at the
    decoder's input (z passes through unchanged), so the weights file carries the whole
    generative model.

    It starts as N(0, I) (every component standard); :func:`fit_prior` fits the mixture to the
    aggregate posterior of the training stamps, two-stage, as in Ghosh et al., "From
    Variational to Deterministic Autoencoders", ICLR 2020 (ex-post density estimation) and
    Dai & Wipf, "Diagnosing and Enhancing VAE Models", ICLR 2019: after training, or also at
    the start of late epochs (the task's ``data.prior_refit_from``), so that encoder and
    decoder then train against the fitted prior (an empirical-Bayes alternation, as in the
    VAE with a learned mixture prior of Tomczak & Welling, "VAE with a VampPrior", AISTATS
    2018). A standard-normal prior leaves regions where many posteriors crowd (faint, compact
    galaxies) with little prior mass, and each such stamp pays for it in KL.
    """

    def __init__(self, components: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if components < 1:
            raise ValueError(f"a mixture prior needs at least one component, got {components}")
        self.components = int(components)

    def build(self, input_shape) -> None:
        d = int(input_shape[-1])
        eye = np.broadcast_to(np.eye(d, dtype=np.float32), (self.components, d, d))
        self.logits = self.add_weight(shape=(self.components,), initializer="zeros",
                                      trainable=False, name="logits")
        self.locs = self.add_weight(shape=(self.components, d), initializer="zeros",
                                    trainable=False, name="locs")
        self.scale_tril = self.add_weight(
            shape=(self.components, d, d), initializer=keras.initializers.Constant(eye.copy()),
            trainable=False, name="scale_tril")

    def call(self, z):
        return z

    def distribution(self):
        tfd = _tfd()
        return tfd.MixtureSameFamily(
            tfd.Categorical(logits=keras.ops.convert_to_tensor(self.logits)),
            tfd.MultivariateNormalTriL(keras.ops.convert_to_tensor(self.locs),
                                       keras.ops.convert_to_tensor(self.scale_tril)))

    def get_config(self) -> dict:
        return {**super().get_config(), "components": self.components}


@keras.saving.register_keras_serializable(package="modelzoo")
class ELBOLoss(layers.Layer):
    """Adds the negative ELBO (nats per stamp, batch mean) as the model's loss and passes the
    decoder's mean and variance through.

    ``log p(x|z)`` is the log-density of the diagonal normal over all pixels and bands. The KL
    divergence from the diagonal-normal posterior to N(0, I) is analytic. For a
    :class:`MixturePrior` (``prior``: its ``distribution`` method) it is
    ``KL(q || N(0, I)) + log N(z; 0, I) - log p(z)`` at the training draw z: unbiased, since
    ``KL(q || p) = KL(q || N) + E_q[log N(z) - log p(z)]``; while the mixture is unfitted (all
    components standard) the correction is zero at every z up to rounding (~1e-5 nats), so such
    a model trains as one with the fixed prior until its prior is first fitted.

    With ``beta_nll > 0`` the loss *value* stays the negative ELBO but its gradient is that of
    the beta-NLL (Seitzer et al., ICLR 2022): each pixel's log-density is weighted by its
    variance^beta, held constant. A heteroscedastic decoder otherwise learns to explain a bright
    core by a huge variance, which then starves the mean there of gradient (the cores stay
    blurred); the weights are per-pixel constants, so each pixel's optimum (mean, variance) is
    unchanged.
    """

    def __init__(self, beta_nll: float = 0.0, prior: Callable[[], Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta_nll = float(beta_nll)
        # A bound method, not the layer: Keras would track a layer attribute as a sublayer and
        # save the prior's weights twice (they belong to the decoder). Not in get_config; the
        # builder wires it.
        self.prior = prior

    def call(self, x, loc, scale, z, mean, variance):
        import tensorflow as tf

        tfd = _tfd()
        pixel_log_prob = tfd.Normal(mean, tf.sqrt(variance)).log_prob(x)
        posterior = tfd.MultivariateNormalDiag(loc, scale)
        standard = tfd.MultivariateNormalDiag(tf.zeros_like(loc), tf.ones_like(scale))
        kl = tfd.kl_divergence(posterior, standard)
        if self.prior is not None:
            kl += standard.log_prob(z) - self.prior().log_prob(z)
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
    prior_components: int = 0,
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
        prior_components: 0 for the fixed prior N(0, I); K > 0 for a K-component
            :class:`MixturePrior`, N(0, I) until :func:`fit_prior` fits it; the ELBO is
            always against the model's current prior.
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
    mixture = MixturePrior(prior_components, name="prior") if prior_components else None
    z_in = mixture(dec_in) if mixture else dec_in
    if architecture == "conv":
        raw = _conv_decoder(z_in, image_size, bands, filters, hidden)
    else:
        raw = _dense_decoder(z_in, image_size, bands, hidden)
    mean, variance = GaussianHead(bands, mean_activation, softening, min_variance,
                                  name="likelihood")(raw)
    decoder = keras.Model(dec_in, [mean, variance], name="decoder")

    # Training graph: encode, sample z with the reparameterisation, decode, add -ELBO.
    x = keras.Input(shape=shape, name="stamp")
    q_loc, q_scale = encoder(x)
    z = Reparameterize(seed, name="reparameterize")(q_loc, q_scale)
    p_mean, p_var = decoder(z)
    outputs = ELBOLoss(beta_nll, mixture.distribution if mixture else None,
                       name="elbo")(x, q_loc, q_scale, z, p_mean, p_var)
    return keras.Model(x, list(outputs), name="galaxy_vae")


# --- working with the distributions -------------------------------------------------------


def latent_dim(model: keras.Model) -> int:
    """Size of z of a ``galaxy_vae`` model."""
    return int(model.get_layer("decoder").inputs[0].shape[-1])


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


def log_prob(
    model: keras.Model,
    images: np.ndarray,
    num_samples: int = 64,
    *,
    seed: int | None = 0,
    max_decodes: int = 2048,
    refine_steps: int = 0,
    noise_variance: np.ndarray | None = None,
) -> np.ndarray:
    """Importance-weighted estimate of log p(x) per stamp, in nats (Burda et al. 2016).

    ``log (1/K) sum_k p(x|z_k) p(z_k) / r(z_k)`` with ``z_k ~ r``: a stochastic lower bound of
    log p(x) (its expectation, not each draw) for any proposal r, non-decreasing in K on average
    and consistent as K grows; with r = q(z|x) it equals the ELBO at K = 1. p(z) is the model's
    prior (:func:`prior`).

    With ``refine_steps > 0`` the proposal is the equal mixture of the encoder's q(z|x) and a
    full-covariance Laplace approximation of the posterior: centred at the per-stamp refined
    posterior mean (:func:`refine_posterior`), with precision the Fisher information of
    p(x | z) there plus the prior's precision. The decoder constrains z along oblique
    directions that a diagonal q can only cover by shrinking every axis; the full covariance
    follows them. Half of the K draws come from each part (stratified; weights use the mixture
    density). The mixture is a *defensive* proposal (Hesterberg 1995): it costs at most log 2
    against the better of its parts, so refinement can only tighten the bound, never break it.

    Args:
        model: a ``galaxy_vae`` model.
        images: (N, S, S[, B]) stamps in model units.
        num_samples: K, importance samples per stamp.
        seed: seed of the proposal draws (None: fresh randomness).
        max_decodes: stamps x samples decoded per step (memory).
        refine_steps: gradient steps of :func:`refine_posterior` before the Laplace
            approximation (0: the encoder alone).
        noise_variance: the survey's per-pixel noise variance of the stamps (model units
            squared, same shape as ``images``), if known: the density is then conditioned on
            it, each pixel's variance floored at its known noise (:func:`noise_floored`).
    """
    import tensorflow as tf

    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    x = _as_stamps(model, images)
    floor = _noise_floor(x, noise_variance)
    encoder = model.get_layer("encoder")
    rng = np.random.default_rng(seed)
    d, k = latent_dim(model), int(num_samples)
    loc, scale = encoder.predict(x, batch_size=256, verbose=0)
    laplace_loc = loc
    laplace_tril = np.zeros((len(x), d, d), np.float32)
    # Draws from the encoder's q: all of them, or the first half when refining.
    from_encoder = k
    if refine_steps > 0:
        laplace_loc, refined_scale = _refine(
            model, x, floor, loc, scale, refine_steps, seed=None if seed is None else seed + 1)
        laplace_tril = laplace_scale_tril(model, x, laplace_loc, noise_variance=floor)
        from_encoder = k // 2
    step = max(1, max_decodes // k)
    chunk_log_prob = _compiled(model, ("log_prob", k, from_encoder),
                               lambda: _make_log_prob_fn(model, d, k, from_encoder))
    out = []
    for start in range(0, len(x), step):
        rows = slice(start, start + step)
        eps = rng.standard_normal((k, len(x[rows]), d)).astype(np.float32)
        out.append(chunk_log_prob(
            tf.constant(x[rows]), tf.constant(floor[rows]), tf.constant(loc[rows]),
            tf.constant(scale[rows]),
            tf.constant(laplace_loc[rows]), tf.constant(laplace_tril[rows]),
            tf.constant(eps)).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def laplace_scale_tril(model: keras.Model, images: np.ndarray, z: np.ndarray,
                       max_decodes: int = 256, *,
                       noise_variance: np.ndarray | None = None) -> np.ndarray:
    """Cholesky factors (N, d, d) of the Laplace covariance of p(z | x) at ``z`` (one per stamp).

    The precision is the Fisher information of the decoder's normal pixels at z,
    ``J_mean^T V^-1 J_mean + 1/2 J_var^T V^-2 J_var`` (Jacobians by forward-mode
    differentiation, one tangent per latent axis; positive semi-definite, unlike the Hessian
    away from the mode), plus the prior's precision there (for a mixture prior, the
    components' precisions weighted by their responsibilities for z). ``noise_variance``:
    as in :func:`log_prob`.
    """
    import tensorflow as tf

    x = _as_stamps(model, images)
    floor = _noise_floor(x, noise_variance)
    d = latent_dim(model)
    precision_fn = _compiled(model, ("laplace",), lambda: _make_precision_fn(model, d))
    step = max(1, max_decodes // d)
    out = []
    for start in range(0, len(x), step):
        rows = slice(start, start + step)
        precision = precision_fn(tf.constant(np.asarray(z[rows], np.float32)),
                                 tf.constant(floor[rows])).numpy()
        covariance = np.linalg.inv(precision.astype(np.float64))
        covariance = 0.5 * (covariance + np.swapaxes(covariance, 1, 2))
        out.append(np.linalg.cholesky(covariance).astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, d, d), np.float32)


def refine_posterior(
    model: keras.Model,
    images: np.ndarray,
    steps: int = 50,
    *,
    num_samples: int = _REFINE_SAMPLES,
    learning_rate: float = _REFINE_LEARNING_RATE,
    seed: int | None = 0,
    max_decodes: int = _REFINE_DECODES,
    noise_variance: np.ndarray | None = None,
):
    """q(z | x) fitted to each stamp by stochastic ELBO ascent, started from the encoder's.

    The encoder is one network for all stamps and leaves an *amortisation gap* on each
    (Cremer, Li, Duvenaud, "Inference Suboptimality in Variational Autoencoders", ICML 2018);
    a few gradient steps on the stamp's own ELBO close part of it (semi-amortised inference,
    Kim et al., ICML 2018). Steps are taken with Adam in the encoder posterior's whitened
    coordinates (``loc = m + s * u``, ``log scale = log s + w``), so ``learning_rate`` is in
    posterior widths, whatever the stamp's signal-to-noise; it decays to zero over the steps
    (cosine), so early steps travel and late ones settle. The decoder is not changed. The
    ELBO's KL term is against the model's prior: analytic for N(0, I), a Monte Carlo estimate
    (same draws) for a mixture. ``noise_variance``: as in :func:`log_prob`.

    Returns a ``tfd.MultivariateNormalDiag`` with batch shape (N,).
    """
    import tensorflow as tf

    x = _as_stamps(model, images)
    loc, scale = model.get_layer("encoder").predict(x, batch_size=256, verbose=0)
    loc, scale = _refine(model, x, _noise_floor(x, noise_variance), loc, scale, steps,
                         num_samples=num_samples, learning_rate=learning_rate, seed=seed,
                         max_decodes=max_decodes)
    return _tfd().MultivariateNormalDiag(tf.constant(loc), tf.constant(scale))


def _refine(model: keras.Model, x: np.ndarray, floor: np.ndarray, loc: np.ndarray,
            scale: np.ndarray, steps: int,
            *, num_samples: int = _REFINE_SAMPLES,
            learning_rate: float = _REFINE_LEARNING_RATE, seed: int | None = 0,
            max_decodes: int = _REFINE_DECODES) -> tuple[np.ndarray, np.ndarray]:
    """:func:`refine_posterior` from the encoder's (loc, scale), already computed."""
    import tensorflow as tf

    if steps < 1:
        return loc, scale
    rng = np.random.default_rng(seed)
    d, s = latent_dim(model), int(num_samples)
    refine = _compiled(model, ("refine", s), lambda: _make_refine_fn(model))
    step = max(1, max_decodes // s)
    out_loc, out_scale = [], []
    for start in range(0, len(x), step):
        rows = slice(start, start + step)
        eps = rng.standard_normal((int(steps), s, len(x[rows]), d)).astype(np.float32)
        new_loc, new_scale = refine(tf.constant(x[rows]), tf.constant(floor[rows]),
                                    tf.constant(loc[rows]),
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


def _log_likelihood(decoder: keras.Model, xb, floor, z):
    """log p(x | z) for draws z (K, n, d) of n stamps xb with variance floors ``floor``
    (zeros: none): (K, n)."""
    import tensorflow as tf

    tfd = _tfd()
    mean, variance = decoder(tf.reshape(z, (-1, tf.shape(z)[-1])), training=False)
    shape = tf.concat([tf.shape(z)[:2], tf.shape(xb)[1:]], 0)
    mean = tf.reshape(mean, shape)
    variance = tf.maximum(tf.reshape(variance, shape), floor[None])
    return tfd.Independent(tfd.Normal(mean, tf.sqrt(variance)), 3).log_prob(xb[None])


def _make_log_prob_fn(model: keras.Model, d: int, k: int, from_encoder: int):
    import tensorflow as tf

    tfd = _tfd()
    decoder = model.get_layer("decoder")
    share = from_encoder / k

    @tf.function(reduce_retracing=True)
    def chunk_log_prob(xb, floor, loc, scale, laplace_loc, laplace_tril, eps):
        q = tfd.MultivariateNormalDiag(loc, scale)
        laplace_z = laplace_loc + tf.einsum("nij,knj->kni", laplace_tril, eps[from_encoder:])
        z = tf.concat([loc + scale * eps[:from_encoder], laplace_z], 0)  # (K, n, d)
        log_q = q.log_prob(z)
        if from_encoder < k:  # the stratified mixture's density
            laplace = tfd.MultivariateNormalTriL(laplace_loc, laplace_tril)
            parts = [laplace.log_prob(z) + math.log(1 - share)]
            if from_encoder:
                parts.append(log_q + math.log(share))
            log_q = tf.reduce_logsumexp(tf.stack(parts), axis=0)
        log_pz = prior(model).log_prob(z)
        log_w = tf.cast(_log_likelihood(decoder, xb, floor, z) + log_pz - log_q, tf.float64)
        return tf.reduce_logsumexp(log_w, axis=0) - math.log(k)

    return chunk_log_prob


def _make_precision_fn(model: keras.Model, d: int):
    import tensorflow as tf

    decoder, layer = model.get_layer("decoder"), prior_layer(model)

    @tf.function(reduce_retracing=True)
    def precision(z, floor):
        n = tf.shape(z)[0]
        # All d tangents at once: stamp i's z repeated d times, tangent j = unit vector j.
        primal = tf.repeat(z, d, axis=0)  # (n d, d), row i * d + j
        tangent = tf.tile(tf.eye(d), [n, 1])
        floor = tf.repeat(tf.reshape(floor, (n, -1)), d, axis=0)  # (n d, pixels)
        with tf.autodiff.ForwardAccumulator(primal, tangent) as acc:
            mean, variance = decoder(primal, training=False)
            variance = tf.maximum(tf.reshape(variance, (n * d, -1)), floor)
        jac_mean = tf.reshape(acc.jvp(mean), (n, d, -1))  # (n, d, pixels)
        jac_var = tf.reshape(acc.jvp(variance), (n, d, -1))
        variance = tf.reshape(variance, (n, d, -1))[:, 0]  # (n, pixels)
        fisher = (tf.einsum("nip,np,njp->nij", jac_mean, 1.0 / variance, jac_mean)
                  + 0.5 * tf.einsum("nip,np,njp->nij", jac_var, variance**-2, jac_var))
        if layer is None:
            return fisher + tf.eye(d)
        components = layer.distribution().components_distribution
        scale_inv = tf.linalg.inv(components.scale.to_dense())  # (C, d, d)
        component_precision = tf.matmul(scale_inv, scale_inv, transpose_a=True)
        log_joint = (tf.math.log_softmax(layer.logits)[None]
                     + components.log_prob(z[:, None, :]))  # (n, C)
        responsibility = tf.nn.softmax(log_joint, axis=-1)
        return fisher + tf.einsum("nc,cij->nij", responsibility, component_precision)

    return precision


def _make_refine_fn(model: keras.Model):
    import tensorflow as tf

    decoder, layer = model.get_layer("decoder"), prior_layer(model)
    beta1, beta2, tiny = 0.9, 0.999, 1e-8

    def adam(param, grad, first, second, step, learning_rate):
        first = beta1 * first + (1 - beta1) * grad
        second = beta2 * second + (1 - beta2) * grad**2
        m_hat, v_hat = first / (1 - beta1**step), second / (1 - beta2**step)
        return param - learning_rate * m_hat / (tf.sqrt(v_hat) + tiny), first, second

    def kl_divergence(q_loc, q_log_scale, z):
        if layer is None:  # against N(0, I): analytic
            return tf.reduce_sum(
                0.5 * (q_loc**2 + tf.exp(2.0 * q_log_scale) - 1.0) - q_log_scale, axis=-1)
        # -entropy(q) - E_q[log p(z)], the expectation over the step's draws z (S, n, d).
        entropy = _tfd().MultivariateNormalDiag(q_loc, tf.exp(q_log_scale)).entropy()
        return -entropy - tf.reduce_mean(layer.distribution().log_prob(z), axis=0)

    @tf.function(reduce_retracing=True)
    def refine(xb, floor, loc, scale, eps, learning_rate):
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
                elbo = (tf.reduce_mean(_log_likelihood(decoder, xb, floor, z), axis=0)
                        - kl_divergence(q_loc, q_log_scale, z))
                loss = -tf.reduce_sum(elbo)  # stamps are independent: one sum, own gradients
            grad_u, grad_w = tape.gradient(loss, [u, w])
            step = tf.cast(t + 1, tf.float32)
            rate = learning_rate * 0.5 * (1.0 + tf.cos(math.pi * (step - 1.0) / total))
            u, m_u, v_u = adam(u, grad_u, m_u, v_u, step, rate)
            w, m_w, v_w = adam(w, grad_w, m_w, v_w, step, rate)
        return loc + scale * u, tf.exp(log_scale + w)

    return refine


def elbo(model: keras.Model, images: np.ndarray, *, seed: int | None = 0,
         noise_variance: np.ndarray | None = None) -> np.ndarray:
    """One-sample ELBO per stamp (= :func:`log_prob` with K = 1)."""
    return log_prob(model, images, num_samples=1, seed=seed, noise_variance=noise_variance)


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
