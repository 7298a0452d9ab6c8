"""The tf.data input path of :func:`modelzoo.hdf5.stream`: its batches are the window plan's
rows in order, whatever the number of parallel reads; blocks are capped in bytes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tensorflow as tf

from modelzoo import hdf5
from modelzoo.hdf5 import Field, H5Source, rows_within, stream, window_plan


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> H5Source:
    path = tmp_path_factory.mktemp("stream") / "rows.h5"
    with h5py.File(path, "w") as fh:
        fh["x"] = np.arange(203 * 3, dtype=np.float32).reshape(203, 3)
        fh["y"] = (np.arange(203) % 3).astype(np.int32)
    return H5Source(path, [Field("x", "x", (3,)), Field("y", "y", (), kind="label")])


def to_example(block):
    return block["x"] * 2.0, block["y"]


def reference(source, rows, batch_size, *, shuffle, seed, block_rows, first_epoch, epochs,
              steps_per_epoch):
    """What the stream must give, in plain numpy: each epoch's windows read one after the
    other, permuted, converted and cut into batches."""
    batches = []
    for epoch in range(first_epoch, first_epoch + epochs):
        parts = []
        for blocks, perm in window_plan(*rows, block_rows=block_rows, shuffle=shuffle,
                                        seed=seed, epoch=epoch):
            block = {k: np.concatenate([source.read(lo, hi)[k] for lo, hi in blocks])
                     for k in ("x", "y")}
            parts.append(to_example({k: v if perm is None else v[perm]
                                     for k, v in block.items()}))
        x, y = (np.concatenate(p) for p in zip(*parts))
        batches += [(x[i * batch_size:(i + 1) * batch_size], y[i * batch_size:(i + 1) * batch_size])
                    for i in range(steps_per_epoch)]
    return batches


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("parallel_reads", [1, 3])
def test_batches_are_the_window_plan_in_order(source, shuffle, parallel_reads):
    rows, batch, steps = (5, 190), 16, 11  # 185 rows: 11 full batches, the rest dropped
    args = dict(shuffle=shuffle, seed=7, block_rows=8, first_epoch=1)
    new = stream(source, to_example, rows=rows, batch_size=batch, repeat=True,
                 parallel_reads=parallel_reads, steps_per_epoch=steps, drop_remainder=True,
                 **args)
    expected = reference(source, rows, batch, epochs=3, steps_per_epoch=steps, **args)
    for a, b in zip(new.take(3 * steps), expected, strict=True):
        np.testing.assert_array_equal(a[0].numpy(), b[0])
        np.testing.assert_array_equal(a[1].numpy(), b[1])
        assert a[0].shape == (batch, 3) and a[1].dtype == tf.int64
    if shuffle:  # windows of four 8-row blocks: rows mix across blocks
        first = np.asarray(expected[0][0][:, 0] / 6, int)
        assert len({r // 8 for r in first}) > 1


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


def test_blocks_are_capped_in_bytes(source, monkeypatch):
    assert rows_within(row_bytes=1000, rows=512, budget=64_000) == 64
    assert rows_within(row_bytes=10**9, rows=512, budget=64_000) == 1
    assert rows_within(row_bytes=10, rows=512, budget=64_000) == 512
    monkeypatch.setattr(hdf5, "BLOCK_BYTES", 5 * 20)  # five rows of x (12 bytes) and y (8)
    ds = stream(source, to_example, rows=(0, 203), batch_size=7, shuffle=True, seed=2,
                block_rows=64)
    x = np.concatenate([b[0].numpy() for b in ds])
    assert sorted(x[:, 0] / 6) == list(range(203))  # every row once
    # A window is four capped blocks: the first batch comes from four of them at most.
    assert len({int(r) // 5 for r in x[:7, 0] / 6}) <= 4

