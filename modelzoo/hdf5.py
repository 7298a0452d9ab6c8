"""Validated, sharded, streaming access to HDF5 data sets, and the tf.data pipeline over them.

A reader for one case describes the datasets it needs as :class:`Field`s; :class:`H5Source`
checks the file against them once (presence, rank, trailing shape, dtype, equal lengths, finite
values, readability of every chunk) and raises one :class:`DataError` naming the file, the
dataset and what was expected. :func:`stream` then turns any row subset into a tf.data pipeline
that reads contiguous blocks, so no process ever holds the whole file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import h5py
import numpy as np

from modelzoo.errors import DataError

__all__ = ["DataError", "Field", "H5Source", "shard_range", "stream"]


@dataclass(frozen=True)
class Field:
    """One dataset a reader needs.

    Attributes:
        key: name of the array in the blocks the reader receives.
        path: dataset path inside the HDF5 file.
        trailing_shape: expected shape after the event axis; ``None`` entries are free.
        kind: ``"float"`` or ``"int"`` (integers and booleans).
        required: a missing optional field is simply absent from the blocks.
    """

    key: str
    path: str
    trailing_shape: tuple[int | None, ...] = ()
    kind: str = "float"
    required: bool = True


def _describe_shape(shape: Sequence[int | None]) -> str:
    return "(N" + "".join(f", {'*' if d is None else d}" for d in shape) + ")"


class H5Source:
    """An HDF5 file checked against a list of :class:`Field`s, read by row ranges.

    The file handle is opened lazily per process (h5py handles must not cross ``fork``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fields: Sequence[Field],
        *,
        check_finite: bool = True,
        scan_block_rows: int = 4096,
    ) -> None:
        self.path = os.fspath(path)
        self._handle: h5py.File | None = None
        self._pid: int | None = None
        if not os.path.exists(self.path):
            raise DataError(f"{self.path}: no such file")
        try:
            handle = h5py.File(self.path, "r")
        except OSError as err:  # truncated or not HDF5 at all
            raise DataError(
                f"{self.path}: cannot be opened as HDF5 ({err}); the file may be truncated or "
                "not an HDF5 file"
            ) from None
        with handle:
            self.fields = self._check_layout(handle, fields)
            self.num_rows = self._check_lengths(handle)
            self._scan(handle, check_finite, scan_block_rows)

    def _check_layout(self, handle: h5py.File, fields: Sequence[Field]) -> dict[str, Field]:
        present: dict[str, Field] = {}
        for f in fields:
            if f.path not in handle:
                if f.required:
                    raise DataError(
                        f"{self.path}: missing dataset '{f.path}'; expected "
                        f"{_describe_shape(f.trailing_shape)} {f.kind}"
                    )
                continue
            dset = handle[f.path]
            if not isinstance(dset, h5py.Dataset):
                raise DataError(f"{self.path}: '{f.path}' is a group, expected a dataset")
            shape = dset.shape
            expected = _describe_shape(f.trailing_shape)
            if len(shape) != 1 + len(f.trailing_shape) or any(
                want is not None and got != want for got, want in zip(shape[1:], f.trailing_shape)
            ):
                raise DataError(
                    f"{self.path}: dataset '{f.path}' has shape {shape}, expected {expected}"
                )
            dkind = dset.dtype.kind
            ok = dkind == "f" if f.kind == "float" else dkind in "iub"
            if f.kind == "float" and dkind in "iu":
                ok = True  # integer counts are acceptable as float features
            if not ok:
                raise DataError(
                    f"{self.path}: dataset '{f.path}' has dtype {dset.dtype}, expected {f.kind}"
                )
            present[f.key] = f
        return present

    def _check_lengths(self, handle: h5py.File) -> int:
        lengths = {f.path: handle[f.path].shape[0] for f in self.fields.values()}
        if len(set(lengths.values())) > 1:
            listing = ", ".join(f"'{p}' has {n}" for p, n in lengths.items())
            raise DataError(f"{self.path}: datasets differ in length: {listing}")
        num_rows = next(iter(lengths.values()))
        if num_rows == 0:
            raise DataError(f"{self.path}: datasets are empty")
        return num_rows

    def _scan(self, handle: h5py.File, check_finite: bool, block_rows: int) -> None:
        # One pass in blocks: finds unreadable (truncated) chunks and NaN/Inf before training
        # starts, instead of deep inside a tf.data iterator hours later.
        for f in self.fields.values():
            dset = handle[f.path]
            for start in range(0, self.num_rows, block_rows):
                try:
                    block = dset[start : start + block_rows]
                except (OSError, RuntimeError) as err:
                    raise DataError(
                        f"{self.path}: dataset '{f.path}' rows {start}..{start + block_rows} "
                        f"cannot be read ({err}); the file is probably truncated"
                    ) from None
                if check_finite and block.dtype.kind == "f" and not np.isfinite(block).all():
                    bad = start + int(np.argwhere(~np.isfinite(block))[0][0])
                    raise DataError(
                        f"{self.path}: dataset '{f.path}' has NaN or Inf (first at row {bad}); "
                        "expected finite values"
                    )

    def _file(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            self._handle = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._handle

    def read(
        self, start: int, stop: int, keys: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Rows ``start:stop`` of each field (or of ``keys``) as numpy arrays."""
        handle = self._file()
        return {
            k: handle[f.path][start:stop]
            for k, f in self.fields.items()
            if keys is None or k in keys
        }

    def attrs(self) -> dict[str, object]:
        """The file's root attributes."""
        return dict(self._file().attrs)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def shard_range(num_rows: int, rank: int, size: int) -> tuple[int, int]:
    """Contiguous, disjoint row range of ``rank`` among ``size``; the ranges cover all rows."""
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} outside 0..{size - 1}")
    return num_rows * rank // size, num_rows * (rank + 1) // size


def iterate_blocks(
    source: H5Source,
    start: int,
    stop: int,
    *,
    block_rows: int,
    shuffle: bool,
    seed: int,
    repeat: bool,
    first_epoch: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Blocks of contiguous rows of ``start:stop``; with ``shuffle`` the block order and the rows
    inside each block are permuted, differently each epoch but reproducibly from ``seed``."""
    starts = np.arange(start, stop, block_rows)
    epoch = first_epoch
    while True:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(starts)) if shuffle else np.arange(len(starts))
        for i in order:
            block = source.read(int(starts[i]), int(min(starts[i] + block_rows, stop)))
            if shuffle:
                perm = rng.permutation(len(next(iter(block.values()))))
                block = {k: v[perm] for k, v in block.items()}
            yield block
        if not repeat:
            return
        epoch += 1


def stream(
    source: H5Source,
    to_example: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, ...]],
    *,
    rows: tuple[int, int],
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    block_rows: int = 512,
    first_epoch: int = 0,
    steps_per_epoch: int | None = None,
):
    """A ``tf.data.Dataset`` of batches built by ``to_example`` from blocks of ``rows``.

    ``to_example`` maps a block (dict of numpy arrays, rows first) to a tuple of numpy arrays,
    e.g. ``(images, labels, weights)``; it is where a reader converts layouts and normalises.

    With ``repeat`` the dataset is endless and made of whole passes over ``rows``, one per
    epoch from ``first_epoch`` on: pass ``e`` is shuffled from ``(seed, e)`` alone, its batches
    never mix rows of the next pass, and with ``steps_per_epoch`` it yields exactly that many
    batches. So epoch ``e`` sees the same examples in the same order whether the run went
    straight through or was killed and resumed at ``e``, and an epoch covers the rows once
    (less the remainder that does not fill a batch).
    """
    import tensorflow as tf

    start, stop = rows
    if stop <= start:
        raise DataError(f"{source.path}: empty row range {start}..{stop}")
    first = to_example(source.read(start, min(start + 1, stop)))
    signature = tuple(
        tf.TensorSpec(shape=(None,) + a.shape[1:], dtype=tf.as_dtype(a.dtype)) for a in first
    )

    def generate(epoch):
        for block in iterate_blocks(
            source, start, stop, block_rows=block_rows, shuffle=shuffle, seed=seed,
            repeat=False, first_epoch=int(epoch),
        ):
            yield to_example(block)

    def one_pass(epoch):
        ds = tf.data.Dataset.from_generator(
            generate, args=(epoch,), output_signature=signature
        ).unbatch()
        if shuffle:
            # Mixes rows across neighbouring blocks. A fixed seed suffices: what enters the
            # buffer is already permuted differently each epoch (by iterate_blocks).
            ds = ds.shuffle(min(4 * block_rows, stop - start), seed=seed)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        if steps_per_epoch is not None:
            ds = ds.take(steps_per_epoch)
        return ds

    if repeat:
        ds = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(one_pass)
    else:
        ds = one_pass(tf.constant(first_epoch, tf.int64))
    return ds.prefetch(tf.data.AUTOTUNE)
