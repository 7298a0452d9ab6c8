"""Builders for the Daya Bay case: the denoising convolutional autoencoder of the seed article
(Kohn, Racah et al.; Figures 13-14) and the supervised CNN of Racah et al., ICMLA 2016
(arXiv:1601.07621).

Inputs are (rings, columns, 4) PMT maps, channels-last, as a file stores them (charge and time
of the prompt and delayed triggers; a file's (N, 4, 8, 24) maps transposed to NHWC). Each
network preprocesses them in a layer of its own (:class:`PMTPreprocess`), so the shipped
weights take a file's maps as they are. The 24 columns go round the detector, so every
convolution pads the azimuth circularly (:class:`AzimuthalPad`) and the rings with zeros.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from modelzoo.errors import ConfigError

RAW_CHANNELS = 4  # prompt charge, prompt time, delayed charge, delayed time
TIME_UNIT_NS = 10.0
_CHARGE_OF = {1: 0, 3: 2}  # time channel -> the charge channel that says which PMTs were hit


@keras.saving.register_keras_serializable(package="modelzoo.dayabay")
class PMTPreprocess(layers.Layer):
    """Raw (N, rings, columns, 4) maps -> the ``channels`` the network sees, with no statistics
    of the data: charge -> log(1 + charge); time -> (time - the trigger's median first-hit
    time) / 10 ns on PMTs with charge, 0 elsewhere (dayabay-learn files store 0 for a PMT
    without a hit). Zero is therefore "no light / typical time", the value the denoising
    autoencoder's corruption writes. Computes in float32 (times are hundreds of ns)."""

    def __init__(self, channels: tuple[int, ...] = (0, 1, 2, 3), **kwargs) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.channels = tuple(int(c) for c in channels)

    def call(self, x):
        out = []
        for c in self.channels:
            if c in _CHARGE_OF:
                out.append(_centred_times(x[..., _CHARGE_OF[c]], x[..., c]))
            else:
                out.append(ops.log1p(ops.maximum(x[..., c], 0.0)))
        return ops.stack(out, axis=-1)

    def compute_output_shape(self, shape):
        return (*shape[:-1], len(self.channels))

    def get_config(self) -> dict:
        return {**super().get_config(), "channels": list(self.channels)}


def _centred_times(charge, time):
    """Hit times minus each event's median hit time (numpy's nanmedian: the mean of the two
    middle values for an even count), in units of 10 ns; 0 where a PMT saw no charge."""
    hit = charge > 0
    flat_hit = ops.reshape(hit, (ops.shape(time)[0], -1))
    flat = ops.where(flat_hit, ops.reshape(time, ops.shape(flat_hit)), np.inf)
    ordered = ops.sort(flat, axis=-1)
    count = ops.sum(ops.cast(flat_hit, "int32"), axis=-1, keepdims=True)
    low = ops.take_along_axis(ordered, ops.maximum((count - 1) // 2, 0), axis=-1)
    high = ops.take_along_axis(ordered, ops.minimum(count // 2, ops.shape(flat)[-1] - 1),
                               axis=-1)
    median = ops.where(count > 0, (low + high) / 2.0, 0.0)[:, :, None]
    return ops.where(hit, (time - median) / TIME_UNIT_NS, 0.0)


@keras.saving.register_keras_serializable(package="modelzoo.dayabay")
class AzimuthalPad(layers.Layer):
    """Pads ``width`` columns on each side by wrapping round the azimuth, and ``width`` rings
    with zeros (the barrel has edges at top and bottom, not in azimuth)."""

    def __init__(self, width: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.width = int(width)

    def call(self, x):
        w = self.width
        x = ops.concatenate([x[:, :, -w:], x, x[:, :, :w]], axis=2)
        return ops.pad(x, ((0, 0), (w, w), (0, 0), (0, 0)))

    def compute_output_shape(self, shape):
        w = self.width
        grow = lambda n: None if n is None else n + 2 * w  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])

    def get_config(self) -> dict:
        return {**super().get_config(), "width": self.width}


@keras.saving.register_keras_serializable(package="modelzoo.dayabay")
class PixelCorruption(layers.Layer):
    """Denoising corruption: while training, sets exactly ``round(fraction * size)`` randomly
    chosen input values of each example to zero (the seed: "one-third of the image pixels are
    set to zero"); the identity at inference."""

    def __init__(self, fraction: float = 1 / 3, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fraction = float(fraction)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.fraction <= 0:
            return x
        return x * corruption_keep_mask(ops.shape(x), self.fraction, self.seed_generator,
                                        x.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "fraction": self.fraction, "seed": self.seed}


def corruption_keep_mask(shape, fraction: float, seed, dtype="float32"):
    """A 0/1 tensor of ``shape`` (batch first) with exactly ``round(fraction * size)`` zeros in
    each example: the values whose uniform draw ranks among the example's highest."""
    size = int(np.prod(shape[1:]))
    dropped = int(round(fraction * size))
    if dropped == 0:
        return ops.ones(shape, dtype)
    draws = keras.random.uniform((shape[0], size), seed=seed)
    threshold = ops.top_k(draws, dropped, sorted=True)[0][:, -1:]
    return ops.reshape(ops.cast(draws < threshold, dtype), shape)


def _check_grid(rings: int, columns: int) -> None:
    if rings % 4 or columns % 4:
        raise ConfigError(f"rings and columns must be multiples of 4 (two 2x2 poolings), got "
                          f"{rings} x {columns}")


def _pmt_input(rings: int, columns: int, channels: tuple[int, ...]):
    channels = tuple(int(c) for c in channels)
    if not channels or len(set(channels)) < len(channels) or any(
            c not in range(RAW_CHANNELS) for c in channels):
        raise ConfigError(f"channels must be distinct indices 0..{RAW_CHANNELS - 1} (prompt "
                          f"charge, prompt time, delayed charge, delayed time), got {channels}")
    inputs = keras.Input((rings, columns, RAW_CHANNELS), name="pmt_maps")
    return inputs, PMTPreprocess(channels, name="preprocess")(inputs)


def dayabay_dae(
    rings: int = 8,
    columns: int = 24,
    channels: tuple[int, ...] = (0, 1, 2, 3),
    code_size: int = 16,
    filters: int = 128,
    corruption: float = 1 / 3,
    corruption_seed: int | None = None,
) -> keras.Model:
    """Denoising convolutional autoencoder of Daya Bay PMT maps with a ``code_size`` code.

    Corruption (training only) zeroes ``corruption`` of the input values; the encoder is two
    convolutions (5x5 and 3x3, ``filters`` each, ReLU, 2x2 max pooling; the layout of Kohn's
    IBDPairConvAe) and a linear dense layer to the code (``code``, 16-d as in the seed's
    t-SNE figure); the decoder is a dense layer back to a 2 x 6 grid and three transposed
    convolutions (two of stride 2) to the input's shape, linear output (``reconstruction``).
    Trained with MSE against the clean preprocessed input (``channels``: which of the
    preprocessed channels the network sees and rebuilds).
    """
    _check_grid(rings, columns)
    if not 0.0 <= corruption < 1.0:
        raise ConfigError(f"corruption must be in [0, 1), got {corruption}")
    inputs, x = _pmt_input(rings, columns, channels)
    x = PixelCorruption(corruption, corruption_seed, name="corruption")(x)
    x = AzimuthalPad(2, name="pad1")(x)
    x = layers.Conv2D(filters, 5, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = AzimuthalPad(1, name="pad2")(x)
    x = layers.Conv2D(filters, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    code = layers.Dense(code_size, name="code")(x)
    small = (rings // 4, columns // 4)
    x = layers.Dense(small[0] * small[1] * filters, activation="relu", name="expand")(code)
    x = layers.Reshape((*small, filters), name="grid")(x)
    x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation="relu",
                               name="deconv1")(x)
    x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation="relu",
                               name="deconv2")(x)
    outputs = layers.Conv2DTranspose(len(channels), 3, padding="same", name="reconstruction")(x)
    return keras.Model(inputs, outputs, name="dayabay_dae")


def dayabay_cnn(
    rings: int = 8,
    columns: int = 24,
    channels: tuple[int, ...] = (0, 1, 2, 3),
    num_classes: int = 4,
    filters: int = 32,
    dense_units: int = 128,
    dropout: float = 0.5,
) -> keras.Model:
    """Supervised CNN classifying Daya Bay PMT maps into event classes (Racah et al. 2016:
    >97% accuracy). Three 3x3 convolutions with azimuthal wrap padding (``filters``,
    ``filters``, ``2 * filters``; ReLU; 2x2 max pooling after the second and third), a dense
    layer with dropout, softmax over ``num_classes`` (the reader's labels: IBD, accidental,
    muon, flasher)."""
    _check_grid(rings, columns)
    inputs, x = _pmt_input(rings, columns, channels)
    for k, (width, pool) in enumerate(((filters, False), (filters, True), (2 * filters, True))):
        x = AzimuthalPad(1, name=f"pad{k + 1}")(x)
        x = layers.Conv2D(width, 3, activation="relu", name=f"conv{k + 1}")(x)
        if pool:
            x = layers.MaxPooling2D(2, name=f"pool{k + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="class_probabilities")(x)
    return keras.Model(inputs, outputs, name="dayabay_cnn")


def preprocess(model: keras.Model, maps: np.ndarray) -> np.ndarray:
    """What the network sees of raw (N, rings, columns, 4) ``maps``: its own
    :class:`PMTPreprocess` applied (the autoencoder's reconstruction target)."""
    return np.asarray(model.get_layer("preprocess")(np.asarray(maps, np.float32)))


def encode(model: keras.Model, maps: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The autoencoder's code (N, code_size) of raw clean ``maps`` (no corruption)."""
    encoder = keras.Model(model.inputs, model.get_layer("code").output)
    return np.asarray(encoder.predict(maps, batch_size=batch_size, verbose=0))


def reconstruct(model: keras.Model, inputs: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The autoencoder's output for already preprocessed ``inputs`` as given (:func:`preprocess`;
    zero some of them first to test filling: zero is "no light / typical time" there)."""
    network = keras.Model(model.get_layer("preprocess").output, model.output)
    return np.asarray(network.predict(inputs, batch_size=batch_size, verbose=0))
