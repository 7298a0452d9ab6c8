"""Galaxy shapes: a probabilistic auto-encoder whose decoder is a per-pixel TFP distribution,
compared with the bivariate-normal galaxy model (seed: "Galaxy shapes"; Regier, McAuliffe,
Prabhat 2015).

Folder: ``layers.py`` (Keras layers holding the distributions), ``vae.py`` (builder, encode,
decode), ``prior.py`` (p(z): N(0, I) or a fitted mixture; sampling), ``density.py`` (importance-
sampled log p(x), posterior refinement), ``baseline.py`` (the bivariate-normal galaxy model),
``reader.py``, ``generator.py`` (GalSim stamps, ``modelzoo data galaxy``), ``augment.py``,
``task.py`` (training and the seed's comparison), ``recipes/``.

The model's verbs are reachable from here, loaded on first use (the package itself imports no
deep-learning framework)::

    >>> from modelzoo import galaxy
    >>> model = modelzoo.get("galaxy_vae", weights="default")
    >>> q = galaxy.encode(model, stamps)            # posterior over z per stamp
    >>> image = galaxy.decode(model, q.mode())      # p(x | z): .mean(), .variance()
    >>> new = galaxy.sample(model, 16)              # galaxies drawn from the prior
    >>> galaxy.log_prob(model, stamps, 128)         # importance-sampled log p(x), nats
    >>> galaxy.fit_prior(model, galaxy.posterior_draws(model, training_stamps))
"""

from modelzoo.registry import Case, ModelSpec

_VERBS = {
    "encode": "modelzoo.galaxy.vae", "decode": "modelzoo.galaxy.vae",
    "sample": "modelzoo.galaxy.prior", "fit_prior": "modelzoo.galaxy.prior",
    "posterior_draws": "modelzoo.galaxy.prior", "log_prob": "modelzoo.galaxy.density",
    "elbo": "modelzoo.galaxy.density",
}


def __getattr__(name: str):
    if name in _VERBS:
        import importlib

        return getattr(importlib.import_module(_VERBS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_CITATION = (
    "Regier, McAuliffe, Prabhat, A deep generative model for astronomical images of galaxies, "
    "NIPS 2015 Workshop on Advances in Approximate Bayesian Inference; Kingma & Welling, "
    "Auto-Encoding Variational Bayes, ICLR 2014; Burda et al., Importance Weighted "
    "Autoencoders, ICLR 2016; fitted prior: Ghosh et al., From Variational to Deterministic "
    "Autoencoders, ICLR 2020, and Dai & Wipf, Diagnosing and Enhancing VAE Models, ICLR 2019"
)

CASE = Case(
    name="galaxy",
    title="Galaxy shapes: a deep generative model of astronomical images",
    package=__name__,
    models=(
        ModelSpec(
            name="galaxy_vae",
            builder="modelzoo.galaxy.vae:galaxy_vae",
            summary="Variational auto-encoder of galaxy stamps with a per-pixel normal decoder "
            "(Regier et al.).",
            domain="astronomy",
            problem="density estimation",
            inputs="(69, 69, bands) galaxy stamps in units of the background noise sigma",
            outputs="per-pixel normal (mean, variance) of the reconstruction; loss = -ELBO",
            citation=_CITATION,
            data_layout=(
                "HDF5 images (N,S,S) or (N,S,S,B) sky-subtracted; optional noise_variance (same "
                "shape) and psf (N,P,P[,B]); attribute noise_sigma sets the model unit"
            ),
            recipe="galaxy_vae.yaml",
            sample={"data": {"n_stamps": 12, "population": "prominent", "seed": 7},
                    "config": {"latent_dim": 2, "filters": [4, 4, 4], "hidden_units": [8]},
                    "recipe": {"train.batch_size": 4}},
            published=(
                "Trained on 43,444 SDSS galaxy images (69x69); on 97.2% of held-out images the "
                "VAE assigns a higher likelihood than the bivariate-Gaussian galaxy model "
                "(Prabhat, O'Reilly 2017)."
            ),
        ),
    ),
    tasks={"galaxy_density": "modelzoo.galaxy.task:GalaxyDensity"},
    data_command="modelzoo.galaxy.generator",
    generator="modelzoo.galaxy.generator:generate_galaxies",
    card=(
        "Synthetic data: `modelzoo data galaxy` draws bulge + disk + knots galaxies with GalSim "
        "through a Moffat PSF with CCD noise; `--population prominent` is the seed's selection "
        "(bright galaxies, crops of ten half-light radii downscaled to 69 x 69, neighbours)."
    ),
)
