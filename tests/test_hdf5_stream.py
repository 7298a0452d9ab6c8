"""The tf.data input path of :func:`modelzoo.hdf5.stream`: the same batches, in the same order,
as the Python-generator pipeline it replaced, whatever the number of parallel reads."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tensorflow as tf

from modelzoo.hdf5 import Field, H5Source, iterate_blocks, stream


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> H5Source:
    path = tmp_path_factory.mktemp("stream") / "rows.h5"
    with h5py.File(path, "w") as fh:
        fh["x"] = np.arange(203 * 3, dtype=np.float32).reshape(203, 3)
        fh["y"] = (np.arange(203) % 3).astype(np.int32)
    return H5Source(path, [Field("x", "x", (3,)), Field("y", "y", (), kind="label")])


def to_example(block):
    return block["x"] * 2.0, block["y"]


def generator_pipeline(source, rows, batch_size, *, shuffle, seed, block_rows, first_epoch,
                       steps_per_epoch, drop_remainder):
    """The pipeline before the tf.data path (from_generator over iterate_blocks), as the
    reference order."""
    spec = (tf.TensorSpec((None, 3), tf.float32), tf.TensorSpec((None,), tf.int64))

    def one_pass(epoch):
        def generate(epoch):
            for block in iterate_blocks(source, *rows, block_rows=block_rows, shuffle=shuffle,
                                        seed=seed, repeat=False, first_epoch=int(epoch)):
                yield to_example(block)

        ds = tf.data.Dataset.from_generator(generate, args=(epoch,),
                                            output_signature=spec).unbatch()
        if shuffle:
            ds = ds.shuffle(min(4 * block_rows, rows[1] - rows[0]), seed=seed)
        return ds.batch(batch_size, drop_remainder=drop_remainder).take(steps_per_epoch)

    return tf.data.Dataset.range(first_epoch, 10**9).flat_map(one_pass)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("parallel_reads", [1, 3])
def test_batches_match_the_generator_pipeline(source, shuffle, parallel_reads):
    rows, batch, steps = (5, 190), 16, 11  # 185 rows: 11 full batches, the rest dropped
    args = dict(shuffle=shuffle, seed=7, block_rows=32, first_epoch=1, steps_per_epoch=steps,
                drop_remainder=True)
    new = stream(source, to_example, rows=rows, batch_size=batch, repeat=True,
                 parallel_reads=parallel_reads, **args)
    old = generator_pipeline(source, rows, batch, **args)
    for a, b in zip(new.take(3 * steps), old.take(3 * steps), strict=True):
        np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
        np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
        assert a[0].shape == (batch, 3) and a[1].dtype == tf.int64


def test_one_pass_keeps_the_remainder_and_file_order(source):
    ds = stream(source, to_example, rows=(0, 203), batch_size=50, block_rows=64)
    assert ds.element_spec[0].shape.as_list() == [None, 3]
    x = np.concatenate([b[0].numpy() for b in ds])
    np.testing.assert_array_equal(x, 2.0 * np.arange(203 * 3).reshape(203, 3))


def test_a_random_to_example_is_reproducible_with_parallel_reads(source):
    def run():
        rng = np.random.default_rng(0)  # what a corrupting reader does

        def noisy(block):
            return block["x"] + rng.random(block["x"].shape).astype(np.float32), block["y"]

        ds = stream(source, noisy, rows=(0, 203), batch_size=20, shuffle=True, seed=1,
                    block_rows=16, parallel_reads=4)
        return np.concatenate([b[0].numpy() for b in ds])

    np.testing.assert_array_equal(run(), run())
