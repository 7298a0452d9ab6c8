"""Builders of the ECoG speech decoders: fully connected networks on high-gamma amplitude
(Livezey, Bouchard & Chang, PLoS Comput Biol 15(9): e1007091, 2019, arXiv:1803.09807).

The input of one trial is ``(channels, samples)`` high-gamma amplitude around the
consonant-vowel transition (85 electrodes x 258 samples for the paper's subject 1). It is
flattened, standardised per feature by a :class:`Standardize` layer whose statistics are part of
the weights (the task fills them from the training rows before the first step; the paper
centres the data on the training mean), and classified into 57 consonant-vowel
syllables. ``ecog_mlp`` has zero to three hidden layers (the paper's search range; its best
networks had one or two tanh layers); ``ecog_logreg`` is the paper's baseline, multinomial logistic
regression with the same input dropout and weight decay.
"""

from __future__ import annotations

import keras

from modelzoo.errors import ConfigError

ACTIVATIONS = ("tanh", "relu", "sigmoid")
MAX_HIDDEN_LAYERS = 3


@keras.saving.register_keras_serializable(package="modelzoo.ecog")
class Standardize(keras.layers.Layer):
    """``(x - mean) / sqrt(variance)`` per feature, the statistics held as non-trainable weights
    and read at every call. (Keras' ``Normalization`` caches its statistics when adapted or
    loaded through Keras, so weights assigned by variable path, as the zoo's pretrained loader
    does, would be ignored.) Identity until the statistics are set."""

    def build(self, input_shape: tuple) -> None:
        features = (input_shape[-1],)
        self.mean = self.add_weight(shape=features, initializer="zeros", trainable=False,
                                    name="mean")
        self.variance = self.add_weight(shape=features, initializer="ones", trainable=False,
                                        name="variance")

    def call(self, inputs):
        scale = keras.ops.rsqrt(keras.ops.maximum(self.variance, keras.config.epsilon()))
        return (inputs - self.mean) * scale


def _standardized_input(n_channels: int, n_samples: int) -> tuple[keras.KerasTensor,
                                                                   keras.KerasTensor]:
    inputs = keras.Input(shape=(n_channels, n_samples), name="high_gamma")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = Standardize(name="standardize")(x)
    return inputs, x


def _check(n_channels: int, n_samples: int, n_classes: int, dropouts: dict[str, float],
           weight_decay: float) -> None:
    if min(n_channels, n_samples) < 1 or n_classes < 2:
        raise ConfigError(f"need n_channels, n_samples >= 1 and n_classes >= 2, got "
                         f"{n_channels}, {n_samples}, {n_classes}")
    for name, rate in dropouts.items():
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {rate}")
    if weight_decay < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {weight_decay}")


def ecog_mlp(
    n_channels: int = 85,
    n_samples: int = 258,
    n_classes: int = 57,
    hidden_layers: int = 1,
    units_1: int = 500,
    units_2: int = 250,
    units_3: int = 125,
    activation: str = "tanh",
    input_dropout: float = 0.2,
    dropout: float = 0.5,
    weight_decay: float = 1e-5,
) -> keras.Model:
    """Fully connected speech decoder: standardised high-gamma -> 0-3 hidden layers -> softmax
    over consonant-vowel syllables (Livezey et al. 2019).

    Args:
        n_channels: electrodes (85 for the paper's subject 1).
        n_samples: time samples per trial (258: -0.5 s to +0.79 s at 200 Hz).
        n_classes: syllables (57 = 19 consonants x 3 vowels).
        hidden_layers: 0 (logistic regression) to 3.
        units_1, units_2, units_3: widths of hidden layers 1-3 (the paper searched 57-1000,
            57-500 and 57-250); widths of absent layers are ignored.
        activation: ``"tanh"`` (the paper's best), ``"relu"`` or ``"sigmoid"``.
        input_dropout: dropout rate on the input features (the paper's input include
            probability is 1 - rate).
        dropout: dropout rate after each hidden layer.
        weight_decay: L2 penalty on every kernel.
    """
    _check(n_channels, n_samples, n_classes, {"input_dropout": input_dropout,
                                              "dropout": dropout}, weight_decay)
    if not 0 <= hidden_layers <= MAX_HIDDEN_LAYERS:
        raise ConfigError(f"hidden_layers must be 0..{MAX_HIDDEN_LAYERS}, got {hidden_layers}")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    widths = (units_1, units_2, units_3)[:hidden_layers]
    if any(w < 1 for w in widths):
        raise ConfigError(f"hidden layer widths must be >= 1, got {widths}")
    regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None
    inputs, x = _standardized_input(n_channels, n_samples)
    x = keras.layers.Dropout(input_dropout, name="input_dropout")(x)
    for i, width in enumerate(widths, start=1):
        x = keras.layers.Dense(width, activation=activation, kernel_regularizer=regularizer,
                               name=f"hidden_{i}")(x)
        x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", kernel_regularizer=regularizer,
                                 name="syllable")(x)
    return keras.Model(inputs, outputs, name="ecog_mlp" if widths else "ecog_logreg")


def ecog_logreg(
    n_channels: int = 85,
    n_samples: int = 258,
    n_classes: int = 57,
    input_dropout: float = 0.2,
    weight_decay: float = 1e-3,
) -> keras.Model:
    """The paper's baseline: multinomial logistic regression on standardised high-gamma, with
    input dropout and weight decay (``ecog_mlp`` without hidden layers)."""
    return ecog_mlp(n_channels=n_channels, n_samples=n_samples, n_classes=n_classes,
                    hidden_layers=0, input_dropout=input_dropout, weight_decay=weight_decay)
