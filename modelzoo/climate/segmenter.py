"""DeepLabv3+ for pixel masks of tropical cyclones and atmospheric rivers (DeepCAM).

Kurth et al., "Exascale Deep Learning for Climate Analytics", SC18 (Gordon Bell prize),
arXiv:1810.01993, segmented 768 x 1152 x 16 CAM5 fields into background, tropical cyclone and
atmospheric river with DeepLabv3+ (Chen et al., "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation", ECCV 2018, arXiv:1802.02611); the MLPerf HPC
DeepCAM benchmark trains the same network to a mean IoU of 0.82.

The network here is a compact DeepLabv3+ written for this zoo:

* **Input transform inside the model**: a per-channel ``(x - shift) / scale`` layer, so the
  model takes the fields as a DeepCAM file stores them (DeepCAM's ``stats.h5`` min-max scaling:
  ``shift = minval``, ``scale = maxval - minval``; the task fills them in from the statistics
  file beside the data). Without statistics it standardises by the zoo's climatology
  (:data:`modelzoo.climate.reader.CHANNEL_NORMS` of :data:`DEEPCAM_CHANNELS`).
* **Encoder**: a stem convolution and four residual stages of depthwise-separable
  convolutions (Xception's building block, as DeepLabv3+ uses), each halving the grid: output
  stride 16. The stage-2 output (stride 4) is the decoder's low-level feature map.
* **Atrous spatial pyramid pooling** at stride 16: a 1 x 1 branch, one 3 x 3 separable branch
  per atrous rate and an image-level pooling branch, concatenated and projected.
* **Decoder**: the ASPP output upsampled x4, concatenated with the projected low-level
  features, two 3 x 3 separable convolutions, upsampled x4 to the input grid, per-pixel
  softmax over ``num_classes`` (float32 under a mixed policy).

Loss (the task's): DeepCAM's class-weighted cross-entropy, weights ``frequency ** -0.125``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers

from modelzoo.climate.deepcam import DEEPCAM_CHANNELS
from modelzoo.climate.reader import CHANNEL_NORMS
from modelzoo.errors import ConfigError

OUTPUT_STRIDE = 16


def default_scaling(channels: Sequence[str] = DEEPCAM_CHANNELS) -> tuple[list[float], list[float]]:
    """(shift, scale) per channel from the zoo's climatology (physical units in)."""
    return ([float(CHANNEL_NORMS[c][0]) for c in channels],
            [float(CHANNEL_NORMS[c][1]) for c in channels])


def _norm_relu(x, name: str, bn_momentum: float):
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _conv1x1(x, filters: int, name: str, bn_momentum: float):
    return _norm_relu(layers.Conv2D(filters, 1, use_bias=False, name=name)(x), name,
                      bn_momentum)


def _separable(x, filters: int, name: str, bn_momentum: float, strides: int = 1,
               dilation: int = 1):
    x = layers.SeparableConv2D(filters, 3, strides=strides, dilation_rate=dilation,
                               padding="same", use_bias=False, name=name)(x)
    return _norm_relu(x, name, bn_momentum)


def _stage(x, filters: int, name: str, bn_momentum: float):
    """Residual Xception-style stage: two separable convolutions, the second of stride 2,
    plus a strided 1 x 1 shortcut."""
    shortcut = layers.Conv2D(filters, 1, strides=2, use_bias=False, name=f"{name}_skip")(x)
    shortcut = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_skip_bn")(shortcut)
    y = _separable(x, filters, f"{name}_sep1", bn_momentum)
    y = _separable(y, filters, f"{name}_sep2", bn_momentum, strides=2)
    return layers.Add(name=f"{name}_add")([y, shortcut])


def climate_segmenter(
    input_shape: tuple[int, int, int] = (768, 1152, 16),
    num_classes: int = 3,
    filters: tuple[int, int, int, int] = (32, 64, 128, 256),
    stem_filters: int = 32,
    aspp_filters: int = 128,
    atrous_rates: tuple[int, ...] = (6, 12, 18),
    low_level_filters: int = 32,
    decoder_filters: int = 128,
    channel_shift: Sequence[float] | None = None,
    channel_scale: Sequence[float] | None = None,
    bn_momentum: float = 0.9,
) -> keras.Model:
    """Compact DeepLabv3+ (see the module docstring) mapping (H, W, C) fields to per-pixel
    class probabilities (H, W, ``num_classes``).

    Args:
        input_shape: (H, W, C); H and W multiples of 16 (the output stride). DeepCAM's is
            768 x 1152 x 16.
        filters: widths of the four stride-2 encoder stages.
        atrous_rates: dilation of the ASPP's 3 x 3 branches at stride 16; (6, 12, 18) is
            DeepLabv3+'s at output stride 16 on 768 x 1152 (a 48 x 72 map); on a small grid use
            smaller rates (at 192 x 288 the map is 12 x 18).
        channel_shift, channel_scale: the input transform ``(x - shift) / scale`` per channel
            (``C`` numbers each); default: :func:`default_scaling` for 16 DeepCAM channels.
        bn_momentum: batch-norm moving-average momentum; 0.9 is PyTorch's default, which the
            DeepCAM reference trains with (Keras's 0.99 leaves the inference statistics of a
            short training far from the training ones).
    """
    height, width, channels = (int(v) for v in input_shape)
    for what, size in (("height", height), ("width", width)):
        if size % OUTPUT_STRIDE or size < OUTPUT_STRIDE:
            raise ConfigError(f"climate_segmenter: input {what} {size} is not a positive "
                              f"multiple of the output stride {OUTPUT_STRIDE}")
    if len(filters) != 4:
        raise ConfigError(f"climate_segmenter: filters needs 4 stage widths, got {list(filters)}")
    if channel_shift is None and channel_scale is None:
        if channels != len(DEEPCAM_CHANNELS):
            raise ConfigError(f"climate_segmenter: {channels} input channels need "
                              "channel_shift and channel_scale (one number per channel)")
        channel_shift, channel_scale = default_scaling()
    shift = np.asarray(channel_shift, np.float32).reshape(-1)
    scale = np.asarray(channel_scale, np.float32).reshape(-1)
    if shift.shape != (channels,) or scale.shape != (channels,) or not np.all(scale > 0):
        raise ConfigError(f"climate_segmenter: channel_shift and channel_scale need {channels} "
                          f"numbers each, scale > 0; got {shift.size} and {scale.size}")

    inputs = keras.Input(shape=(height, width, channels), name="fields")
    # (x - shift) / sqrt(variance): DeepCAM's stats.h5 scaling, carried with the weights; in
    # float32 under any policy (surface pressure ~1e5 Pa and rain ~1e-8 m/s meet here).
    x = layers.Normalization(mean=shift.tolist(),
                             variance=(scale.astype(np.float64) ** 2).tolist(),
                             dtype="float32", name="input_scaling")(inputs)
    x = _norm_relu(layers.Conv2D(stem_filters, 3, padding="same", use_bias=False,
                                 name="stem")(x), "stem", bn_momentum)
    low_level = None
    for k, width_ in enumerate(filters, start=1):
        x = _stage(x, int(width_), f"stage{k}", bn_momentum)
        if k == 2:
            low_level = x  # stride 4

    # Atrous spatial pyramid pooling at stride 16.
    grid = (height // OUTPUT_STRIDE, width // OUTPUT_STRIDE)
    branches = [_conv1x1(x, aspp_filters, "aspp_1x1", bn_momentum)]
    for rate in atrous_rates:
        branches.append(_separable(x, aspp_filters, f"aspp_rate{int(rate)}", bn_momentum,
                                   dilation=int(rate)))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(x)
    pooled = _conv1x1(pooled, aspp_filters, "aspp_pool_conv", bn_momentum)
    branches.append(layers.UpSampling2D(grid, name="aspp_pool_up")(pooled))
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = _conv1x1(x, aspp_filters, "aspp_project", bn_momentum)

    # Decoder with the stride-4 low-level features.
    x = layers.UpSampling2D(4, interpolation="bilinear", name="decoder_up4")(x)
    low = _conv1x1(low_level, low_level_filters, "low_level_project", bn_momentum)
    x = layers.Concatenate(name="decoder_concat")([x, low])
    x = _separable(x, decoder_filters, "decoder_sep1", bn_momentum)
    x = _separable(x, decoder_filters, "decoder_sep2", bn_momentum)
    x = layers.Conv2D(num_classes, 1, name="logits")(x)
    x = layers.UpSampling2D(4, interpolation="bilinear", name="logits_up4")(x)
    outputs = layers.Softmax(dtype="float32", name="class_probabilities")(x)
    return keras.Model(inputs, outputs, name="climate_segmenter")
