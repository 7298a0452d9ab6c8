"""Keras layers of the galaxy VAE: the distributions live inside plain layers, since
``tfp.layers`` do not work with Keras 3 (see :mod:`modelzoo.galaxy.vae`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import layers

_MAX_LOG_VARIANCE = 20.0  # exp(20) ~ 5e8 (model units^2): far above any real stamp


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
class ModelUnits(layers.Layer):
    """Stamps as a file stores them -> the model's unit: divided by ``input_scale``, image
    units per model unit (the training data's background noise sigma), in float32. No
    variables: the unit travels with the weights in the builder's config."""

    def __init__(self, input_scale: float = 1.0, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not float(input_scale) > 0:
            raise ValueError(f"input_scale must be positive, got {input_scale}")
        self.input_scale = float(input_scale)

    def call(self, x):
        return x / keras.ops.cast(self.input_scale, x.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "input_scale": self.input_scale}


@keras.saving.register_keras_serializable(package="modelzoo")
class Reparameterize(layers.Layer):
    """``z = loc + scale * eps``, eps ~ N(0, I): a sample of q(z | x) that gradients flow
    through (Kingma & Welling 2014). Seeded by a Keras SeedGenerator (state in the weights)."""

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, loc, scale, training=None):
        # At inference z is the posterior mean, as dropout is off: ``model.predict`` is the
        # decoder at the most likely latent galaxy, the same on every call.
        if not training:
            return loc
        eps = keras.random.normal(keras.ops.shape(loc), dtype=loc.dtype, seed=self.seed_generator)
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
