"""The parametric galaxy model the seed compares the VAE against: light from bivariate normals.

Celeste's galaxy light density (Regier et al., ICML 2015, arXiv:1506.01351): a galaxy is a
mixture of an exponential (disk) and a de Vaucouleurs (elliptical) prototype,
``h(w) = (1 - d) * h_exp(w) + d * h_dev(w)``, each prototype a fixed mixture of concentric
bivariate normals ``sum_j eta_j N(w; mu, nu_j * Sigma)`` (Hogg & Lang 2013, "Replacing
standard galaxy profiles with mixtures of Gaussians", PASP 125, 719; coefficients as in
Celeste.jl). One shape ``Sigma`` is shared by all components and is set by the half-light radius
(scale), rotation and axis ratio. The PSF is a small mixture of bivariate normals fitted to the
file's PSF image, so the convolution is analytic (covariances add). Parameters per stamp:
centre (2), flux per band, de Vaucouleurs fraction, scale, and two shape (ellipticity) numbers.

Likelihood, the *same pixel noise model* as the VAE's decoder: pixels are independent normals,
``x_i ~ N(f_i(theta), v_i)``, with ``f`` the PSF-convolved light profile and ``v_i`` either the
known noise variance from the file (``noise="known"``) or one constant fitted by maximum
likelihood (``noise="constant"``, ``v = RSS / num_pixels``). ``theta`` (and the constant) are
fitted per stamp by maximum likelihood, and ``log p(x)`` is the log-density at the fit: a profile
likelihood that ignores the parameter uncertainty, so it *over*-states the baseline's evidence
and the comparison is conservative for the VAE.

All stamps are fitted at once with TensorFlow Probability's batched L-BFGS (float64), started
from the image moments with two de Vaucouleurs fractions; the better fit is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelzoo.errors import ConfigError

# Hogg & Lang (2013) mixture coefficients as used by Celeste.jl: amplitudes and variances of
# the de Vaucouleurs (8 components) and exponential (6) prototypes; variances are rescaled by
# the prototypes' effective radii so that a unit scale has unit half-light radius.
_DEV_AMP = np.array([4.26347652e-2, 2.40127183e-1, 6.85907632e-1, 1.51937350, 2.83627243,
                     4.46467501, 5.72440830, 5.60989349])
_DEV_VAR = np.array([2.23759216e-4, 1.00220099e-3, 4.18731126e-3, 1.69432589e-2,
                     6.84850479e-2, 2.87207080e-1, 1.33320254, 8.40215071]) / 1.078031**2
_EXP_AMP = np.array([2.34853813e-3, 3.07995260e-2, 2.23364214e-1, 1.17949102, 4.33873750,
                     5.99820770])
_EXP_VAR = np.array([1.20078965e-3, 8.84526493e-3, 3.91463084e-2, 1.39976817e-1,
                     4.60962500e-1, 1.50159566]) / 0.928896**2
PROTOTYPE_AMP = np.concatenate([_DEV_AMP / _DEV_AMP.sum(), _EXP_AMP / _EXP_AMP.sum()])
PROTOTYPE_VAR = np.concatenate([_DEV_VAR, _EXP_VAR])
IS_DEV = np.r_[np.ones(len(_DEV_AMP)), np.zeros(len(_EXP_AMP))]
PIXEL_VARIANCE = 1.0 / 12.0  # a unit box pixel, as a Gaussian of equal second moment
NOISE_MODELS = ("auto", "known", "constant")


@dataclass
class PSFMixture:
    """PSF as ``sum_k weight_k N(mean_k, cov_k)`` per stamp and band, in pixels.

    Shapes: weight (N, B, K), mean (N, B, K, 2), cov (N, B, K, 2, 2). ``includes_pixel`` says
    whether the pixel response is already inside (true when fitted to a drawn PSF image).
    """

    weight: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    includes_pixel: bool = True

    @staticmethod
    def delta(n: int, bands: int) -> PSFMixture:
        """No PSF (a point), plus the pixel response."""
        return PSFMixture(np.ones((n, bands, 1)), np.zeros((n, bands, 1, 2)),
                          np.zeros((n, bands, 1, 2, 2)), includes_pixel=False)

    @staticmethod
    def gaussian(n: int, bands: int, sigma: float) -> PSFMixture:
        """A round Gaussian PSF of width ``sigma`` pixels (pixel response added on top)."""
        cov = np.broadcast_to(np.eye(2) * sigma**2, (n, bands, 1, 2, 2)).copy()
        return PSFMixture(np.ones((n, bands, 1)), np.zeros((n, bands, 1, 2)), cov,
                          includes_pixel=False)


@dataclass
class BaselineFit:
    """Maximum-likelihood fits of the parametric model to N stamps (pixel units, stamp centre at
    the origin; ``angle`` of the major axis from +x towards +y, radians in [-pi/2, pi/2))."""

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray  # (N, B)
    frac_dev: np.ndarray
    half_light_radius: np.ndarray  # circularised: sqrt(major * minor)
    axis_ratio: np.ndarray
    angle: np.ndarray
    model_images: np.ndarray  # (N, S, S, B)
    noise_variance: np.ndarray  # (N, S, S, B), the v used in the likelihood
    log_prob: np.ndarray  # (N,), nats, in the units of the images passed in
    noise: str
    converged: np.ndarray


def _shape_matrix(tf, log_scale, e1, e2):
    """``Sigma = s^2 exp(E)`` with ``E = [[e1, e2], [e2, -e1]]``: det = s^4, axis ratio
    ``exp(-|e|)``; smooth at round shapes, unlike (angle, axis ratio)."""
    eta = tf.sqrt(e1**2 + e2**2 + 1e-24)
    ch = tf.cosh(eta)
    sh = tf.where(eta > 1e-6, tf.sinh(eta) / eta, tf.ones_like(eta))
    s2 = tf.exp(2.0 * log_scale)
    return s2 * (ch + sh * e1), s2 * (sh * e2), s2 * (ch - sh * e1)


def _render(tf, params, psf, size: int, bands: int):
    """Model images (N, S, S, B) for parameter rows ``[cx, cy, log_flux * B, logit_dev,
    log_scale, e1, e2]`` (float64 tensors)."""
    cx, cy = params[:, 0], params[:, 1]
    log_flux = params[:, 2 : 2 + bands]
    logit_dev, log_scale, e1, e2 = (params[:, 2 + bands + i] for i in range(4))
    s11, s12, s22 = _shape_matrix(tf, log_scale, e1, e2)  # (N,)
    frac_dev = tf.sigmoid(logit_dev)
    amp = tf.constant(PROTOTYPE_AMP)
    is_dev = tf.constant(IS_DEV)
    nu = tf.constant(PROTOTYPE_VAR)
    # Component weights (N, J): the dev fraction splits the two prototypes.
    w_j = amp * (is_dev * frac_dev[:, None] + (1 - is_dev) * (1 - frac_dev[:, None]))
    # Covariances (N, B, J, K): nu_j * Sigma + PSF_k (+ pixel).
    pix = 0.0 if psf["includes_pixel"] else PIXEL_VARIANCE
    c11 = nu[None, None, :, None] * s11[:, None, None, None] + psf["cov"][:, :, None, :, 0, 0] + pix
    c12 = nu[None, None, :, None] * s12[:, None, None, None] + psf["cov"][:, :, None, :, 0, 1]
    c22 = nu[None, None, :, None] * s22[:, None, None, None] + psf["cov"][:, :, None, :, 1, 1] + pix
    det = c11 * c22 - c12**2
    log_weight = (log_flux[:, :, None, None] + tf.math.log(w_j)[:, None, :, None]
                  + tf.math.log(psf["weight"])[:, :, None, :] - np.log(2 * np.pi)
                  - 0.5 * tf.math.log(det))
    mx = cx[:, None, None, None] + psf["mean"][:, :, None, :, 0]
    my = cy[:, None, None, None] + psf["mean"][:, :, None, :, 1]
    # The (N, B, J, K, S, S) terms dominate the cost: they run in float32 (half the memory
    # traffic); the small per-component numbers above and the image sums stay float64-exact
    # to ~1e-7 relative, far below the pixel noise.
    f32 = tf.float32
    coords = tf.constant(np.arange(size) - (size - 1) / 2.0, f32)
    dx = coords[None, None, None, None, None, :] - tf.cast(mx, f32)[..., None, None]  # (...,1,S)
    dy = coords[None, None, None, None, :, None] - tf.cast(my, f32)[..., None, None]  # (...,S,1)
    i11, i12, i22 = (tf.cast(v, f32)[..., None, None] for v in (c22 / det, -c12 / det,
                                                                 c11 / det))
    row = tf.cast(log_weight, f32)[..., None, None] - 0.5 * i11 * dx**2  # (..., 1, S)
    image = tf.reduce_sum(tf.exp(row - (i12 * dx) * dy - 0.5 * i22 * dy**2), axis=(2, 3))
    image = tf.cast(image, params.dtype)
    return tf.transpose(image, (0, 2, 3, 1))


def _psf_dict(tf, psf: PSFMixture, rows=slice(None)) -> dict:
    return {
        "weight": tf.constant(psf.weight[rows], tf.float64),
        "mean": tf.constant(psf.mean[rows], tf.float64),
        "cov": tf.constant(psf.cov[rows], tf.float64),
        "includes_pixel": psf.includes_pixel,
    }


def render(
    x: np.ndarray, y: np.ndarray, flux: np.ndarray, frac_dev: np.ndarray,
    half_light_radius: np.ndarray, axis_ratio: np.ndarray, angle: np.ndarray,
    *, size: int = 69, psf: PSFMixture | None = None,
) -> np.ndarray:
    """Noiseless model images (N, S, S, B) for physical parameters (see :class:`BaselineFit`);
    ``flux`` is (N,) or (N, B)."""
    import tensorflow as tf

    flux = np.asarray(flux, np.float64)
    flux = flux[:, None] if flux.ndim == 1 else flux
    n, bands = flux.shape
    psf = psf or PSFMixture.delta(n, bands)
    eta = -np.log(np.asarray(axis_ratio, np.float64))
    params = np.column_stack([
        x, y, np.log(flux), _logit(np.clip(frac_dev, 1e-6, 1 - 1e-6)),
        np.log(half_light_radius), eta * np.cos(2 * np.asarray(angle)),
        eta * np.sin(2 * np.asarray(angle)),
    ]).astype(np.float64)
    return _render(tf, tf.constant(params), _psf_dict(tf, psf), size, bands).numpy()


def _logit(p):
    return np.log(p) - np.log1p(-p)


def fit_psf(psf_images: np.ndarray, components: int = 2, max_iterations: int = 200) -> PSFMixture:
    """Fit ``components`` bivariate normals to each PSF image (N, P, P, B) (unit sum) by least
    squares; the pixel response is inside the fit, as it is inside a drawn PSF."""
    import tensorflow as tf
    import tensorflow_probability as tfp

    images = np.asarray(psf_images, np.float64)
    n, size, _, bands = images.shape
    flat = images.transpose(0, 3, 1, 2).reshape(n * bands, size, size)
    flat = flat / flat.sum(axis=(1, 2), keepdims=True)
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    xx, yy = np.meshgrid(coords, coords)
    w = np.clip(flat, 0, None)
    mx = (w * xx).sum((1, 2)) / w.sum((1, 2))
    my = (w * yy).sum((1, 2)) / w.sum((1, 2))
    var = ((w * ((xx - mx[:, None, None]) ** 2 + (yy - my[:, None, None]) ** 2)).sum((1, 2))
           / w.sum((1, 2)) / 2)
    # Core and wings: log-widths around the moment width; weights as logits.
    k = np.arange(components)
    init = np.concatenate([
        np.tile(np.where(k == 0, 1.0, -1.0), (len(flat), 1)),  # weight logits
        np.repeat(mx[:, None], components, 1), np.repeat(my[:, None], components, 1),
        0.5 * np.log(var)[:, None] + np.log(0.7) + 0.8 * k[None, :],  # log sigma_x
        0.5 * np.log(var)[:, None] + np.log(0.7) + 0.8 * k[None, :],  # log sigma_y
        np.zeros((len(flat), components)),  # atanh correlation
    ], axis=1)
    target = tf.constant(flat)
    c = tf.constant(coords)

    def unpack(p):
        lw, ux, uy, lsx, lsy, ar = (p[:, i * components : (i + 1) * components] for i in range(6))
        return tf.nn.softmax(lw, axis=1), ux, uy, tf.exp(lsx), tf.exp(lsy), 0.95 * tf.tanh(ar)

    def model(p):
        wk, ux, uy, sx, sy, r = unpack(p)
        dx = (c[None, None, None, :] - ux[..., None, None]) / sx[..., None, None]
        dy = (c[None, None, :, None] - uy[..., None, None]) / sy[..., None, None]
        r_ = r[..., None, None]
        quad = (dx**2 - 2 * r_ * dx * dy + dy**2) / (1 - r_**2)
        norm = wk / (2 * np.pi * sx * sy * tf.sqrt(1 - r**2))
        return tf.reduce_sum(norm[..., None, None] * tf.exp(-0.5 * quad), axis=1)

    @tf.function
    def value_and_grad(p):
        with tf.GradientTape() as tape:
            tape.watch(p)
            loss = tf.reduce_sum((model(p) - target) ** 2, axis=(1, 2)) * 1e4
        return loss, tape.gradient(loss, p)

    result = tfp.optimizer.lbfgs_minimize(
        value_and_grad, tf.constant(init), max_iterations=max_iterations, tolerance=1e-10,
        f_relative_tolerance=1e-12,
    )
    wk, ux, uy, sx, sy, r = (t.numpy() for t in unpack(result.position))
    cov = np.empty(sx.shape + (2, 2))
    cov[..., 0, 0], cov[..., 1, 1] = sx**2, sy**2
    cov[..., 0, 1] = cov[..., 1, 0] = r * sx * sy
    mean = np.stack([ux, uy], -1)

    def per_band(a):
        return a.reshape((n, bands) + a.shape[1:])

    return PSFMixture(per_band(wk), per_band(mean), per_band(cov), includes_pixel=True)


def _moment_init(images: np.ndarray, variance: np.ndarray, psf: PSFMixture, frac_dev: float):
    """Starting parameters from thresholded image moments (summed over bands)."""
    n, size, _, bands = images.shape
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    xx, yy = np.meshgrid(coords, coords)
    total = images.sum(-1)
    sigma = np.sqrt(variance.sum(-1))
    w = np.where(total > 2 * sigma, total, 0.0)
    norm = np.maximum(w.sum((1, 2)), 1e-12)
    cx = np.clip((w * xx).sum((1, 2)) / norm, -size / 4, size / 4)
    cy = np.clip((w * yy).sum((1, 2)) / norm, -size / 4, size / 4)
    dx, dy = xx - cx[:, None, None], yy - cy[:, None, None]
    q11 = (w * dx * dx).sum((1, 2)) / norm
    q12 = (w * dx * dy).sum((1, 2)) / norm
    q22 = (w * dy * dy).sum((1, 2)) / norm
    psf_cov = (psf.weight[..., None, None] * psf.cov).sum(2).mean(1)  # (N, 2, 2)
    pix = 0.0 if psf.includes_pixel else PIXEL_VARIANCE
    second = (PROTOTYPE_AMP * PROTOTYPE_VAR * np.where(IS_DEV, frac_dev, 1 - frac_dev)).sum()
    # Thresholding drops the faint wings, so scale the moments up before removing the PSF.
    s11 = np.maximum(1.5 * q11 - psf_cov[:, 0, 0] - pix, 0.3) / second
    s22 = np.maximum(1.5 * q22 - psf_cov[:, 1, 1] - pix, 0.3) / second
    s12 = np.clip(1.5 * q12 - psf_cov[:, 0, 1], -0.9 * np.sqrt(s11 * s22) * second,
                  0.9 * np.sqrt(s11 * s22) * second) / second
    det = np.maximum(s11 * s22 - s12**2, 1e-6)
    s2 = np.sqrt(det)
    m11, m12, m22 = s11 / s2, s12 / s2, s22 / s2
    eta = np.arccosh(np.maximum((m11 + m22) / 2, 1.0))
    factor = np.where(eta > 1e-6, eta / np.maximum(np.sinh(eta), 1e-12), 1.0)
    e1, e2 = (m11 - m22) / 2 * factor, m12 * factor
    flux = np.maximum(images.sum((1, 2)), np.maximum(w.sum((1, 2)), 1.0)[:, None] / bands)
    flux = np.maximum(flux, 1e-3)
    return np.column_stack([
        cx, cy, np.log(flux), np.full(n, _logit(frac_dev)), 0.5 * np.log(s2), e1, e2,
    ]).astype(np.float64)


_MINIMIZERS: dict = {}


def _minimizer(size: int, bands: int, noise: str, includes_pixel: bool, max_iterations: int,
               tolerance: float, f_relative_tolerance: float):
    """A compiled batched L-BFGS fit, cached per configuration (tracing takes seconds)."""
    key = (size, bands, noise, includes_pixel, max_iterations, tolerance, f_relative_tolerance)
    if key in _MINIMIZERS:
        return _MINIMIZERS[key]
    import tensorflow as tf
    import tensorflow_probability as tfp

    @tf.function
    def minimize(init, x, inv_v, psf_weight, psf_mean, psf_cov):
        psf_t = {"weight": psf_weight, "mean": psf_mean, "cov": psf_cov,
                 "includes_pixel": includes_pixel}

        def objective(p):
            resid2 = (x - _render(tf, p, psf_t, size, bands)) ** 2
            if noise == "known":
                return 0.5 * tf.reduce_sum(resid2 * inv_v, axis=(1, 2, 3))
            # One fitted variance: maximising the profile likelihood = minimising the RSS.
            return tf.reduce_sum(resid2, axis=(1, 2, 3))

        # Per-stamp normalisation by the starting value: chi^2 of bright stamps reaches 1e6,
        # and L-BFGS's first step (along the raw gradient) would otherwise leave the region
        # where the profile is finite.
        scale = tf.maximum(objective(init), 1e-300)

        def value_and_grad(p):
            with tf.GradientTape() as tape:
                tape.watch(p)
                loss = objective(p) / scale
            return loss, tape.gradient(loss, p)

        res = tfp.optimizer.lbfgs_minimize(
            value_and_grad, init, max_iterations=max_iterations, tolerance=tolerance,
            f_relative_tolerance=f_relative_tolerance, num_correction_pairs=20,
        )
        return res.objective_value * scale, res.position, res.converged

    _MINIMIZERS[key] = minimize
    return minimize


def resolve_noise(noise: str, has_noise_variance: bool) -> str:
    """The noise model :func:`fit` uses: ``"auto"`` is ``"known"`` when a noise variance map is
    given, else ``"constant"``; other settings stand."""
    if noise != "auto":
        return noise
    return "known" if has_noise_variance else "constant"


def fit(
    images: np.ndarray,
    noise_variance: np.ndarray | None = None,
    psf: PSFMixture | np.ndarray | None = None,
    *,
    noise: str = "auto",
    max_iterations: int = 200,
    batch_size: int = 64,
    starts: tuple[float, ...] = (0.5,),
    tolerance: float = 1e-5,
    f_relative_tolerance: float = 1e-9,
) -> BaselineFit:
    """Maximum-likelihood fit of the Celeste-style galaxy model to each stamp.

    Args:
        images: (N, S, S) or (N, S, S, B), sky-subtracted; any unit (the log-densities come out
            in the same unit, so pass the VAE's units to compare with it).
        noise_variance: per-pixel noise variance, same shape (``noise="known"``).
        psf: a fitted :class:`PSFMixture`, PSF images (N, P, P[, B]) to fit one from, or None
            for no PSF (the pixel response only).
        noise: ``"known"`` (needs ``noise_variance``), ``"constant"`` (one fitted variance per
            stamp), or ``"auto"`` (known when given, else constant).
        max_iterations: L-BFGS iterations per start.
        batch_size: stamps fitted together (memory grows with it).
        starts: de Vaucouleurs fractions to start from; the best fit is kept.
        tolerance, f_relative_tolerance: L-BFGS stopping rules on the objective normalised
            to 1 at the start; the defaults leave log p within ~1e-3 nats of a tight fit.
    """
    import tensorflow as tf

    if noise not in NOISE_MODELS:
        raise ConfigError(f"noise must be one of {NOISE_MODELS}, got {noise!r}")
    images = np.asarray(images, np.float64)
    images = images[..., None] if images.ndim == 3 else images
    n, size, _, bands = images.shape
    noise = resolve_noise(noise, noise_variance is not None)
    if noise == "known":
        if noise_variance is None:
            raise ConfigError('noise="known" needs noise_variance')
        variance = np.asarray(noise_variance, np.float64).reshape(images.shape)
        if not (variance > 0).all():
            raise ConfigError("noise_variance must be positive")
    else:
        # Moments need a noise level: a robust sigma of each stamp's border.
        border = np.concatenate([images[:, :3].reshape(n, -1), images[:, -3:].reshape(n, -1)], 1)
        mad = 1.4826 * np.median(np.abs(border - np.median(border, 1, keepdims=True)), 1)
        variance = np.broadcast_to(np.maximum(mad, 1e-12)[:, None, None, None] ** 2,
                                   images.shape)
    if psf is None:
        psf = PSFMixture.delta(n, bands)
    elif not isinstance(psf, PSFMixture):
        arr = np.asarray(psf)
        psf = fit_psf(arr[..., None] if arr.ndim == 3 else arr)

    minimize = _minimizer(size, bands, noise, psf.includes_pixel, max_iterations, tolerance,
                          f_relative_tolerance)
    k = psf.weight.shape[-1]
    values, positions, flags = [], [], []
    for start in range(0, n, batch_size):
        rows = np.arange(start, min(start + batch_size, n))
        # Pad the last batch by repeating a stamp so every batch has one shape (one trace).
        padded = np.concatenate([rows, np.full(min(batch_size, n) - len(rows), rows[-1])])
        sub_psf = PSFMixture(psf.weight[padded], psf.mean[padded], psf.cov[padded],
                             psf.includes_pixel)
        args = [tf.constant(a) for a in (images[padded], 1.0 / variance[padded],
                                          sub_psf.weight.reshape(-1, bands, k),
                                          sub_psf.mean, sub_psf.cov)]
        best = None
        for frac in starts:
            init = tf.constant(_moment_init(images[padded], variance[padded], sub_psf, frac))
            value, pos, conv = (t.numpy() for t in minimize(init, *args))
            value = np.where(np.isfinite(value), value, np.inf)
            if best is None:
                best = (value, pos, conv)
            else:
                better = value < best[0]
                best = (np.where(better, value, best[0]), np.where(better[:, None], pos, best[1]),
                        np.where(better, conv, best[2]))
        keep = len(rows)
        values.append(best[0][:keep])
        positions.append(best[1][:keep])
        flags.append(best[2][:keep])
    params, converged = np.concatenate(positions), np.concatenate(flags)
    model = _render(tf, tf.constant(params), _psf_dict(tf, psf), size, bands).numpy()
    resid2 = (images - model) ** 2
    if noise == "constant":
        variance = np.broadcast_to(
            np.maximum(resid2.mean(axis=(1, 2, 3)), 1e-300)[:, None, None, None], images.shape)
    log_prob = -0.5 * (resid2 / variance + np.log(2 * np.pi * variance)).sum(axis=(1, 2, 3))
    e1, e2 = params[:, 4 + bands], params[:, 5 + bands]
    eta = np.hypot(e1, e2)
    return BaselineFit(
        x=params[:, 0], y=params[:, 1], flux=np.exp(params[:, 2 : 2 + bands]),
        frac_dev=1 / (1 + np.exp(-params[:, 2 + bands])),
        half_light_radius=np.exp(params[:, 3 + bands]), axis_ratio=np.exp(-eta),
        angle=_wrap_angle(0.5 * np.arctan2(e2, e1)), model_images=model.astype(np.float32),
        noise_variance=np.asarray(variance, np.float32), log_prob=log_prob, noise=noise,
        converged=converged,
    )


def _wrap_angle(angle: np.ndarray) -> np.ndarray:
    return (np.asarray(angle) + np.pi / 2) % np.pi - np.pi / 2
