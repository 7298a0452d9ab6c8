"""log p(x) of galaxy stamps under the VAE: importance sampling with the encoder as proposal
(Burda, Grosse, Salakhutdinov, ICLR 2016, arXiv:1509.00519), optionally from a posterior refined
per stamp by gradient steps on its ELBO and mixed with a full-covariance Laplace approximation
at the refined mean; densities can be conditioned on the survey's per-pixel noise map."""

from __future__ import annotations

import math
import weakref

import keras
import numpy as np

from modelzoo.galaxy.layers import _tfd
from modelzoo.galaxy.prior import prior, prior_layer
from modelzoo.galaxy.vae import _as_stamps, _noise_floor, latent_dim

# Posterior refinement: ELBO samples per step, Adam step (posterior widths), decodes per batch.
_REFINE_SAMPLES, _REFINE_LEARNING_RATE, _REFINE_DECODES = 4, 0.3, 256


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

