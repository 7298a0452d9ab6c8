"""Validated, sharded, streaming access to HDF5 data sets, and the tf.data pipeline over them.

A reader for one case describes the datasets it needs as :class:`Field`s. :class:`H5Source`
checks the file's structure on every process (presence, rank, trailing shape, dtype, equal
lengths) and its content only on this process's shard of the rows (readability of every chunk,
finite values, label values, the field's own checks): the ranks of a Horovod job each read
about 1/N of the file at start-up and together check all of it. Any problem raises one
:class:`DataError` naming the file, the dataset, the row and what was expected.
:func:`stream` then turns any row subset into a tf.data pipeline that reads contiguous blocks,
so no process ever holds the whole file.

The rules for what real files contain live here, once, for every case: every array leaves
:meth:`H5Source.read` in this machine's byte order (files from FITS, IDL, Java or a big-endian
machine store ``>f4``, ``>i2``, ...; TensorFlow takes an array's bytes as native, so
``>i2 [0 24 44 19]`` would arrive as ``[0 6144 11264 4864]``); float features stored as float64
are read as the float32 every model computes in, and :func:`stream` hands TensorFlow float32
wherever a reader's example still holds float64; float features may be stored as integers;
labels (``kind="label"``) may be stored as int, unsigned, bool or float holding exact class
values, as (N,) or (N, 1); datasets a reader does not ask for are ignored;
optional fields may be absent.

``MODELZOO_COUNT_READS=1`` opens files through a counting file object, and
:func:`bytes_read` reports how many bytes this process read from each file.
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import h5py
import numpy as np

from modelzoo.errors import DataError

__all__ = ["DataError", "Field", "H5Source", "block_plan", "bytes_read", "iterate_blocks",
           "native", "rows_within", "shard_range", "stream", "window_plan"]

KINDS = ("float", "int", "label")
_BYTES_READ: dict[str, int] = {}
# Bytes one block read may bring into memory (a shuffled stream holds MIX_BLOCKS of them per
# window, and a few windows are in flight). The validation scan and the training stream read
# blocks of rows; capped in bytes, a file of wide rows (224 x 224 x 3 images, ECoG trials) costs
# as little memory as one of narrow rows, and a large file no more than a small one: at 16 MB
# the peak of training cosmo_cnn grew 30% on a file ten times larger, at 4 MB 7%, at the same
# speed (benchmarks/README.md).
BLOCK_BYTES = 4 * 2**20


def rows_within(row_bytes: int, rows: int, budget: int | None = None) -> int:
    """``rows``, or fewer so that a block of rows of ``row_bytes`` stays within ``budget``
    (default :data:`BLOCK_BYTES`)."""
    budget = BLOCK_BYTES if budget is None else budget
    return max(1, min(rows, budget // max(1, row_bytes)))
# (path, size, mtime, rows, field paths) already checked by this process: a file reopened (the
# galaxy prior refits, evaluation after training) is not read again just to be validated.
_VALIDATED: set[tuple] = set()


@dataclass(frozen=True)
class Field:
    """One dataset a reader needs.

    Attributes:
        key: name of the array in the blocks the reader receives.
        path: dataset path inside the HDF5 file.
        trailing_shape: expected shape after the row axis; ``None`` entries are free. For a
            ``"label"`` field ``()`` also accepts a column (N, 1), delivered as (N,).
        kind: ``"float"`` (integers accepted too), ``"int"`` (integers and booleans) or
            ``"label"`` (class values in ``classes``, stored as int, unsigned, bool or float
            holding exact values; delivered as int64).
        required: a missing optional field is simply absent from the blocks.
        classes: the valid class values of a ``"label"`` field (None: any integer value).
        check: optional per-row test of a block of this field, returning True for valid rows.
        expected: what ``check`` requires, for the error message (e.g. "variances must be > 0").
    """

    key: str
    path: str
    trailing_shape: tuple[int | None, ...] = ()
    kind: str = "float"
    required: bool = True
    classes: tuple[int, ...] | None = None
    check: Callable[[np.ndarray], np.ndarray] | None = None
    expected: str = ""


class _CountingFile(io.RawIOBase):
    """A read-only file that adds the bytes it returns to :data:`_BYTES_READ`."""

    def __init__(self, path: str) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115  (closed with this object)
        self._path = path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def readinto(self, buffer) -> int:
        n = self._fh.readinto(buffer)
        _BYTES_READ[self._path] = _BYTES_READ.get(self._path, 0) + (n or 0)
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def _open(path: str) -> h5py.File:
    if os.environ.get("MODELZOO_COUNT_READS") == "1":
        return h5py.File(_CountingFile(path), "r")
    return h5py.File(path, "r")


def bytes_read(path: str | os.PathLike | None = None) -> int | dict[str, int]:
    """Bytes this process has read from ``path`` (or from every file) while
    ``MODELZOO_COUNT_READS=1``."""
    if path is None:
        return dict(_BYTES_READ)
    return _BYTES_READ.get(os.fspath(path), 0)


def native(array: np.ndarray) -> np.ndarray:
    """``array`` in this machine's byte order (a copy only when it is stored the other way)."""
    if array.dtype.byteorder not in ("=", "|") and not array.dtype.isnative:
        return array.astype(array.dtype.newbyteorder("="))
    return array


def _process_shard() -> tuple[int, int]:
    """(rank, size) of this process in the training job: the zoo's process group if
    :func:`modelzoo.distributed.init` has run, else a single process."""
    distributed = sys.modules.get("modelzoo.distributed")
    group = getattr(distributed, "_GROUP", None)
    return (group.rank, group.size) if group is not None else (0, 1)


def _describe_shape(shape: Sequence[int | None]) -> str:
    return "(N" + "".join(f", {'*' if d is None else d}" for d in shape) + ")"


def _describe(field: Field) -> str:
    if field.kind == "label":
        values = (f"values in {set(field.classes)}" if field.classes
                  else "whole numbers 0, 1, ...")
        return (f"class labels {_describe_shape(field.trailing_shape)} or "
                f"{_describe_shape((*field.trailing_shape, 1))}, {values}")
    return f"{_describe_shape(field.trailing_shape)} {field.kind}"


class H5Source:
    """An HDF5 file checked against a list of :class:`Field`s, read by row ranges.

    Args:
        path: the file.
        fields: the datasets to read.
        check_finite: check float datasets for NaN/Inf (on this process's shard).
        rows: the rows whose content this process checks (default: its shard of the file,
            see above; ``(0, num_rows)`` in a single process).

    The file handle is opened lazily per process (h5py handles must not cross ``fork``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fields: Sequence[Field],
        *,
        check_finite: bool = True,
        scan_block_rows: int = 4096,
        rows: tuple[int, int] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._handle: h5py.File | None = None
        self._pid: int | None = None
        if not os.path.exists(self.path):
            raise DataError(f"{self.path}: no such file")
        try:
            handle = _open(self.path)
        except OSError as err:  # truncated or not HDF5 at all
            raise DataError(
                f"{self.path}: cannot be opened as HDF5 ({err}); the file may be truncated or "
                "not an HDF5 file"
            ) from None
        with handle:
            self.fields = self._check_layout(handle, fields)
            self.num_rows = self._check_lengths(handle)
            if rows is None:
                rows = shard_range(self.num_rows, *_process_shard())
            stat = os.stat(self.path)
            key = (self.path, stat.st_size, stat.st_mtime_ns, rows, check_finite,
                   tuple(sorted(f.path for f in self.fields.values())))
            if key not in _VALIDATED:
                self._check_content(handle, rows, check_finite, scan_block_rows)
                _VALIDATED.add(key)

    def _check_layout(self, handle: h5py.File, fields: Sequence[Field]) -> dict[str, Field]:
        present: dict[str, Field] = {}
        for f in fields:
            if f.kind not in KINDS:
                raise ValueError(f"field {f.key}: kind must be one of {KINDS}, got {f.kind!r}")
            if f.path not in handle:
                if f.required:
                    raise DataError(
                        f"{self.path}: missing dataset '{f.path}'; expected {_describe(f)}"
                    )
                continue
            dset = handle[f.path]
            if not isinstance(dset, h5py.Dataset):
                raise DataError(f"{self.path}: '{f.path}' is a group, expected a dataset")
            shape = dset.shape
            trailing = f.trailing_shape
            if f.kind == "label" and len(shape) == 2 + len(trailing) and shape[-1] == 1:
                shape = shape[:-1]  # a column of labels
            if len(shape) != 1 + len(trailing) or any(
                want is not None and got != want for got, want in zip(shape[1:], trailing)
            ):
                one_hot = (f.kind == "label" and len(shape) == 2 + len(trailing)
                           and shape[-1] > 1)
                raise DataError(
                    f"{self.path}: dataset '{f.path}' has shape {dset.shape}, expected "
                    f"{_describe(f)}"
                    + ("; one-hot labels: store their argmax, the class number" if one_hot
                       else "")
                )
            dkind = dset.dtype.kind
            ok = {"float": "fiu", "int": "iub", "label": "iubf"}[f.kind]
            if dkind not in ok:
                raise DataError(
                    f"{self.path}: dataset '{f.path}' has dtype {dset.dtype}, expected "
                    f"{_describe(f)}"
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

    def _check_content(self, handle: h5py.File, rows: tuple[int, int], check_finite: bool,
                       block_rows: int) -> None:
        # One pass over this process's rows in blocks: finds unreadable (truncated) chunks,
        # NaN/Inf and invalid values before training starts, instead of deep inside a tf.data
        # iterator hours later.
        for f in self.fields.values():
            dset = handle[f.path]
            step = rows_within(int(np.prod(dset.shape[1:])) * dset.dtype.itemsize, block_rows)
            for start in range(rows[0], rows[1], step):
                stop = min(start + step, rows[1])
                try:
                    block = dset[start:stop]
                except (OSError, RuntimeError) as err:
                    raise DataError(
                        f"{self.path}: dataset '{f.path}' rows {start}..{stop} cannot be read "
                        f"({err}); the file is probably truncated"
                    ) from None
                self._check_block(f, block, start, check_finite)

    def _check_block(self, f: Field, block: np.ndarray, start: int, check_finite: bool) -> None:
        if check_finite and block.dtype.kind == "f" and not np.isfinite(block).all():
            bad = start + int(np.argwhere(~np.isfinite(block))[0][0])
            raise DataError(
                f"{self.path}: dataset '{f.path}' has NaN or Inf (first at row {bad}); "
                "expected finite values"
            )
        if f.kind == "label":
            values = block.reshape(len(block), -1)
            valid = np.all(np.isfinite(values) & (values == np.round(values)), axis=1)
            if f.classes is not None:
                valid &= np.all(np.isin(values, f.classes), axis=1)
            else:
                valid &= np.all(values >= 0, axis=1)
            if not valid.all():
                bad = int(np.argwhere(~valid)[0][0])
                raise DataError(
                    f"{self.path}: dataset '{f.path}' row {start + bad} holds "
                    f"{values[bad].tolist()}, expected {_describe(f)}"
                )
        if f.check is not None:
            valid = np.asarray(f.check(block), bool)
            if not valid.all():
                bad = int(np.argwhere(~valid)[0][0])
                raise DataError(
                    f"{self.path}: dataset '{f.path}' row {start + bad} is invalid; "
                    f"{f.expected or 'see the reader'}"
                )

    def _file(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            self._handle = _open(self.path)
            self._pid = os.getpid()
        return self._handle

    def read(
        self, start: int, stop: int, keys: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Rows ``start:stop`` of each field (or of ``keys``) as numpy arrays in native byte
        order: float features stored as float64 as float32, labels as int64 of shape (rows,)."""
        return self._read(slice(start, stop), keys)

    def read_rows(self, rows: np.ndarray, keys: Sequence[str] | None = None
                  ) -> dict[str, np.ndarray]:
        """Rows ``rows`` (any order, repeats allowed) of each field (or of ``keys``), as
        :meth:`read` gives them: one slice read when the rows are mostly contiguous (h5py's
        point selection costs about 3 ms a row, benchmarks/README.md), else a sorted point
        selection."""
        rows = np.asarray(rows, np.int64)
        lo, hi = int(rows.min()), int(rows.max()) + 1
        if hi - lo <= 2 * len(rows):
            return {k: v[rows - lo] for k, v in self._read(slice(lo, hi), keys).items()}
        unique, positions = np.unique(rows, return_inverse=True)  # h5py needs increasing rows
        return {k: v[positions] for k, v in self._read(unique, keys).items()}

    def _read(self, selection, keys: Sequence[str] | None) -> dict[str, np.ndarray]:
        handle = self._file()
        block = {}
        for k, f in self.fields.items():
            if keys is None or k in keys:
                array = native(handle[f.path][selection])
                if f.kind == "float" and array.dtype == np.float64:
                    array = array.astype(np.float32)  # what every model computes in
                if f.kind == "label":
                    array = array.reshape(len(array), *array.shape[1:1 + len(f.trailing_shape)])
                    array = array.astype(np.int64)
                block[k] = array
        return block

    def shape(self, key: str) -> tuple[int, ...]:
        """The stored shape of field ``key``'s dataset."""
        return tuple(self._file()[self.fields[key].path].shape)

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


def block_plan(
    start: int, stop: int, *, block_rows: int, shuffle: bool, seed: int, epoch: int
) -> list[tuple[int, int, np.ndarray | None]]:
    """The reads of one pass over rows ``start:stop``: ``(first row, stop row, permutation of the
    block's rows or None)`` in reading order. With ``shuffle`` the block order and the rows inside
    each block are permuted from ``(seed, epoch)`` alone, so a pass is the same whether a run got
    there straight or was resumed at ``epoch``."""
    starts = np.arange(start, stop, block_rows)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(starts)) if shuffle else np.arange(len(starts))
    plan = []
    for i in order:
        lo, hi = int(starts[i]), int(min(starts[i] + block_rows, stop))
        plan.append((lo, hi, rng.permutation(hi - lo) if shuffle else None))
    return plan


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
    """Blocks of contiguous rows of ``start:stop`` in the order of :func:`block_plan`, one pass
    per epoch from ``first_epoch`` (endless with ``repeat``), in this thread. :func:`stream`
    reads the same blocks in the same order, and mixes rows across neighbouring blocks too."""
    epoch = first_epoch
    while True:
        for lo, hi, perm in block_plan(start, stop, block_rows=block_rows, shuffle=shuffle,
                                       seed=seed, epoch=epoch):
            block = source.read(lo, hi)
            yield block if perm is None else {k: v[perm] for k, v in block.items()}
        if not repeat:
            return
        epoch += 1


# Windows read at once by :func:`stream`. HDF5 runs one call at a time in a process (h5py holds
# a global lock), so more parallel reads only overlap the joining, the permutation and the
# hand-over to TensorFlow, and every window in flight is memory: measured in
# benchmarks/README.md.
PARALLEL_READS = 2
# Consecutive blocks of the block plan whose rows a shuffled stream mixes: what a shuffle buffer
# of four blocks did, in one numpy permutation instead of a tf.data operation per row.
MIX_BLOCKS = 4


_COLLECT_AT_EXIT: list[bool] = []


def _collect_at_exit() -> None:
    """Free unreachable datasets while Python still lets other threads run. A tf.data iterator
    freed during interpreter shutdown (Keras leaves the training iterator in a reference cycle)
    waits for its reads in flight, which wait for the GIL that a finalising interpreter no
    longer hands out: the process would hang at exit."""
    if not _COLLECT_AT_EXIT:
        import atexit
        import gc

        atexit.register(gc.collect)
        _COLLECT_AT_EXIT.append(True)


def _for_tensorflow(array: np.ndarray) -> np.ndarray:
    """An example array as the model takes it: native byte order, float64 as float32."""
    array = native(np.asarray(array))
    return array.astype(np.float32) if array.dtype == np.float64 else array


def window_plan(
    start: int, stop: int, *, block_rows: int, shuffle: bool, seed: int, epoch: int,
    mix: int = MIX_BLOCKS,
) -> list[tuple[list[tuple[int, int]], np.ndarray | None]]:
    """The reads of one pass of :func:`stream`: the blocks of :func:`block_plan` in its order,
    grouped by ``mix`` consecutive blocks into windows ``(blocks, permutation)``. With
    ``shuffle``, a window's rows (its blocks joined in order) are permuted, from
    ``(seed, epoch)`` alone."""
    reads = block_plan(start, stop, block_rows=block_rows, shuffle=shuffle, seed=seed,
                       epoch=epoch)
    rng = np.random.default_rng([seed, epoch, 1])
    windows = []
    for i in range(0, len(reads), mix):
        blocks = [(lo, hi) for lo, hi, _ in reads[i:i + mix]]
        rows = sum(hi - lo for lo, hi in blocks)
        windows.append((blocks, rng.permutation(rows) if shuffle else None))
    return windows


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
    parallel_reads: int | None = None,
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

    How: the pass is a list of windows (:func:`window_plan`: ``MIX_BLOCKS`` blocks of
    ``block_rows`` rows, capped at :data:`BLOCK_BYTES` each, in shuffled order, their rows
    permuted together). tf.data reads ``parallel_reads`` windows at once (default
    :data:`PARALLEL_READS`) on its own threads, keeping their order; ``to_example`` runs on
    each window in that order, one at a time, so a reader that draws random numbers there (a
    corruption, an augmentation) stays reproducible; ``rebatch`` cuts the windows into
    batches. No Python generator runs between the file and the model, and nothing is done per
    row in TensorFlow.
    """
    import threading

    import tensorflow as tf

    _collect_at_exit()
    start, stop = rows
    if stop <= start:
        raise DataError(f"{source.path}: empty row range {start}..{stop}")
    first = source.read(start, min(start + 1, stop))
    block_rows = rows_within(sum(a.nbytes for a in first.values()), block_rows)
    num_blocks = math.ceil((stop - start) / block_rows)
    num_windows = math.ceil(num_blocks / MIX_BLOCKS)
    keys = tuple(first)
    block_spec = [tf.as_dtype(first[k].dtype) for k in keys]
    block_shapes = [(None,) + first[k].shape[1:] for k in keys]
    example = [_for_tensorflow(a) for a in to_example(first)]
    example_spec = [tf.as_dtype(a.dtype) for a in example]
    example_shapes = [(None,) + a.shape[1:] for a in example]
    # h5py serialises HDF5 calls anyway; the lock also covers opening the handle lazily and
    # sources that are not plain H5Sources (row views, counting files) from several threads.
    lock = threading.Lock()
    plans: dict[int, list] = {}  # the window plans of the epochs being read

    def plan(epoch: int) -> list:
        with lock:
            if epoch not in plans:
                for old in [e for e in plans if e < epoch - 1]:
                    del plans[old]
                plans[epoch] = window_plan(start, stop, block_rows=block_rows, shuffle=shuffle,
                                           seed=seed, epoch=epoch)
            return plans[epoch]

    def read(epoch, window):
        blocks, perm = plan(int(epoch))[int(window)]
        with lock:
            parts = [source.read(lo, hi) for lo, hi in blocks]
        arrays = [parts[0][k] if len(parts) == 1 else np.concatenate([p[k] for p in parts])
                  for k in keys]
        return arrays if perm is None else [a[perm] for a in arrays]

    def convert(*arrays):
        return [_for_tensorflow(a) for a in to_example(dict(zip(keys, arrays)))]

    def with_shapes(arrays, shapes):
        for a, shape in zip(arrays, shapes):
            a.set_shape(shape)
        return tuple(arrays)

    def one_pass(epoch):
        def read_window(window):
            return with_shapes(tf.numpy_function(read, [epoch, window], block_spec,
                                                 name="read_window"), block_shapes)

        def make_example(*arrays):
            return with_shapes(tf.numpy_function(convert, list(arrays), example_spec,
                                                 name="to_example"), example_shapes)

        ds = (tf.data.Dataset.range(num_windows)
              .map(read_window, num_parallel_calls=parallel_reads or PARALLEL_READS,
                   deterministic=True)
              .map(make_example)  # one at a time, in order: see the docstring
              .rebatch(batch_size, drop_remainder=drop_remainder))
        if steps_per_epoch is not None:
            ds = ds.take(steps_per_epoch)
        return ds

    if repeat:
        ds = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(one_pass)
    else:
        ds = one_pass(tf.constant(first_epoch, tf.int64))
    return ds.prefetch(tf.data.AUTOTUNE)
