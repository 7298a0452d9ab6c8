"""Input transforms as Keras layers, so that a model takes the arrays of a file in the published
layout and its transform travels with the weights (through ``model.save`` and any export), as
Keras preprocessing layers and keras-hub preprocessors do. None of them holds a variable: adding
one to a builder leaves the variable paths, and so every shipped weights file, valid.

They compute in float32 under a mixed policy too (``dtype="float32"``): a bfloat16 input keeps 8
bits of mantissa, and a surface pressure of 101,000 Pa would lose its weather before the offset
is taken off."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="modelzoo")
class Log1p(layers.Layer):
    """``log(1 + max(x, 0))``: compresses values spanning decades (calorimeter energies, PMT
    charges); the clip guards against negative noise in a user's file."""

    def call(self, x):
        return keras.ops.log1p(keras.ops.maximum(x, 0.0))


def standardize(x, offset: float | Sequence[float], scale: float | Sequence[float], name: str):
    """``(x - offset) / scale`` per channel (last axis) with fixed constants, as a
    :class:`keras.layers.Rescaling` layer (no variables)."""
    if isinstance(scale, (int, float)):
        factor, shift = 1.0 / scale, -float(offset) / scale
    else:
        factor = [1.0 / s for s in scale]
        shift = [-o / s for o, s in zip(offset, scale, strict=True)]
    return layers.Rescaling(factor, shift, name=name, dtype="float32")(x)
