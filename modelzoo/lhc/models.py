"""CNN classifiers of whole-detector LHC calorimeter images (RPV SUSY signal vs QCD background).

Input images have three channels, in this order: calorimeter energy (ECAL+HCAL), EM energy and
charged-track count, binned in (eta, phi); channels-last (N, H, W, 3), as the file stores them
(the model applies ``log1p`` itself, ``input_transform``).

References:
    W. Bhimji, S. A. Farrell, T. Kurth, M. Paganini, Prabhat, E. Racah, "Deep Neural Networks for
    Physics Analysis on low-level whole-detector data at the LHC", ACAT 2017,
    J. Phys. Conf. Ser. 1085 042034 (2018), arXiv:1711.03573.
    T. Kurth et al., "Deep Learning at 15PF: Supervised and Semi-Supervised Classification for
    Scientific Data", SC17, arXiv:1708.05256 (the 224x224 NERSC hep_cnn_benchmark network).
"""

from __future__ import annotations

import keras
from keras import layers

from modelzoo.layers import Log1p

INPUT_TRANSFORMS = ("log1p", "none")

def calorimeter_input(input_shape: tuple[int, int, int], input_transform: str):
    """The raw image input (energies as the file stores them) and the model's own view of it:
    ``log1p`` compresses energies that span five decades. The transform is a layer, so the
    shipped weights take a file's images as they are (after NCHW -> NHWC)."""
    if input_transform not in INPUT_TRANSFORMS:
        raise ValueError(f"input_transform must be one of {INPUT_TRANSFORMS}, got "
                         f"{input_transform!r}")
    inputs = keras.Input(shape=input_shape, name="calorimeter_image")
    return inputs, Log1p(name="log1p")(inputs) if input_transform == "log1p" else inputs


def class_probabilities(x, num_classes: int):
    """The softmax output layer of both networks, float32 under a mixed policy too: a bfloat16
    softmax rounds 1 - p below 4e-3 to 0, and the low false-positive rates the physics
    comparison is made at live there."""
    return layers.Dense(num_classes, activation="softmax", dtype="float32",
                        name="class_probabilities")(x)


def lhc_cnn(
    input_shape: tuple[int, int, int] = (64, 64, 3),
    num_classes: int = 2,
    filters: int = 128,
    num_conv_blocks: int = 3,
    dense_units: int = 512,
    dropout: float = 0.5,
    input_transform: str = "log1p",
) -> keras.Model:
    """The ACAT 2017 paper CNN: 3 x [conv 3x3 + batch norm + ReLU + max-pool 2], dense 512, softmax.

    Convolutions carry no bias because batch normalisation follows them (as in the Lasagne
    original); with a one-channel 64x64 input the network has 4,493,442 parameters, the count of
    the published run.
    """
    inputs, x = calorimeter_input(input_shape, input_transform)
    for block in range(1, num_conv_blocks + 1):
        x = layers.Conv2D(
            filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
            name=f"conv{block}",
        )(x)
        # momentum 0.9 = Lasagne's batch_norm alpha 0.1, the original's running-average rate.
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{block}")(x)
        x = layers.ReLU(name=f"relu{block}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{block}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="dropout1")(x)
    x = layers.Dense(dense_units, activation="relu", name="fc")(x)
    x = layers.Dropout(dropout, name="dropout2")(x)
    outputs = class_probabilities(x, num_classes)
    return keras.Model(inputs, outputs, name="lhc_cnn")


def lhc_cnn_15pf(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    num_classes: int = 2,
    filters: int = 128,
    num_conv_blocks: int = 4,
    dropout: float = 0.5,
    input_transform: str = "log1p",
) -> keras.Model:
    """The 15PF / hep_cnn_benchmark CNN: 4 x [conv 3x3 + ReLU + max-pool 2 + dropout], conv 3x3,
    global average pool, softmax (594,178 parameters at 224x224x3).

    Works at 227x227 too (the seed's resolution); the global pool makes it size-agnostic.
    """
    inputs, x = calorimeter_input(input_shape, input_transform)
    for block in range(1, num_conv_blocks + 1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{block}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{block}")(x)
        x = layers.Dropout(dropout, name=f"dropout{block}")(x)
    x = layers.Conv2D(filters, 3, padding="same", activation="relu", name="conv_final")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = class_probabilities(x, num_classes)
    return keras.Model(inputs, outputs, name="lhc_cnn_15pf")
