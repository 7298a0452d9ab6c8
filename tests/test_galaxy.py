"""galaxy_vae: distributions, the importance-weighted log-likelihood, the bivariate-normal
baseline, the stamp reader and generator, and a short training that beats the baseline."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

import modelzoo
from modelzoo.galaxy import baseline as gb
from modelzoo.galaxy import density, prior, vae
from modelzoo.galaxy.generator import GalaxyConfig, generate_galaxies
from modelzoo.galaxy.reader import open_galaxies
from modelzoo.hdf5 import DataError

# --- model shapes and distributions ---------------------------------------------------------


def test_registered_with_recipe():
    spec = modelzoo.info("galaxy_vae")
    assert spec["recipe"].endswith("modelzoo/galaxy/recipes/galaxy_vae.yaml")
    assert spec["defaults"]["image_size"] == 69
    assert "Regier" in spec["citation"]


@pytest.mark.parametrize("bands", [1, 3])
def test_shapes_of_distributions(bands):
    model = modelzoo.get("galaxy_vae", bands=bands, latent_dim=8)
    x = np.random.default_rng(0).normal(size=(3, 69, 69, bands)).astype(np.float32)
    mean, variance = model(x)
    assert mean.shape == variance.shape == (3, 69, 69, bands)
    assert float(np.min(variance)) > 0
    q = vae.encode(model, x)
    assert tuple(q.batch_shape) == (3,) and tuple(q.event_shape) == (8,)
    p = vae.decode(model, q.mode())
    assert tuple(p.batch_shape) == (3,) and tuple(p.event_shape) == (69, 69, bands)
    assert p.log_prob(x).shape == (3,)
    assert prior.sample(model, 5, seed=1).shape == (5, 69, 69, bands)
    assert density.log_prob(model, x, num_samples=4).shape == (3,)
    if bands == 1:  # a single band may come without the channel axis
        assert density.log_prob(model, x[..., 0], num_samples=2).shape == (3,)
    with pytest.raises(ValueError, match="do not fit"):
        vae.encode(model, np.zeros((2, 64, 64, bands), np.float32))


# --- the importance-weighted estimator on a linear-Gaussian model ------------------------------


def _linear_gaussian(encoder_shift: float = 0.0, encoder_scale: float = 1.0,
                     prior_components: int = 0):
    """A dense galaxy_vae with no hidden layer is linear-Gaussian: z ~ N(0, I),
    x | z ~ N(W z + b, s2 I), so p(x) = N(b, W W^T + s2 I) exactly. W has orthogonal columns,
    so the exact posterior is diagonal and the encoder can represent it."""
    size, d, s2 = 2, 2, 0.5
    D = size * size
    model = modelzoo.get(
        "galaxy_vae", image_size=size, latent_dim=d, architecture="dense", hidden_units=(),
        mean_activation="linear", input_transform="none", min_variance=1e-3,
        prior_components=prior_components,
    )
    W = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])  # (D, d), orthogonal columns
    b = np.array([0.5, -0.5, 1.0, 0.0])
    # Decoder Dense: output unit (pixel p, [mean, log-variance]) = 2 * p + channel.
    kernel = np.zeros((d, 2 * D))
    bias = np.zeros(2 * D)
    kernel[:, 0::2] = W.T
    bias[0::2] = b
    bias[1::2] = np.log(s2 - 1e-3)
    model.get_layer("decoder").get_layer("dec_pixels").set_weights([kernel, bias])
    # Exact posterior: cov = (I + W^T W / s2)^-1 (diagonal), mean = cov W^T (x - b) / s2.
    post_var = 1.0 / (1.0 + np.sum(W**2, axis=0) / s2)
    A = (post_var[:, None] * W.T) / s2  # (d, D)
    enc_kernel = np.zeros((D, 2 * d))
    enc_bias = np.zeros(2 * d)
    enc_kernel[:, :d] = A.T
    enc_bias[:d] = -A @ b + encoder_shift
    target_scale = np.sqrt(post_var) * encoder_scale
    enc_bias[d:] = np.log(np.expm1(target_scale - 1e-4))  # inverse softplus
    model.get_layer("encoder").get_layer("enc_posterior").set_weights([enc_kernel, enc_bias])
    cov = W @ W.T + s2 * np.eye(D)
    return model, b, cov


def _exact_log_prob(x: np.ndarray, b: np.ndarray, cov: np.ndarray) -> np.ndarray:
    r = x.reshape(len(x), -1) - b
    _, logdet = np.linalg.slogdet(cov)
    quad = np.einsum("ni,ij,nj->n", r, np.linalg.inv(cov), r)
    return -0.5 * (quad + logdet + len(b) * np.log(2 * np.pi))


def _draw(b, cov, n, seed):
    x = np.random.default_rng(seed).multivariate_normal(b, cov, size=n)
    return x.reshape(n, 2, 2, 1).astype(np.float32)


def test_log_prob_exact_with_exact_posterior():
    model, b, cov = _linear_gaussian()
    x = _draw(b, cov, 50, seed=0)
    exact = _exact_log_prob(x, b, cov)
    # With q equal to the true posterior every importance weight equals p(x): K = 1 is exact.
    for k in (1, 7):
        np.testing.assert_allclose(density.log_prob(model, x, num_samples=k), exact, atol=2e-3)


def test_log_prob_tightens_with_samples_and_converges():
    model, b, cov = _linear_gaussian(encoder_shift=0.7, encoder_scale=1.8)
    x = _draw(b, cov, 400, seed=1)
    exact = _exact_log_prob(x, b, cov)
    gaps = {k: float(np.mean(exact - density.log_prob(model, x, num_samples=k, seed=k)))
            for k in (1, 10, 100, 2000)}
    # A lower bound in expectation, never looser with more samples, and consistent.
    assert gaps[1] > gaps[10] > gaps[100] > gaps[2000] > -0.01, gaps
    assert gaps[1] > 0.2  # the wrong proposal makes the ELBO visibly loose ...
    assert gaps[2000] < 0.02  # ... while many samples recover log p(x)
    # The estimate is a density: it integrates to one over x. Monte Carlo with a wide normal
    # proposal r: E_r[p(x) / r(x)] = 1.
    wide = 3.0 * cov
    grid = np.random.default_rng(2).multivariate_normal(b, wide, size=20000)
    log_ratio = (density.log_prob(model, grid.reshape(-1, 2, 2, 1), num_samples=200)
                 - _exact_log_prob(grid, b, wide))
    assert abs(np.exp(log_ratio).mean() - 1.0) < 0.03


def test_refined_posterior_closes_the_amortisation_gap():
    # A wrong encoder (shifted, too wide): per-stamp refinement moves q towards the exact
    # posterior N(A (x - b), post_var), and the defensive-mixture estimate is tighter than the
    # encoder's alone while staying a lower bound of the exact log p(x) on average.
    model, b, cov = _linear_gaussian(encoder_shift=1.5, encoder_scale=3.0)
    x = _draw(b, cov, 300, seed=3)
    exact = _exact_log_prob(x, b, cov)
    truth, _, _ = _linear_gaussian()
    target = vae.encode(truth, x)
    refined = density.refine_posterior(model, x, steps=150, num_samples=8, seed=4)
    start = vae.encode(model, x)
    error_before = np.abs(start.mean().numpy() - target.mean().numpy()).mean()
    error_after = np.abs(refined.mean().numpy() - target.mean().numpy()).mean()
    assert error_after < 0.2 * error_before, (error_before, error_after)
    np.testing.assert_allclose(refined.stddev().numpy(), target.stddev().numpy(), rtol=0.25)
    gap_plain = np.mean(exact - density.log_prob(model, x, num_samples=8, seed=5))
    gap_refined = np.mean(exact - density.log_prob(model, x, num_samples=8, seed=5,
                                                  refine_steps=150))
    assert gap_refined < 0.3 * gap_plain and gap_refined > -0.01, (gap_plain, gap_refined)


def test_laplace_covariance_is_the_exact_posterior_covariance():
    # Linear mean, constant variance: the Fisher information plus the prior's precision is the
    # exact posterior precision, I + W^T W / s2 (= diag(1/5, 1/17)^-1), wherever it is taken.
    model, b, cov = _linear_gaussian()
    x = _draw(b, cov, 3, seed=6)
    z = np.random.default_rng(7).standard_normal((3, 2)).astype(np.float32)
    tril = density.laplace_scale_tril(model, x, z)
    np.testing.assert_allclose(tril @ np.swapaxes(tril, 1, 2),
                               np.broadcast_to(np.diag([1 / 5, 1 / 17]), (3, 2, 2)), atol=1e-5)


def test_noise_floor_conditions_the_density_on_the_known_noise():
    # Known noise v per pixel floors the decoder's variance s2 = 0.5: the linear-Gaussian model
    # becomes x | z ~ N(W z + b, diag(max(s2, v))), whose marginal and posterior are exact.
    model, b, cov = _linear_gaussian(encoder_shift=0.7, encoder_scale=1.8)
    W = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    floor = np.array([0.3, 1.0, 0.5, 2.0])
    floored_cov = W @ W.T + np.diag(np.maximum(0.5, floor))
    x = _draw(b, floored_cov, 200, seed=12)
    v = np.broadcast_to(floor.reshape(1, 2, 2, 1), x.shape).astype(np.float32)
    exact = _exact_log_prob(x, b, floored_cov)
    estimate = density.log_prob(model, x, 2000, seed=13, refine_steps=50, noise_variance=v)
    assert abs(np.mean(exact - estimate)) < 0.02, np.mean(exact - estimate)
    # ... which the decoder's own variance gets wrong on the same draws, ...
    assert np.mean(exact - density.log_prob(model, x, 2000, seed=13, refine_steps=50)) > 0.1
    # ... and a zero floor (noise unknown) leaves the decoder's variance: the estimate is the
    # exact marginal of the unfloored model, N(b, W W^T + 0.5 I).
    unfloored = _exact_log_prob(x, b, W @ W.T + 0.5 * np.eye(4))
    zero_floor = density.log_prob(model, x, 2000, seed=14, refine_steps=50,
                                  noise_variance=np.zeros_like(x))
    assert abs(np.mean(unfloored - zero_floor)) < 0.02, np.mean(unfloored - zero_floor)
    # The Laplace precision uses the floored variance: I + W^T diag(1/max(s2, v)) W = diag(4, 11).
    z = np.random.default_rng(15).standard_normal((3, 2)).astype(np.float32)
    tril = density.laplace_scale_tril(model, x[:3], z, noise_variance=v[:3])
    np.testing.assert_allclose(tril @ np.swapaxes(tril, 1, 2),
                               np.broadcast_to(np.diag([1 / 4, 1 / 11]), (3, 2, 2)), atol=1e-5)
    likelihood = vae.noise_floored(vae.decode(model, z), v[:3])
    np.testing.assert_allclose(likelihood.variance().numpy(), np.maximum(0.5, v[:3]), rtol=1e-5)
    with pytest.raises(ValueError, match="does not match"):
        density.log_prob(model, x, 4, noise_variance=v[:3])
    with pytest.raises(ValueError, match="non-negative"):
        density.log_prob(model, x, 4, noise_variance=-v)


def _set_mixture_prior(model, weights, locs, scale_trils):
    layer = prior.prior_layer(model)
    layer.logits.assign(np.log(np.asarray(weights, np.float32)))
    layer.locs.assign(np.asarray(locs, np.float32))
    layer.scale_tril.assign(np.asarray(scale_trils, np.float32))


def _exact_mixture_log_prob(x, b, cov, weights, locs, scale_trils):
    """p(x) = sum_k w_k N(x; W m_k + b, W L_k L_k^T W^T + s2 I) of the linear model."""
    W = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    noise = cov - W @ W.T
    parts = [np.log(w) + _exact_log_prob(x, W @ m + b, W @ (L @ L.T) @ W.T + noise)
             for w, m, L in zip(weights, np.asarray(locs), np.asarray(scale_trils))]
    return np.logaddexp.reduce(parts, axis=0)


def test_mixture_prior_starts_standard_and_its_log_prob_is_exact():
    model, b, cov = _linear_gaussian(encoder_shift=0.7, encoder_scale=1.8, prior_components=2)
    x = _draw(b, cov, 200, seed=8)
    # Unfitted, the mixture is N(0, I): the same estimate as the fixed prior.
    fixed, _, _ = _linear_gaussian(encoder_shift=0.7, encoder_scale=1.8)
    np.testing.assert_allclose(density.log_prob(model, x, 16, seed=9),
                               density.log_prob(fixed, x, 16, seed=9), atol=1e-4)
    weights, locs = [0.3, 0.7], [[2.0, -1.0], [-1.0, 0.5]]
    trils = [[[0.5, 0.0], [0.2, 0.8]], [[0.7, 0.0], [0.0, 0.7]]]
    _set_mixture_prior(model, weights, locs, trils)
    exact = _exact_mixture_log_prob(x, b, cov, weights, locs, trils)
    estimate = density.log_prob(model, x, 2000, seed=10, refine_steps=50)
    assert abs(np.mean(exact - estimate)) < 0.02, np.mean(exact - estimate)
    assert np.abs(exact - estimate).max() < 0.3
    draws = prior.sample(model, 4000, seed=11, noise=False)[..., 0].reshape(4000, 4)
    mean = sum(w * (np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, -2.0]]) @ m + b)
               for w, m in zip(weights, np.asarray(locs)))
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=0.08)


def test_training_loss_is_the_elbo_under_the_current_prior():
    # The linear-Gaussian model's expected ELBO is analytic: E_q log p(x|z) in closed form minus
    # KL(q || p). The training loss (a one-draw estimate per stamp, averaged over a large batch)
    # must match it for N(0, I), for the unfitted mixture, and for a fitted one; against the
    # fitted prior N(m, L L^T) the KL differs from N(0, I)'s by several nats.
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    W = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    s2 = 0.5
    locs, trils = [[1.5, -1.0]], [[[0.6, 0.0], [0.3, 0.9]]]

    def expected_loss(model, x, prior):
        q = vae.encode(model, x)
        mu, var = np.asarray(q.mean(), np.float64), np.asarray(q.variance(), np.float64)
        resid = x.reshape(len(x), -1) - (mu @ W.T + b)
        recon = -0.5 * np.sum((resid**2 + var @ (W**2).T) / s2 + np.log(2 * np.pi * s2), axis=1)
        kl = tfd.kl_divergence(tfd.MultivariateNormalDiag(mu, np.sqrt(var)), prior).numpy()
        return -np.mean(recon - kl)

    def training_loss(model, x):
        model(x, training=True)
        return float(sum(model.losses))

    standard = tfd.MultivariateNormalDiag(np.zeros(2), np.ones(2))
    fixed, b, cov = _linear_gaussian(encoder_shift=0.4, encoder_scale=1.5)
    mixture, _, _ = _linear_gaussian(encoder_shift=0.4, encoder_scale=1.5, prior_components=1)
    x = np.repeat(_draw(b, cov, 8, seed=20), 2500, axis=0)
    for model in (fixed, mixture):
        assert training_loss(model, x) == pytest.approx(expected_loss(model, x, standard), abs=0.08)
    _set_mixture_prior(mixture, [1.0], locs, trils)
    fitted = tfd.MultivariateNormalTriL(np.asarray(locs[0], np.float64),
                                        np.asarray(trils[0], np.float64))
    want = expected_loss(mixture, x, fitted)
    assert abs(want - expected_loss(mixture, x, standard)) > 2.0
    assert training_loss(mixture, x) == pytest.approx(want, abs=0.08)


def test_mixed_bfloat16_trains_with_float32_densities():
    # train.precision=auto picks mixed_bfloat16 on bfloat16 hardware: the convolutions run in
    # bfloat16, the posterior, prior, likelihood and ELBO in float32 (TFP's distributions need
    # one dtype; the summed log-density needs float32's mantissa).
    from modelzoo.training import dtype_policy

    with dtype_policy("mixed_bfloat16"):
        model = modelzoo.get("galaxy_vae", image_size=16, filters=(4, 8), hidden_units=(8,),
                             latent_dim=2, prior_components=2, seed=0)
    assert model.get_layer("encoder").get_layer("enc_conv1").compute_dtype == "bfloat16"
    for name in ("reparameterize", "elbo"):
        assert model.get_layer(name).compute_dtype == "float32"
    model.compile(optimizer="adam")
    x = np.random.default_rng(0).normal(size=(8, 16, 16, 1)).astype(np.float32)
    history = model.fit(x, epochs=2, batch_size=4, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    mean, variance = model(x)
    assert mean.dtype == variance.dtype == "float32"


def test_prior_refits_need_a_mixture_prior():
    from modelzoo.distributed import ProcessGroup
    from modelzoo.registry import get_task

    task, model = get_task("galaxy_density"), _linear_gaussian()[0]
    assert task.callbacks(model, "stamps.h5", {}, ProcessGroup(), 0) == []
    with pytest.raises(ValueError, match="prior_components"):
        task.callbacks(model, "stamps.h5", {"prior_refit_from": 3}, ProcessGroup(), 0)


def test_fitted_prior_follows_the_aggregate_posterior():
    # Latents in two clusters; the encoder is the exact posterior under N(0, I). The prior
    # fitted to the encoder's draws puts its mass on the clusters, and held-out stamps become
    # more likely than under N(0, I), though not more than under the true generating model.
    model, b, cov = _linear_gaussian(prior_components=2)
    fixed, _, _ = _linear_gaussian()
    weights, locs = [0.5, 0.5], [[2.5, 1.0], [-2.5, -1.0]]
    trils = [0.3 * np.eye(2)] * 2
    rng = np.random.default_rng(12)

    def draw(n):
        W = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
        z = np.asarray(locs)[rng.integers(0, 2, n)] + 0.3 * rng.standard_normal((n, 2))
        x = z @ W.T + b + rng.multivariate_normal(np.zeros(4), cov - W @ W.T, size=n)
        return x.reshape(n, 2, 2, 1).astype(np.float32)

    with pytest.raises(ValueError, match="prior_components"):
        prior.fit_prior(fixed, np.zeros((10, 2)))
    stats = prior.fit_prior(model, prior.posterior_draws(model, draw(2000), seed=13))
    assert stats["draws"] == 2000 and stats["converged"] == 1.0
    assert stats["log_density_mixture"] > stats["log_density_standard_normal"] + 1.0
    layer = prior.prior_layer(model)
    centres = np.sort(np.asarray(layer.locs)[:, 0])
    # Posterior means shrink the latents towards 0 by 1 - post_var = 4/5 along the first axis.
    np.testing.assert_allclose(centres, [-2.0, 2.0], atol=0.15)
    held_out = draw(300)
    fitted = density.log_prob(model, held_out, 256, seed=14, refine_steps=30).mean()
    standard = density.log_prob(fixed, held_out, 256, seed=14, refine_steps=30).mean()
    true = _exact_mixture_log_prob(held_out, b, cov, weights, locs, trils).mean()
    assert fitted > standard + 0.5, (fitted, standard)
    assert fitted < true + 0.05, (fitted, true)


# --- the bivariate-normal baseline ------------------------------------------------------------


def test_baseline_recovers_parameters_of_noiseless_galaxies():
    rng = np.random.default_rng(0)
    n = 12
    truth = dict(
        x=rng.uniform(-2, 2, n), y=rng.uniform(-2, 2, n), flux=rng.uniform(300, 3000, n),
        frac_dev=rng.uniform(0.1, 0.9, n), half_light_radius=rng.uniform(2, 7, n),
        axis_ratio=rng.uniform(0.3, 0.9, n), angle=rng.uniform(-1.4, 1.4, n),
    )
    psf = gb.PSFMixture.gaussian(n, 1, 1.2)
    images = gb.render(**truth, psf=psf)
    assert images.shape == (n, 69, 69, 1)
    np.testing.assert_allclose(images.sum(axis=(1, 2, 3)), truth["flux"], rtol=0.05)
    fit = gb.fit(images, np.full(images.shape, 1e-2), psf, noise="known")
    np.testing.assert_allclose(fit.x, truth["x"], atol=1e-3)
    np.testing.assert_allclose(fit.y, truth["y"], atol=1e-3)
    np.testing.assert_allclose(fit.flux[:, 0], truth["flux"], rtol=1e-3)
    np.testing.assert_allclose(fit.half_light_radius, truth["half_light_radius"], rtol=1e-3)
    np.testing.assert_allclose(fit.axis_ratio, truth["axis_ratio"], atol=1e-3)
    np.testing.assert_allclose(fit.frac_dev, truth["frac_dev"], atol=1e-2)
    np.testing.assert_allclose(np.cos(2 * (fit.angle - truth["angle"])), 1.0, atol=1e-5)
    # Noiseless: the residuals vanish, so log p is the normalising constant alone.
    np.testing.assert_allclose(fit.log_prob, -0.5 * 69 * 69 * np.log(2 * np.pi * 1e-2), atol=0.5)


def test_baseline_likelihood_matches_noise_model():
    """On noisy stamps drawn from the baseline's own model, chi^2 at the fit is ~ D - k and the
    constant-variance fit finds the noise level."""
    rng = np.random.default_rng(1)
    n, sigma = 8, 2.0
    params = dict(x=np.zeros(n), y=np.zeros(n), flux=np.full(n, 5000.0),
                  frac_dev=np.full(n, 0.3), half_light_radius=np.full(n, 4.0),
                  axis_ratio=np.full(n, 0.6), angle=np.full(n, 0.4))
    clean = gb.render(**params, psf=gb.PSFMixture.gaussian(n, 1, 1.0))
    noisy = clean + rng.normal(0, sigma, clean.shape)
    psf = gb.PSFMixture.gaussian(n, 1, 1.0)
    known = gb.fit(noisy, np.full(clean.shape, sigma**2), psf, noise="known")
    chi2 = ((noisy - known.model_images) ** 2 / sigma**2).sum(axis=(1, 2, 3))
    assert abs(chi2.mean() - (69 * 69 - 8)) < 4 * np.sqrt(2 * 69 * 69 / n)
    constant = gb.fit(noisy, psf=psf, noise="constant")
    np.testing.assert_allclose(np.sqrt(constant.noise_variance[:, 0, 0, 0]), sigma, rtol=0.05)
    np.testing.assert_allclose(constant.log_prob, known.log_prob, rtol=0.01)


def test_psf_mixture_fit_matches_a_gaussian():
    coords = np.arange(25) - 12.0
    xx, yy = np.meshgrid(coords, coords)
    image = np.exp(-0.5 * (xx**2 / 2.0**2 + yy**2 / 1.5**2))
    mix = gb.fit_psf((image / image.sum())[None, :, :, None])
    cov = (mix.weight[0, 0, :, None, None] * mix.cov[0, 0]).sum(0)
    np.testing.assert_allclose(np.diag(cov), [4.0, 2.25], rtol=0.03)


# --- reader ---------------------------------------------------------------------------------


def _write(path, **datasets):
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f[key] = value
    return str(path)


def test_reader_normalises_and_reports(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.normal(0, 4.0, (10, 69, 69)).astype(np.float32)
    path = _write(tmp_path / "ok.h5", images=images,
                  noise_variance=np.full(images.shape, 16.0, np.float32),
                  psf=np.ones((10, 5, 5), np.float32))
    stamps = open_galaxies(path, image_size=69, bands=1)
    assert stamps.scale == pytest.approx(4.0)  # the median noise sigma
    arrays = stamps.arrays((2, 6))
    assert arrays["images"].shape == (4, 69, 69, 1)
    np.testing.assert_allclose(arrays["images"][..., 0], images[2:6] / 4.0, rtol=1e-6)
    np.testing.assert_allclose(arrays["noise_variance"], 1.0)
    np.testing.assert_allclose(arrays["psf"].sum(axis=(1, 2)), 1.0, rtol=1e-6)
    # Without a variance map the scale is a robust sigma of the border pixels.
    bare = open_galaxies(_write(tmp_path / "bare.h5", images=images))
    assert bare.scale == pytest.approx(4.0, rel=0.05)
    assert not bare.has_psf and not bare.has_noise_variance


def test_noise_floor_setting_follows_the_file(tmp_path):
    from modelzoo.distributed import ProcessGroup
    from modelzoo.registry import get_task

    task = get_task("galaxy_density")
    images = np.random.default_rng(1).normal(0, 4.0, (8, 69, 69)).astype(np.float32)
    bare = _write(tmp_path / "bare.h5", images=images)
    model = modelzoo.get("galaxy_vae", latent_dim=2, filters=(4,), hidden_units=(8,))
    with pytest.raises(ValueError, match=r"bare\.h5.*eval_noise_floor=true.*noise_variance"):
        task.evaluate(model, bare, {"eval_noise_floor": True, "val_fraction": 0.5}, "val", None,
                      ProcessGroup())
    with pytest.raises(ValueError, match="auto, true or false"):
        task.evaluate(model, bare, {"eval_noise_floor": "yes", "val_fraction": 0.5}, "val",
                      None, ProcessGroup())
    # auto: the VAE is conditioned on the map exactly when the baseline is.
    from modelzoo.galaxy.task import _noise_floor_setting

    mapped = open_galaxies(_write(tmp_path / "mapped.h5", images=images,
                                  noise_variance=np.full(images.shape, 16.0, np.float32)))
    assert _noise_floor_setting({}, mapped) is True
    assert _noise_floor_setting({"baseline_noise": "constant"}, mapped) is False
    assert _noise_floor_setting({"eval_noise_floor": False}, mapped) is False
    assert _noise_floor_setting({}, open_galaxies(bare)) is False


@pytest.mark.parametrize(
    "datasets, message",
    [
        ({"stamps": np.zeros((4, 69, 69))}, "missing dataset 'images'"),
        ({"images": np.zeros((4, 69, 60))}, "expected square stamps"),
        ({"images": np.zeros((4, 69, 69)), "noise_variance": np.ones((4, 69, 68))},
         "noise_variance"),
        ({"images": np.zeros((4, 69, 69)), "noise_variance": -np.ones((4, 69, 69))},
         "row 0 is invalid; per-pixel noise variances must be > 0"),
        ({"images": np.zeros((4, 69, 69)), "noise_variance": np.ones((3, 69, 69))},
         "differ in length"),
        ({"images": np.full((4, 69, 69), np.nan)}, "NaN or Inf"),
        ({"images": np.zeros((4, 69, 69)), "psf": np.ones((4, 6, 6))}, "P odd"),
        ({"images": np.zeros((4, 69, 69)), "psf": np.zeros((4, 5, 5))}, "positive total"),
        ({"images": np.zeros((4, 69, 69), "S4")}, "dtype"),
        ({"images": np.zeros((4, 64, 64))}, "expects 69x69"),
    ],
)
def test_reader_rejects_malformed_files(tmp_path, datasets, message):
    path = _write(tmp_path / "bad.h5", **datasets)
    with pytest.raises(DataError, match=message):
        open_galaxies(path, image_size=69, scale=1.0)


def test_reader_rejects_truncated_file(tmp_path):
    path = tmp_path / "truncated.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(DataError, match="cannot be opened as HDF5"):
        open_galaxies(path)
    with pytest.raises(DataError, match="no such file"):
        open_galaxies(tmp_path / "missing.h5")


# --- generator ------------------------------------------------------------------------------


@pytest.mark.slow  # GalSim
def test_generator_is_deterministic_and_readable(tmp_path):
    cfg = GalaxyConfig(bands=("g", "r"))
    a = generate_galaxies(tmp_path / "a.h5", 6, seed=5, config=cfg, chunk_size=4)
    generate_galaxies(tmp_path / "b.h5", 6, seed=5, config=cfg, chunk_size=6)
    generate_galaxies(tmp_path / "c.h5", 6, seed=6, config=cfg)
    generate_galaxies(tmp_path / "d.h5", 6, seed=5, config=cfg, chunk_size=2, processes=2)
    assert a.rows == 6 and a.rows_per_second > 0
    with h5py.File(a.path) as fa, h5py.File(tmp_path / "b.h5") as fb, \
            h5py.File(tmp_path / "c.h5") as fc:
        np.testing.assert_array_equal(fa["images"][:], fb["images"][:])
        with h5py.File(tmp_path / "d.h5") as fd:  # whatever the number of processes
            np.testing.assert_array_equal(fa["images"][:], fd["images"][:])
            np.testing.assert_array_equal(fa["truth/flux"][:], fd["truth/flux"][:])
        assert not np.array_equal(fa["images"][:], fc["images"][:])
        assert fa["images"].shape == (6, 69, 69, 2) and fa["psf"].shape[-1] == 2
        assert set(fa["truth"]) >= {"morphology", "flux", "disk_hlr", "psf_fwhm"}
        # Noise variance is the Poisson + read variance of the drawn noise: >= the sky level.
        assert fa["noise_variance"][:].min() >= cfg.sky_level
    stamps = open_galaxies(a.path, image_size=69, bands=2)
    assert stamps.scale == pytest.approx(cfg.noise_sigma)


@pytest.mark.slow  # GalSim
def test_downscaled_crops_average_noise_and_keep_surface_brightness(tmp_path):
    # A crop f native pixels per stamp pixel, averaged: the sky noise per stamp pixel is
    # sigma / f, the variance map says so, and sum(image) * f^2 is the total flux.
    faint = GalaxyConfig(flux_range=(1.0, 1.0), crop_hlr_ratio=400.0, max_downscale=3.0)
    generate_galaxies(tmp_path / "sky.h5", 4, seed=1, config=faint)
    with h5py.File(tmp_path / "sky.h5") as fh:
        assert fh["truth/downscale"][:] == pytest.approx(3.0)
        images, variance = fh["images"][:], fh["noise_variance"][:]
    sigma = faint.noise_sigma
    assert images.std() == pytest.approx(sigma / 3.0, rel=0.03)
    assert np.median(variance) == pytest.approx(sigma**2 / 9.0, rel=0.02)

    bright = GalaxyConfig(flux_range=(1.0e6, 1.0e6), disk_hlr_median=4.0, crop_hlr_ratio=60.0,
                          neighbour_probability=0.0, morphology_fractions=(0, 0, 0, 1))
    generate_galaxies(tmp_path / "bright.h5", 4, seed=2, config=bright)
    with h5py.File(tmp_path / "bright.h5") as fh:
        f = fh["truth/downscale"][:]
        total = fh["images"][:].sum(axis=(1, 2)) * f**2
    assert (f > 1.5).all()
    # Noise on the sum: sigma * f per stamp pixel over 69^2 pixels, at most ~9e3 counts.
    np.testing.assert_allclose(total, 1.0e6, atol=3e4)


@pytest.mark.slow  # GalSim
def test_background_sources_follow_the_density(tmp_path):
    cfg = GalaxyConfig.population("prominent", crop_hlr_ratio=0.0, neighbour_density=1.0e-3)
    generate_galaxies(tmp_path / "field.h5", 40, seed=3, config=cfg)
    with h5py.File(tmp_path / "field.h5") as fh:
        counts = fh["truth/n_neighbours"][:]
    expected = 1.0e-3 * 69**2  # Poisson mean over the (not downscaled) crop: 4.76
    assert counts.mean() == pytest.approx(expected, abs=4 * np.sqrt(expected / 40))


def test_named_populations():
    assert GalaxyConfig.population("default") == GalaxyConfig()
    prominent = GalaxyConfig.population("prominent", bands=("g", "r"))
    assert prominent.bands == ("g", "r") and prominent.neighbour_density > 0
    with pytest.raises(modelzoo.ConfigError, match=r"population 'faint'; known: \['default', "
                       r"'prominent'\]"):
        GalaxyConfig.population("faint")


@pytest.mark.slow  # GalSim
def test_cli_generates_stamps(tmp_path, capsys):
    from modelzoo.cli import main

    out = tmp_path / "cli.h5"
    assert main(["data", "galaxy", "--output", str(out), "--count", "3", "--seed", "1",
                 "--population", "prominent"]) == 0
    assert "galaxy: wrote 3 stamps to" in capsys.readouterr().err
    assert open_galaxies(out).num_stamps == 3
    with h5py.File(out) as fh:
        assert json.loads(fh.attrs["config"])["crop_hlr_ratio"] == 10.0


def _dihedral_images(image: np.ndarray) -> list[np.ndarray]:
    rotations = [np.rot90(image, k, axes=(0, 1)) for k in range(4)]
    return rotations + [r[::-1] for r in rotations]


def test_dihedral_augmentation_draws_the_eight_symmetries():
    from modelzoo.tasks import square_dihedral as dihedral

    image = np.arange(5 * 5 * 2, dtype=np.float32).reshape(5, 5, 2)  # no symmetry of its own
    group = _dihedral_images(image)
    assert len({g.tobytes() for g in group}) == 8
    batch = np.repeat(image[None], 800, axis=0)
    out = dihedral(batch, seed=[3, 5]).numpy()
    which = [next(i for i, g in enumerate(group) if np.array_equal(o, g)) for o in out]
    counts = np.bincount(which, minlength=8)
    assert counts.sum() == 800 and counts.min() > 60  # uniform: 100 each, sd ~9
    np.testing.assert_array_equal(dihedral(batch, seed=[3, 5]).numpy(), out)
    assert not np.array_equal(dihedral(batch, seed=[3, 6]).numpy(), out)


def test_augmented_stream_resumes_with_the_same_batches(tmp_path):
    from modelzoo.distributed import ProcessGroup
    from modelzoo.registry import get_task

    path = tmp_path / "stamps.h5"
    _write(path, images=np.random.default_rng(0).normal(size=(40, 6, 6)).astype(np.float32))
    task, group = get_task("galaxy_density"), ProcessGroup()
    cfg = {"val_fraction": 0.2, "augment": "dihedral"}

    def batches(first_epoch: int, count: int) -> list[np.ndarray]:
        streams = task.datasets(str(path), dict(cfg), 8, group, seed=1, first_epoch=first_epoch)
        assert streams.steps_per_epoch == 4
        return [b[0].numpy() for b in streams.train.take(count)]

    straight, resumed = batches(0, 12), batches(2, 4)
    for a, b in zip(straight[8:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    plain = task.datasets(str(path), {"val_fraction": 0.2}, 8, group, seed=1, first_epoch=0)
    originals = [b[0].numpy() for b in plain.train.take(4)]
    # Every stamp is a symmetry of its original.
    for aug, orig in zip(straight[:4], originals, strict=True):
        for a, o in zip(aug, orig, strict=True):
            assert any(np.array_equal(a, g) for g in _dihedral_images(o))
    assert not all(np.array_equal(a, o) for a, o in zip(straight[:4], originals, strict=True))
    with pytest.raises(ValueError, match="data.augment"):
        task.datasets(str(path), {"augment": "rot45"}, 8, group, seed=1, first_epoch=0)


# --- training through the zoo's training path, and the seed's comparison ----------------------


@pytest.fixture(scope="module")
def stamp_file(tmp_path_factory) -> str:
    """Star-forming galaxies (spirals with arms, bars and knots; irregulars): the structure a
    bivariate-normal profile cannot describe. The smooth ellipticals and lenticulars of the
    default population need the longer run (scripts/galaxy_long_run.sh)."""
    path = tmp_path_factory.mktemp("galaxy") / "stamps.h5"
    config = GalaxyConfig(morphology_fractions=(0.0, 0.5, 0.5, 0.0))
    generate_galaxies(path, 512, seed=11, config=config)
    return str(path)


@pytest.mark.slow  # GalSim
def test_short_training_beats_the_baseline(stamp_file, tmp_path):
    from modelzoo import training

    run = str(tmp_path / "run")
    overrides = {"train.epochs": 20, "data.val_fraction": 0.125, "data.eval_samples": 32,
                 "optimizer.learning_rate": 1.0e-3, "data.prior_refit_from": 18}
    small = {"filters": [16, 32, 64], "hidden_units": [128], "prior_components": 4}
    result = training.train("galaxy_vae", stamp_file, run_dir=run, overrides=overrides,
                            model_config=small, verbose=0)
    losses = result.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    # The last two epochs trained against a prior refitted at their start: their checkpoints
    # hold it (a fit moves the components off N(0, I)'s zero means).
    for epoch in (19, 20):
        checkpoint = vae.galaxy_vae(**small)
        checkpoint.load_weights(os.path.join(run, "checkpoints", f"epoch-{epoch:04d}",
                                             "model.weights.h5"))
        assert np.abs(np.asarray(prior.prior_layer(checkpoint).locs)).max() > 0.1
    # After training the prior was fitted again to the 448 training stamps' posteriors
    # (2 draws each) and travels with the weights.
    with open(os.path.join(run, "finalize.json")) as fh:
        prior_fit = json.load(fh)
    assert prior_fit["draws"] == 2 * 448
    assert prior_fit["log_density_mixture"] > prior_fit["log_density_standard_normal"]
    trained, _ = training._load_run(run)
    np.testing.assert_allclose(np.asarray(prior.prior_layer(trained).locs),
                               np.asarray(prior.prior_layer(result.model).locs))
    assert np.abs(np.asarray(prior.prior_layer(trained).locs)).max() > 0.1
    with open(os.path.join(run, "config.json")) as fh:
        # The unit is the model's own (auto: the file's noise sigma), so it travels with it.
        assert json.load(fh)["model"]["config"]["input_scale"] == pytest.approx(
            GalaxyConfig().noise_sigma)
    out = str(tmp_path / "eval")
    metrics = training.evaluate(run, stamp_file, split="val", output_dir=out,
                                overrides={"data.eval_refine_steps": 10})
    assert metrics["refine_steps"] == 10
    assert metrics["vae_noise_floor"] is True  # the generator writes the noise map
    print(f"\ngalaxy_vae short run: trained in {result.seconds:.0f} s; VAE beats the "
          f"bivariate-normal model on {100 * metrics['fraction_vae_better']:.1f}% of "
          f"{metrics['stamps']} held-out stamps")
    assert metrics["stamps"] == 64
    assert metrics["fraction_vae_better"] > 0.5
    with h5py.File(stamp_file) as fh:  # the held-out rows are the file's last 64
        isolated = int((fh["truth/n_neighbours"][-64:] == 0).sum())
    assert metrics["isolated_stamps"] == isolated and 0 < isolated < 64
    with np.load(os.path.join(out, "log_probs.npz")) as saved:
        wins = saved["vae"] > saved["baseline"]
    assert metrics["fraction_vae_better"] == pytest.approx(wins.mean())
    with h5py.File(stamp_file) as fh:
        alone = fh["truth/n_neighbours"][-64:] == 0
    assert metrics["fraction_vae_better_isolated"] == pytest.approx(wins[alone].mean())
    for name in ("galaxy_stamp.png", "galaxy_posterior_mean.png", "galaxy_posterior_variance.png",
                 "galaxy_samples.png", "galaxy_baseline_fit.png", "galaxy_loglik_comparison.png",
                 "metrics.json"):
        assert os.path.getsize(os.path.join(out, name)) > 0
