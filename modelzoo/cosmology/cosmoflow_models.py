"""CosmoFlow: a 3-D CNN that regresses cosmological parameters from dark-matter volumes.

Mathuriya et al., "CosmoFlow: using deep learning to learn the universe at scale", SC18
(arXiv:1808.04728), as specified by the MLPerf HPC CosmoFlow reference (Farrell et al. 2021,
arXiv:2110.11466; github.com/mlcommons/hpc, ``cosmoflow/``): five [Conv3D k=3 "same", LeakyReLU,
MaxPool3D 2] blocks whose filters double from 32, flatten, Dense 128 and Dense 64 (LeakyReLU,
dropout 0.5 each), four tanh outputs scaled by 1.2 (the targets are scaled to [-1, 1]).

The input transform travels with the weights: the model takes the particle counts of a file as
they are (int16 in the published TFRecords) and applies the reference's log(1 + counts) as its
first layer, :class:`LogCounts`.
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="modelzoo")
class LogCounts(layers.Layer):
    """log(1 + counts / scale) of particle counts of any numeric dtype, as float: with scale 1
    the MLPerf reference's ``apply_log`` transform (there done in the reader)."""

    def __init__(self, scale: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, counts):
        return ops.log1p(ops.cast(counts, "float32") / self.scale)

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="modelzoo")
class ScaleOutputs(layers.Layer):
    """Multiplies by a constant (the reference's 1.2 after tanh, so that the targets' range
    [-1, 1] is reachable without saturating)."""

    def __init__(self, factor: float = 1.2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.factor = float(factor)

    def call(self, x):
        return x * ops.cast(self.factor, x.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "factor": self.factor}


def cosmoflow(
    input_shape: tuple[int, int, int, int] = (128, 128, 128, 4),
    conv_filters: int = 32,
    conv_layers: int = 5,
    kernel_size: int = 3,
    dense_units: tuple[int, ...] = (128, 64),
    dropout: float = 0.5,
    negative_slope: float = 0.3,
    l2: float = 0.0,
    num_outputs: int = 4,
    output_scale: float = 1.2,
    log_counts: bool = True,
    count_scale: float = 1.0,
) -> keras.Model:
    """The MLPerf HPC CosmoFlow 3-D CNN (Mathuriya et al. SC18): ``conv_layers`` blocks of
    [Conv3D(``conv_filters`` * 2^i, ``kernel_size``), LeakyReLU, MaxPool3D(2)], flatten, dense
    layers ``dense_units`` (LeakyReLU, ``dropout``), ``num_outputs`` tanh units times
    ``output_scale``.

    Inputs are (D, H, W, redshifts) particle counts (published: 128^3 x 4); ``log_counts``
    applies log(1 + counts / ``count_scale``) inside the model. The reference's volumes hold
    about one particle per voxel (``count_scale`` 1); a coarser grid of the same volume holds
    more, and ``count_scale`` = its mean count puts its inputs in the same range.
    ``negative_slope`` 0.3 is the LeakyReLU default of the reference's Keras; ``l2`` the
    reference's kernel regulariser of the dense layers.
    """
    spatial = tuple(input_shape[:3])
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (D, H, W, channels), got {input_shape}")
    if any(side % 2**conv_layers for side in spatial):
        raise ValueError(f"input sides {spatial} must be multiples of 2^conv_layers = "
                         f"{2**conv_layers} ({conv_layers} poolings of 2)")
    regularizer = keras.regularizers.L2(l2) if l2 else None
    inputs = keras.Input(shape=tuple(input_shape), name="counts")
    x = LogCounts(count_scale, name="log_counts")(inputs) if log_counts else inputs
    for i in range(conv_layers):
        x = layers.Conv3D(conv_filters * 2**i, kernel_size, padding="same", name=f"conv{i + 1}")(x)
        x = layers.LeakyReLU(negative_slope, name=f"conv{i + 1}_act")(x)
        x = layers.MaxPooling3D(2, name=f"pool{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(dense_units, start=1):
        x = layers.Dense(units, kernel_regularizer=regularizer, name=f"fc{i}")(x)
        x = layers.LeakyReLU(negative_slope, name=f"fc{i}_act")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name=f"fc{i}_dropout")(x)
    x = layers.Dense(num_outputs, activation="tanh", name="output_tanh")(x)
    # float32 output whatever the dtype policy: the loss and metrics compare with float targets.
    outputs = ScaleOutputs(output_scale, dtype="float32", name="parameters")(x)
    return keras.Model(inputs, outputs, name="cosmoflow")
