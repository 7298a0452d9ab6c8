"""Training-time augmentation of image batches by exact symmetries of the data.

A field of galaxies has no preferred orientation or handedness: with a round PSF and
independent pixel noise, a stamp reflected or rotated by a multiple of 90 degrees is another
equally likely stamp. Drawing one of those 8 transforms (the dihedral group D4) per stamp and
per step multiplies the distinct training images eightfold at no cost in fidelity, which is what
a model that overfits its training set needs (Dieleman, Willett, Dambre 2015 used the same
symmetry for galaxy morphology).
"""

from __future__ import annotations

from modelzoo.errors import ConfigError
from modelzoo.tasks import Datasets, augment_training

AUGMENTATIONS = ("none", "dihedral")


def dihedral(images, seed):
    """Each square image of the batch ``(B, S, S, C)`` under one of the 8 symmetries of the
    square, drawn uniformly and independently per image from the stateless ``seed`` (shape
    [2] integers), so the same seed gives the same batch."""
    import tensorflow as tf

    bits = tf.random.stateless_uniform(
        tf.stack([tf.shape(images)[0], 3]), seed=seed, maxval=2, dtype=tf.int32)
    chosen = tf.reshape(tf.cast(bits, tf.bool), [-1, 3, 1, 1, 1])
    # A reflection about each axis and about the diagonal generate all 8 elements.
    out = tf.where(chosen[:, 0], tf.reverse(images, [1]), images)
    out = tf.where(chosen[:, 1], tf.reverse(out, [2]), out)
    return tf.where(chosen[:, 2], tf.transpose(out, [0, 2, 1, 3]), out)


def augment_stamps(data: Datasets, kind: str, *, seed: int, rank: int,
                   first_epoch: int) -> Datasets:
    """``data`` with each training stamp under a random element of the augmentation ``kind``."""
    if kind not in AUGMENTATIONS:
        raise ConfigError(f"data.augment must be one of {AUGMENTATIONS}, got {kind!r}")
    if kind == "none":
        return data
    return augment_training(data, dihedral, seed=seed, rank=rank, first_epoch=first_epoch)
