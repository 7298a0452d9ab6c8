"""Cosmology mass maps: a denoising convolutional autoencoder and CNNs that tell cosmologies
apart from weak-lensing convergence maps (seed: "Learning patterns in cosmology mass maps";
Singh, Bard, Mudigonda, NERSC 2017), with the classical statistics they are compared with.

Folder: ``models.py`` (builders), ``reader.py`` (HDF5 maps, labels, parameters, pixel scale),
``generator.py`` (pyccl spectra -> lognormal maps with shape noise, ``modelzoo data
cosmology``), ``statistics.py`` (power spectrum, peaks, moments), ``baseline.py`` (classifiers
and regressions on them), ``task.py`` (training and the comparisons), ``recipes/``. Imports
nothing heavy: the zoo reads ``CASE`` to list the models.
"""

from modelzoo.registry import Case, ModelSpec

_SEED = (
    "Prabhat, A look at deep learning for science, O'Reilly 2017 (S. Singh, D. Bard, "
    "M. Mudigonda, NERSC; AAS 229 poster, 2017)"
)
_LATER = (
    "Schmelzle et al. 2017, arXiv:1707.05167; Gupta et al. 2018, arXiv:1802.01212; Fluri et al. "
    "2018, arXiv:1807.08732; Ribli et al. 2019, arXiv:1902.03663"
)
_LAYOUT = (
    "HDF5 kappa (N,H,W) or (N,H,W,1) float convergence; label (N,) or (N,1) class index; "
    "omega_m, sigma_8 (N,) or (N,1) per map; root attribute pixel_arcmin"
)
_VOLUMES = (
    "MLPerf HPC CosmoFlow TFRecords (gzip; x: int16 counts bytes of D^3 x 4, y: 4 floats in "
    "[-1, 1]; a folder with train/ and validation/), or HDF5 x (N, D, H, W, C) counts, y (N, 4)"
)
_INPUTS = "(128, 128, 1) convergence maps kappa as stored (the model divides by kappa_scale)"

CASE = Case(
    name="cosmology",
    title="Cosmology mass maps: denoising autoencoder and cosmology classifier",
    package=__name__,
    models=(
        ModelSpec(
            name="cosmo_dcae",
            builder="modelzoo.cosmology.models:cosmo_dcae",
            summary="Denoising convolutional autoencoder of 128x128 mass maps (4 conv, 2 dense "
            "bottleneck, 4 deconv; binomial corruption, MSE).",
            domain="cosmology",
            problem="denoising autoencoder",
            inputs=_INPUTS + ", corrupted by zeroing pixels",
            outputs="(128, 128, 1) reconstruction of the clean map",
            citation=_SEED + "; Vincent et al., ICML 2008",
            data_layout=_LAYOUT,
            recipe="cosmo_dcae.yaml",
            sample={"data": {"setting": "sigma8", "maps_per_class": 6, "shape_noise": False,
                             "smoothing_arcmin": 4.92, "seed": 7},
                    "config": {"filters": [4, 4, 4, 4], "bottleneck_units": [8, 256]},
                    "recipe": {"train.batch_size": 4}},
            published="Reconstructs simulated 128x128 mass maps (smoothed) after training on "
            "10,000 maps; saliency highlights high mass concentrations (seed, figures 8-9).",
        ),
        ModelSpec(
            name="cosmo_cnn",
            builder="modelzoo.cosmology.models:cosmo_cnn",
            summary="CNN with four hidden layers telling which cosmology produced a "
            "convergence map (softmax over N models).",
            domain="cosmology",
            problem="classification",
            inputs=_INPUTS,
            outputs="softmax over the cosmological models (2 by default)",
            citation=_SEED + "; " + _LATER,
            data_layout=_LAYOUT,
            recipe="cosmo_cnn.yaml",
            sample={"data": {"setting": "sigma8", "maps_per_class": 6, "seed": 7},
                    "config": {"filters": [4, 4, 4], "dense_units": 8},
                    "recipe": {"train.batch_size": 4}},
            published="80% accuracy on two simulated cosmologies after training on 5,000 "
            "128x128 maps (seed); >85% over 5 models along the sigma_8-Omega_m degeneracy "
            "(Schmelzle et al. 2017).",
            search_space={"optimizer.learning_rate": {"type": "float", "low": 1e-4,
                                                      "high": 3e-3, "log": True}},
        ),
        ModelSpec(
            name="cosmoflow",
            builder="modelzoo.cosmology.cosmoflow_models:cosmoflow",
            summary="CosmoFlow 3-D CNN regressing (Omega_m, sigma_8, n_s, h) from 128^3 x 4 "
            "dark-matter particle counts (MLPerf HPC reference architecture).",
            domain="cosmology",
            problem="regression",
            inputs="(128, 128, 128, 4) particle counts at four redshifts, as stored (int16); "
            "log(1 + counts) is the model's first layer",
            outputs="4 parameters scaled to [-1, 1] (tanh x 1.2)",
            citation="Mathuriya et al., CosmoFlow, SC18, arXiv:1808.04728; MLPerf HPC "
            "CosmoFlow reference (Farrell et al. 2021, arXiv:2110.11466)",
            data_layout=_VOLUMES,
            recipe="cosmoflow.yaml",
            published="77% parallel efficiency and 3.5 PF/s on 8,192 Cori KNL nodes (SC18); "
            "MLPerf HPC quality target: validation MAE 0.124 on N-body volumes.",
            # 32^3 volumes: the shipped weights' size (its four poolings need 16 | side).
            sample={"data": {"kind": "cosmoflow", "n_volumes": 8, "npix": 32,
                             "volumes_per_cosmology": 4, "val_fraction": 0.25, "seed": 7},
                    "config": {"conv_filters": 2, "conv_layers": 2, "dense_units": (8,),
                               "dropout": 0.0, "count_scale": 64.0},
                    "recipe": {"train.batch_size": 2}},
        ),
        ModelSpec(
            name="cosmo_cnn_regression",
            builder="modelzoo.cosmology.models:cosmo_cnn_regression",
            summary="The cosmology CNN with a regression head for (Omega_m, sigma_8).",
            domain="cosmology",
            problem="regression",
            inputs=_INPUTS,
            outputs="(Omega_m, sigma_8)",
            citation=_LATER,
            data_layout=_LAYOUT,
            recipe="cosmo_cnn_regression.yaml",
            sample={"data": {"setting": "parameters", "maps_per_class": 3,
                             "num_cosmologies": 4, "seed": 7},
                    "config": {"filters": [4, 4, 4], "dense_units": 8},
                    "recipe": {"train.batch_size": 4}},
            published="About 5x smaller (Omega_m, sigma_8) contours than the power spectrum on "
            "noiseless maps (Gupta et al. 2018); 2.4-2.8x with LSST/Euclid-like noise "
            "(Ribli et al. 2019).",
        ),
    ),
    tasks={
        "cosmo_reconstruction": "modelzoo.cosmology.task:MapReconstruction",
        "cosmo_classification": "modelzoo.cosmology.task:CosmologyClassification",
        "cosmo_regression": "modelzoo.cosmology.task:ParameterRegression",
        "cosmoflow_regression": "modelzoo.cosmology.cosmoflow_task:CosmoFlowRegression",
    },
    data_command="modelzoo.cosmology.data",
    generator="modelzoo.cosmology.data:generate",
    card=(
        "Synthetic data: `modelzoo data cosmology` computes the convergence power spectrum "
        "with pyccl (Eisenstein-Hu, halofit, Smail n(z) with z0 = 0.64), draws lognormal "
        "fields on a 3.5 x 3.5 deg, 128 x 128 patch that keep that spectrum, with the shift set "
        "by the empty-beam convergence (it grows with Omega_m, so maps carry non-Gaussian "
        "information), adds shape noise (30 galaxies/arcmin^2, sigma_e 0.26) and smooths at "
        "2.34 arcmin. `--setting sigma8`: (0.3, 0.8) against (0.3, 0.75); `--setting "
        "degenerate`: (0.3, 0.8) against Omega_m 0.2 with the sigma_8 that gives equal map "
        "variance; `--setting parameters`: random cosmologies for the regression head."
    ),
)
