"""Networks on weak-lensing convergence maps (seed: "Learning patterns in cosmology mass maps";
S. Singh, D. Bard, M. Mudigonda, NERSC, AAS 229, 2017).

* :func:`cosmo_dcae`: the denoising convolutional autoencoder: four convolutions, two dense
  bottleneck layers, four transposed convolutions, trained to rebuild the clean map from one
  corrupted with binomial (keep/zero) noise under mean-squared error (Vincent et al. 2008);
  its bottleneck dense (the seed's reading) or convolutional (a denoiser of shape noise).
* :func:`cosmo_cnn`: a CNN with four hidden layers (three convolutions and one dense layer) and a
  softmax over the cosmological models.
* :func:`cosmo_cnn_regression`: the same trunk with a linear head for (Omega_m, sigma_8), as in
  Gupta et al. 2018 (arXiv:1802.01212) and Ribli et al. 2019 (arXiv:1902.03663).

Inputs are (H, W, 1) maps of the convergence kappa as the file stores it: each network divides
by its ``kappa_scale`` (about one map standard deviation) in a layer of its own, so the shipped
weights take a file's maps as they are; the autoencoder's reconstruction is in kappa again.
"""

from __future__ import annotations

import keras
from keras import layers


def cosmo_dcae(
    input_shape: tuple[int, int, int] = (128, 128, 1),
    filters: tuple[int, int, int, int] = (16, 32, 64, 32),
    kernel_size: int = 5,
    bottleneck_units: tuple[int, int] = (256, 2048),
    activation: str = "elu",
    kappa_scale: float = 0.005,
    bottleneck: str = "dense",
    bottleneck_kernel: int = 3,
) -> keras.Model:
    """Denoising convolutional autoencoder: 4 stride-2 convolutions (128 -> 8 pixels), a dense
    code layer and a dense layer back to the 8 x 8 feature grid, 4 stride-2 transposed
    convolutions back to the input size (the last one linear, one channel).

    ``bottleneck_units`` = (code size, units of the second dense layer); the second must equal
    the feature grid after the encoder (8 x 8 x filters[-1] for 128 x 128 inputs). The seed
    does not name the activation; ELU (Clevert et al. 2016, arXiv:1511.07289) trains this
    network several times faster than ReLU here, whose units die on the zeroed pixels.

    ``bottleneck="conv"``: the two bottleneck layers are ``bottleneck_kernel`` convolutions at
    the encoder's grid with ``bottleneck_units`` filters instead of dense layers. A dense code
    of 256 numbers cannot carry the ~1,000 Fourier modes in which a 128 x 128 map with shape
    noise has more signal than noise; the grid (8 x 8 x 32 = 2,048) can, and its weights are
    shared across the map (the README's denoising measurements).
    """
    height, width, channels = input_shape
    grid = (height // 16, width // 16, filters[-1])
    if height % 16 or width % 16:
        raise ValueError(f"input sides must be multiples of 16 (four halvings), got {input_shape}")
    if bottleneck not in ("dense", "conv"):
        raise ValueError(f"bottleneck must be 'dense' or 'conv', got {bottleneck!r}")
    if bottleneck == "dense" and bottleneck_units[1] != grid[0] * grid[1] * grid[2]:
        raise ValueError(f"bottleneck_units[1] must be {grid[0] * grid[1] * grid[2]} "
                         f"(= {grid[0]} x {grid[1]} x {grid[2]}), got {bottleneck_units[1]}")
    inputs = keras.Input(shape=input_shape, name="corrupted_map")
    x = _network_units(inputs, kappa_scale)
    for i, n in enumerate(filters, start=1):
        x = layers.Conv2D(n, kernel_size, strides=2, padding="same", activation=activation,
                          name=f"conv{i}")(x)
    if bottleneck == "dense":
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(bottleneck_units[0], activation=activation, name="code")(x)
        x = layers.Dense(bottleneck_units[1], activation=activation, name="expand")(x)
        x = layers.Reshape(grid, name="grid")(x)
    else:
        for name, n in zip(("code", "expand"), bottleneck_units):
            x = layers.Conv2D(n, bottleneck_kernel, padding="same", activation=activation,
                              name=name)(x)
    decoder_filters = (*filters[-2::-1], channels)
    for i, n in enumerate(decoder_filters, start=1):
        last = i == len(decoder_filters)
        x = layers.Conv2DTranspose(n, kernel_size, strides=2, padding="same",
                                   activation=None if last else activation,
                                   name="reconstruction" if last else f"deconv{i}")(x)
    x = layers.Rescaling(kappa_scale, name="kappa", dtype="float32")(x)
    return keras.Model(inputs, x, name="cosmo_dcae")


def _network_units(inputs, kappa_scale: float):
    """The convergence divided by ``kappa_scale``, the unit the network computes in."""
    if not kappa_scale > 0:
        raise ValueError(f"kappa_scale must be positive, got {kappa_scale}")
    return layers.Rescaling(1.0 / kappa_scale, name="network_units", dtype="float32")(inputs)


def _trunk(inputs, kappa_scale: float, filters: tuple[int, int, int], dense_units: int,
           dropout: float):
    """Three [3x3 convolution + ReLU + 2x2 max-pool] blocks, global average pooling (the
    summary statistics of a homogeneous field do not depend on position) and one dense layer:
    the four hidden layers. The pooled features are batch-normalised: cosmologies differ by a
    few per cent in such map averages, which the normalisation brings to order one."""
    x = _network_units(inputs, kappa_scale)
    for i, n in enumerate(filters, start=1):
        x = layers.Conv2D(n, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    # momentum 0.9: the moving statistics settle within a short training (0.99 needs ~500 steps).
    x = layers.BatchNormalization(momentum=0.9, name="pool_norm")(x)
    x = layers.Dense(dense_units, activation="relu", name="features")(x)
    return layers.Dropout(dropout, name="dropout")(x) if dropout > 0 else x


def cosmo_cnn(
    input_shape: tuple[int, int, int] = (128, 128, 1),
    num_classes: int = 2,
    filters: tuple[int, int, int] = (16, 32, 64),
    dense_units: int = 64,
    dropout: float = 0.0,
    kappa_scale: float = 0.01,
) -> keras.Model:
    """Which cosmology produced a convergence map: 3 convolutions + 1 dense hidden layer,
    softmax over ``num_classes`` cosmological models."""
    inputs = keras.Input(shape=input_shape, name="convergence_map")
    x = _trunk(inputs, kappa_scale, filters, dense_units, dropout)
    outputs = layers.Dense(num_classes, activation="softmax", name="class_probabilities")(x)
    return keras.Model(inputs, outputs, name="cosmo_cnn")


def cosmo_cnn_regression(
    input_shape: tuple[int, int, int] = (128, 128, 1),
    filters: tuple[int, int, int] = (16, 32, 64),
    dense_units: int = 64,
    dropout: float = 0.0,
    parameter_center: tuple[float, float] = (0.3, 0.8),
    parameter_scale: tuple[float, float] = (0.1, 0.1),
    kappa_scale: float = 0.01,
) -> keras.Model:
    """(Omega_m, sigma_8) of a convergence map: the classifier's trunk and a linear head whose
    outputs are mapped to physical units as center + scale * y (so both parameters train on
    a comparable scale)."""
    inputs = keras.Input(shape=input_shape, name="convergence_map")
    x = _trunk(inputs, kappa_scale, filters, dense_units, dropout)
    x = layers.Dense(2, name="standardised_parameters")(x)
    outputs = layers.Rescaling(scale=list(parameter_scale), offset=list(parameter_center),
                               name="parameters")(x)
    return keras.Model(inputs, outputs, name="cosmo_cnn_regression")
