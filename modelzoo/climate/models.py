"""Builders for the extreme-weather case: patch classifiers and the semi-supervised detector.

Inputs are channels-last (H, W, C) fields in physical units, as a file stores them (after
NCHW -> NHWC); each network standardises every channel by the fixed climatological offset and
scale of :data:`modelzoo.climate.reader.CHANNEL_NORMS` in a layer of its own (``channels`` names
them; by default the published set with as many channels as the input), so the shipped
weights take a file's fields as they are.

References:
    Y. Liu, E. Racah, Prabhat, J. Correa, A. Khosrowshahi, D. Lavers, K. Kunkel, M. Wehner,
    W. Collins, "Application of Deep Convolutional Neural Networks for Detecting Extreme Weather
    in Climate Datasets", ABDA 2016, arXiv:1605.01156 (the patch classifiers).
    E. Racah, C. Beckham, T. Maharaj, S. E. Kahou, Prabhat, C. Pal, "ExtremeWeather: A
    large-scale climate dataset for semi-supervised detection, localization, and understanding
    of extreme weather events", NeurIPS 2017, arXiv:1612.02095 (the detector).
"""

from __future__ import annotations

import keras
from keras import layers

from modelzoo.climate.patches import EVENT_TYPES
from modelzoo.climate.reader import CHANNEL_NORMS
from modelzoo.errors import ConfigError
from modelzoo.layers import standardize

# Channels by count where the published sets decide them: the 16 ExtremeWeather fields and the
# patch sets of Liu et al. 2016 (cyclone 8, river 2, front 3).
PUBLISHED_CHANNELS = {len(e.channels): e.channels for e in EVENT_TYPES.values()}


def standardized_fields(input_shape, channels: tuple[str, ...] | None, name: str):
    """The raw-field input and its per-channel standardisation (no variables); ``channels``
    None: the published set with as many channels as the input."""
    if channels is None:
        if input_shape[-1] not in PUBLISHED_CHANNELS:
            raise ConfigError(
                f"an input of {input_shape[-1]} channels needs channels=[...] naming them (no "
                f"published set has {input_shape[-1]}; sets: {sorted(PUBLISHED_CHANNELS)})")
        channels = PUBLISHED_CHANNELS[input_shape[-1]]
    channels = tuple(channels)
    unknown = [c for c in channels if c not in CHANNEL_NORMS]
    if unknown or len(channels) != input_shape[-1]:
        raise ConfigError(
            f"channels {list(channels)} must name the {input_shape[-1]} input channels, each one "
            f"of {', '.join(CHANNEL_NORMS)}")
    inputs = keras.Input(shape=tuple(input_shape), name=name)
    return inputs, standardize(inputs, [CHANNEL_NORMS[c][0] for c in channels],
                               [CHANNEL_NORMS[c][1] for c in channels], "standardize")

PUBLISHED_DETECTOR_FILTERS = (128, 256, 512, 768, 1024, 1280)


def climate_patch_cnn(
    input_shape: tuple[int, int, int] = (32, 32, 8),
    num_classes: int = 2,
    filters: tuple[int, ...] = (8, 16),
    kernel_size: int = 5,
    dense_units: int = 50,
    dropout: float = 0.0,
    channels: tuple[str, ...] | None = None,
) -> keras.Model:
    """Liu et al. 2016 patch classifier: [conv + ReLU + max-pool 2] per entry of ``filters``,
    a fully connected ReLU layer, softmax over ``num_classes``.

    The paper's networks have two convolution + pooling stages followed by fully connected
    layers, one network per event type (tropical cyclone 32 x 32 x 8, atmospheric river
    148 x 224 x 2, weather front 27 x 60 x 3); its exact widths came from Bayesian optimisation
    and are not restated here, so ``filters``/``dense_units`` are this zoo's choice.
    """
    inputs, x = standardized_fields(input_shape, channels, "patch")
    for stage, width in enumerate(filters, start=1):
        x = layers.Conv2D(width, kernel_size, padding="same", activation="relu",
                          name=f"conv{stage}")(x)
        x = layers.MaxPooling2D(2, padding="same", name=f"pool{stage}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="fc")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="class_probabilities")(x)
    return keras.Model(inputs, outputs, name="climate_patch_cnn")


def climate_detector(
    input_shape: tuple[int, int, int] = (768, 1152, 16),
    num_classes: int = 4,
    filters: tuple[int, ...] = PUBLISHED_DETECTOR_FILTERS,
    filters_scale: float = 1.0,
    kernel_size: int = 5,
    leaky_slope: float = 0.1,
    weight_decay: float = 5e-4,
    channels: tuple[str, ...] | None = None,
    cell_layers: int | None = None,
    coarse_head: bool = False,
) -> keras.Model:
    """Racah et al. 2017 semi-supervised detector (seed figure 6), 2-D version.

    * Encoder: one ``kernel_size`` convolution of stride 2 + LeakyReLU(0.1) per entry of
      ``filters`` (times ``filters_scale``), He-normal initialisation; the input shrinks by
      ``2**len(filters)`` (64 in the paper: 768 x 1152 -> a 12 x 18 grid), then batch norm.
    * ``cell_layers`` < ``len(filters)`` (this zoo's option, not the paper's): the head works on
      the finer grid of stride ``2**cell_layers`` instead, reading the code upsampled to it
      (bilinear) concatenated with the encoder's own output at that stride (a feature-pyramid
      step, Lin et al. 2017): small storms, a few pixels wide, get cells of their size, while
      the receptive field of the whole encoder still sees the large ones.
    * YOLO-style head on that grid, 3 x 3 convolutions concatenated into the ``detection``
      output (channel layout in :mod:`modelzoo.climate.boxes`): box (4, ReLU: centre offset in
      the cell and size in cells), objectness (2, softmax: no object, object) and class
      (``num_classes``, softmax).
    * ``coarse_head`` (this zoo's option, with ``cell_layers``): a second head of the same
      layout on the code's own grid (stride ``2**len(filters)``), the ``detection_coarse``
      output, for the classes the task assigns to it (``data.coarse_classes``): long
      atmospheric rivers and large extratropical cyclones span many fine cells, of which one
      holds the box and its neighbours, alike to the eye of a 3 x 3 head, are "no object".
    * Decoder: transposed convolutions mirroring the encoder back to the input, the
      ``reconstruction`` output (linear, of the standardised fields). The original ties them
      to the encoder's kernels (Lasagne's InverseLayer); here they are separate weights.
    * L2 weight decay ``weight_decay`` on the encoder and head (the paper's 5e-4), none on
      the decoder.

    The loss (:class:`modelzoo.climate.task.ClimateDetection`) is the YOLO loss on labelled
    images plus lambda times the reconstruction error on every image; lambda = 0 is the
    supervised model.
    """
    height, width, bands = input_shape
    stride = 2 ** len(filters)
    cell_layers = len(filters) if cell_layers is None else int(cell_layers)
    if not 1 <= cell_layers <= len(filters):
        raise ConfigError(f"climate_detector: cell_layers must be 1..{len(filters)} (stride-2 "
                          f"layers), got {cell_layers}")
    if coarse_head and cell_layers == len(filters):
        raise ConfigError("climate_detector: coarse_head needs cell_layers below "
                          f"{len(filters)} (the coarse head is on the stride-{stride} grid)")
    for name, size in (("height", height), ("width", width)):
        if size is not None and size % stride:
            raise ConfigError(
                f"climate_detector: input {name} {size} is not a multiple of {stride} "
                f"(2 ** {len(filters)} stride-2 layers)"
            )
    widths = [max(1, int(round(f * filters_scale))) for f in filters]
    decay = keras.regularizers.L2(weight_decay) if weight_decay > 0 else None
    inputs, x = standardized_fields(input_shape, channels, "fields")
    stages = []
    for stage, width_ in enumerate(widths, start=1):
        x = layers.Conv2D(width_, kernel_size, strides=2, padding="same",
                          kernel_initializer="he_normal", kernel_regularizer=decay,
                          name=f"enc{stage}")(x)
        x = layers.LeakyReLU(leaky_slope, name=f"enc{stage}_act")(x)
        stages.append(x)
    code = layers.BatchNormalization(name="code_bn")(x)
    features = code
    if cell_layers < len(filters):
        up = 2 ** (len(filters) - cell_layers)
        features = layers.Concatenate(name="fine_features")([
            layers.UpSampling2D(up, interpolation="bilinear", name="code_up")(code),
            layers.BatchNormalization(name="fine_bn")(stages[cell_layers - 1])])

    def head(source, suffix: str = "", output: str = "detection"):
        def conv(units: int, activation: str, name: str):
            return layers.Conv2D(units, 3, padding="same", activation=activation,
                                 kernel_regularizer=decay, name=name + suffix)(source)

        return layers.Concatenate(name=output)([
            conv(4, "relu", "head_box"),
            conv(2, "softmax", "head_objectness"),
            conv(num_classes, "softmax", "head_class"),
        ])

    outputs = {"detection": head(features)}
    if coarse_head:
        outputs["detection_coarse"] = head(code, "_coarse", "detection_coarse")
    y = code
    for stage, width_ in reversed(list(enumerate(widths[:-1], start=1))):
        y = layers.Conv2DTranspose(width_, kernel_size, strides=2, padding="same",
                                   kernel_initializer="he_normal", name=f"dec{stage + 1}")(y)
        y = layers.LeakyReLU(leaky_slope, name=f"dec{stage + 1}_act")(y)
    reconstruction = layers.Conv2DTranspose(bands, kernel_size, strides=2, padding="same",
                                            name="reconstruction")(y)
    return keras.Model(inputs, {**outputs, "reconstruction": reconstruction},
                       name="climate_detector")
