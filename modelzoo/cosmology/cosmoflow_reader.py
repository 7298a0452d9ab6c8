"""Readers for CosmoFlow volumes: the MLPerf HPC TFRecord layout, and HDF5 for users' own.

**TFRecord** (the published benchmark data, github.com/mlcommons/hpc ``cosmoflow/prepare.py``):
one ``tf.train.Example`` per record, usually one record per file, gzip-compressed; feature
``x``: one bytes value, the raw int16 particle counts of a (128, 128, 128, 4) sub-volume (four
redshifts as channels, C order, little-endian); feature ``y``: a float list of the 4 targets,
the cosmological parameters scaled to [-1, 1]. A data folder holds ``train/`` and
``validation/`` subfolders of ``*.tfrecord`` files (as the benchmark's), or the files
themselves (the last ``data.val_fraction`` of them, in name order, validate).

**HDF5** (one file): ``x`` (N, D, H, W, C) counts (any integer or float dtype), ``y`` (N, T)
float targets; other datasets are ignored.

Both give the counts as stored: the model takes log(1 + counts) itself. The TFRecord stream is
tf.data from end to end (``TFRecordDataset``, ``parse_example``, ``decode_raw``): file names
sharded across ranks, interleaved, batched, parsed in batches; no Python runs per record.
Before that, every record is checked once (or only each file's first with ``validate:
first``, for the full 1.7 TB benchmark), and any problem raises one :class:`DataError` naming
the file, the record and the feature.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

import numpy as np

from modelzoo.distributed import ProcessGroup
from modelzoo.errors import ConfigError, DataError
from modelzoo.hdf5 import Field, H5Source

SAMPLE_SHAPE = (128, 128, 128, 4)
NUM_TARGETS = 4
# The targets in the order the zoo's generator writes them (the benchmark's unitPar: Omega_m,
# sigma_8, N_spec, H_0, each scaled to [-1, 1]).
PARAMETERS = ("omega_m", "sigma_8", "n_s", "h")
VALIDATE = ("all", "first")
_GZIP_MAGIC = b"\x1f\x8b"


def compression_of(path: str) -> str:
    """``"GZIP"`` for a gzip file (by its magic bytes), ``""`` otherwise."""
    with open(path, "rb") as fh:
        return "GZIP" if fh.read(2) == _GZIP_MAGIC else ""


def check_example(raw: bytes, path: str, index: int, shape: tuple[int, ...] | None,
                  num_targets: int = NUM_TARGETS) -> tuple[int, ...]:
    """Checks one serialized record against the published layout (features, kinds, sizes,
    counts >= 0, finite targets in [-1, 1]); returns the sample shape
    (``shape``, or inferred as a cube of 4 channels from ``x``'s size)."""
    import tensorflow as tf

    where = f"{path}: record {index}"
    try:
        example = tf.train.Example.FromString(raw)
    except Exception:  # noqa: BLE001  (protobuf's DecodeError is not importable everywhere)
        raise DataError(f"{where} is not a tf.train.Example") from None
    features = example.features.feature
    for name in ("x", "y"):
        if name not in features:
            raise DataError(f"{where}: feature '{name}' missing; expected x (bytes: int16 counts) "
                            f"and y ({num_targets} floats), found {sorted(features) or 'none'}")
    x, y = features["x"], features["y"]
    if x.WhichOneof("kind") != "bytes_list" or len(x.bytes_list.value) != 1:
        raise DataError(f"{where}: feature 'x' is a {x.WhichOneof('kind')} of "
                        f"{_length(x)} values, expected one bytes value (raw int16 counts)")
    if y.WhichOneof("kind") != "float_list" or len(y.float_list.value) != num_targets:
        raise DataError(f"{where}: feature 'y' is a {y.WhichOneof('kind')} of {_length(y)} "
                        f"values, expected a float_list of {num_targets} targets")
    values = np.asarray(y.float_list.value, np.float32)
    if not np.isfinite(values).all() or np.abs(values).max() > 1.0 + 1e-6:
        raise DataError(f"{where}: feature 'y' holds {values.tolist()}, expected finite targets "
                        "scaled to [-1, 1]")
    size = len(x.bytes_list.value[0])
    if shape is None:
        shape = _cube_shape(size, where)
    if size != 2 * int(np.prod(shape)):
        raise DataError(f"{where}: feature 'x' has {size} bytes, expected {2 * np.prod(shape)} "
                        f"(int16 counts of shape {tuple(shape)})")
    lowest = int(np.frombuffer(x.bytes_list.value[0], "<i2").min())
    if lowest < 0:
        raise DataError(f"{where}: feature 'x' holds a negative count ({lowest}); expected "
                        "particle counts >= 0 (int16, little-endian)")
    return tuple(shape)


def _length(feature) -> int:
    kind = feature.WhichOneof("kind")
    return len(getattr(feature, kind).value) if kind else 0


def _cube_shape(size: int, where: str, channels: int = 4) -> tuple[int, ...]:
    voxels = size // 2 // channels
    side = round(voxels ** (1 / 3))
    if size % (2 * channels) or side**3 != voxels:
        raise DataError(f"{where}: feature 'x' has {size} bytes, which is not int16 counts of a "
                        f"cube with {channels} channels; set data.sample_shape")
    return (side, side, side, channels)


def scan_tfrecord(path: str, shape: tuple[int, ...] | None, validate: str = "all",
                  samples_per_file: int = 1) -> tuple[int, tuple[int, ...]]:
    """(records, sample shape) of one file, every record checked (``validate="all"``), or only
    the first, trusting ``samples_per_file`` (``"first"``)."""
    import tensorflow as tf

    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    dataset = tf.data.TFRecordDataset(path, compression_type=compression_of(path))
    count = 0
    try:
        for raw in dataset:
            shape = check_example(raw.numpy(), path, count, shape)
            count += 1
            if validate == "first":
                return samples_per_file, shape
    except tf.errors.OpError as err:
        reason = str(err).strip().splitlines()[0][:160]
        raise DataError(f"{path}: record {count} cannot be read ({reason}); the file is "
                        "probably truncated or not a TFRecord file") from None
    if count == 0:
        raise DataError(f"{path}: no records; expected tf.train.Examples with features x, y")
    return count, shape


@dataclass
class TFRecordVolumes:
    """Checked TFRecord files of the published layout, split into training and validation."""

    train_files: list[str]
    val_files: list[str]
    train_counts: list[int]
    val_counts: list[int]
    sample_shape: tuple[int, ...]
    compression: dict[str, str] = field(default_factory=dict)

    kind = "tfrecord"

    def files(self, split: str) -> tuple[list[str], list[int]]:
        if split == "train":
            return self.train_files, self.train_counts
        if split == "val":
            return self.val_files, self.val_counts
        if split == "all":
            return self.train_files + self.val_files, self.train_counts + self.val_counts
        raise ConfigError(f"split must be all, train or val, got {split!r}")

    def num_volumes(self, split: str) -> int:
        return int(sum(self.files(split)[1]))

    def read(self, split: str, rows: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Volumes ``rows`` of ``split`` (in file-name order) as numpy (counts int16,
        targets float32): for evaluation and analysis, not the training stream."""
        import tensorflow as tf

        files, counts = self.files(split)
        starts = np.concatenate([[0], np.cumsum(counts)])
        wanted = [i for i in range(len(files)) if starts[i] < rows[1] and starts[i + 1] > rows[0]]
        xs, ys = [], []
        for i in wanted:
            records = tf.data.TFRecordDataset(files[i], compression_type=self.compression[files[i]])
            first = max(0, rows[0] - int(starts[i]))
            take = min(int(starts[i + 1]), rows[1]) - int(starts[i]) - first
            for raw in records.skip(first).take(take).batch(64):
                x, y = parse_batch(raw, self.sample_shape)
                xs.append(x.numpy())
                ys.append(y.numpy())
        shape = (0, *self.sample_shape)
        return (np.concatenate(xs) if xs else np.zeros(shape, np.int16),
                np.concatenate(ys) if ys else np.zeros((0, NUM_TARGETS), np.float32))

    def dataset(self, split: str, batch_size: int, group: ProcessGroup, *, seed: int,
                shuffle: bool, repeat: bool, first_epoch: int = 0,
                steps_per_epoch: int | None = None, shuffle_buffer: int = 64):
        """This rank's tf.data stream of (counts, targets) batches over its files of ``split``
        (files ``rank::size``). With ``repeat``: whole passes of ``steps_per_epoch`` batches,
        pass ``e`` shuffled (file order, then records within blocks of ``shuffle_buffer``) from
        (``seed``, ``e``) alone, so a resumed run sees the batches of an uninterrupted one."""
        import tensorflow as tf

        files, _ = self.files(split)
        mine = files[group.rank::group.size]
        if not mine:
            return None
        compression = {self.compression[f] for f in mine}
        if len(compression) > 1:
            raise DataError(f"{os.path.dirname(mine[0])}: files mix gzip and uncompressed "
                            "TFRecords; expected one kind")
        compression_type = compression.pop()
        names = tf.constant(mine)
        shape = self.sample_shape

        def one_pass(epoch):
            order = names
            if shuffle:
                order = tf.random.experimental.stateless_shuffle(
                    names, seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
            records = tf.data.Dataset.from_tensor_slices(order).interleave(
                lambda f: tf.data.TFRecordDataset(f, compression_type=compression_type),
                cycle_length=min(4, len(mine)), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
            if shuffle:  # records permuted within blocks, statelessly from (seed, epoch, block)
                records = records.batch(shuffle_buffer).enumerate().map(
                    lambda block, raw: tf.random.experimental.stateless_shuffle(
                        raw, seed=tf.stack([seed * 1_000_003 + epoch, block]))).unbatch()
            ds = records.batch(batch_size, drop_remainder=repeat).map(
                lambda raw: parse_batch(raw, shape), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
            return ds.take(steps_per_epoch) if steps_per_epoch is not None else ds

        if repeat:
            ds = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(one_pass)
        else:
            ds = one_pass(tf.constant(first_epoch, tf.int64))
        return ds.prefetch(tf.data.AUTOTUNE)

    def rank_volumes(self, split: str, group: ProcessGroup) -> list[int]:
        """Volumes of ``split`` in each rank's files."""
        _, counts = self.files(split)
        return [int(sum(counts[r::group.size])) for r in range(group.size)]


def parse_batch(raw, shape: tuple[int, ...]):
    """Serialized records -> (counts (n, *shape) int16, targets (n, 4) float32), in graph."""
    import tensorflow as tf

    parsed = tf.io.parse_example(raw, {
        "x": tf.io.FixedLenFeature([], tf.string),
        "y": tf.io.FixedLenFeature([NUM_TARGETS], tf.float32),
    })
    counts = tf.reshape(tf.io.decode_raw(parsed["x"], tf.int16), (-1, *shape))
    return counts, parsed["y"]


def _tfrecords_in(folder: str) -> list[str]:
    return sorted(glob.glob(os.path.join(folder, "*.tfrecord")))


def open_tfrecords(path: str, *, val_fraction: float = 0.1, sample_shape=None,
                   validate: str = "all", samples_per_file: int = 1) -> TFRecordVolumes:
    """A folder of the published layout (``train/``, ``validation/``), a folder of
    ``*.tfrecord`` files, or one file; every record checked (see :func:`scan_tfrecord`)."""
    if validate not in VALIDATE:
        raise ConfigError(f"data.validate must be one of {VALIDATE}, got {validate!r}")
    if os.path.isdir(os.path.join(path, "train")):
        train = _tfrecords_in(os.path.join(path, "train"))
        val_folder = next((os.path.join(path, name) for name in ("validation", "val")
                           if os.path.isdir(os.path.join(path, name))), None)
        val = _tfrecords_in(val_folder) if val_folder else []
        if not train:
            raise DataError(f"{path}/train: no *.tfrecord files")
    else:
        files = _tfrecords_in(path) if os.path.isdir(path) else [path]
        if not files:
            raise DataError(f"{path}: no *.tfrecord files (expected train/ and validation/ "
                            "folders of them, or the files themselves)")
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        num_val = int(round(len(files) * val_fraction))
        train, val = files[:len(files) - num_val], files[len(files) - num_val:]
    shape = tuple(sample_shape) if sample_shape else None
    counts: dict[str, int] = {}
    compression: dict[str, str] = {}
    for f in train + val:
        counts[f], found = scan_tfrecord(f, shape, validate, samples_per_file)
        if shape is not None and found != shape:
            raise DataError(f"{f}: samples of shape {found}, the other files' {shape}")
        shape = found
        compression[f] = compression_of(f)
    return TFRecordVolumes(train, val, [counts[f] for f in train], [counts[f] for f in val],
                           shape, compression)


@dataclass
class H5Volumes:
    """An HDF5 file of volumes (``x`` counts, ``y`` targets), split by rows."""

    source: H5Source
    val_fraction: float

    kind = "hdf5"

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.source.shape("x")[1:])

    def rows(self, split: str) -> tuple[int, int]:
        from modelzoo.tasks import select_rows

        return select_rows(self.source.num_rows, self.val_fraction, split)

    def num_volumes(self, split: str) -> int:
        lo, hi = self.rows(split)
        return hi - lo

    def read(self, split: str, rows: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        lo, _ = self.rows(split)
        block = self.source.read(lo + rows[0], lo + rows[1])
        return block["x"], block["y"].astype(np.float32)


def open_hdf5_volumes(path: str, *, val_fraction: float = 0.1,
                      num_targets: int = NUM_TARGETS) -> H5Volumes:
    """An HDF5 file of volumes, checked (layout, finite values) by the zoo's HDF5 reader."""
    source = H5Source(path, [
        Field("x", "x", (None, None, None, None),
              check=lambda block: block.reshape(len(block), -1).min(axis=1) >= 0,
              expected="expected particle counts >= 0"),
        Field("y", "y", (num_targets,)),
    ])
    return H5Volumes(source, val_fraction)


def open_volumes(path: str, data_cfg: dict) -> TFRecordVolumes | H5Volumes:
    """TFRecords (a folder or ``.tfrecord`` file) or HDF5 (``.h5``/``.hdf5``), by the path."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or folder")
    val_fraction = float(data_cfg.get("val_fraction", 0.1))
    if path.endswith((".h5", ".hdf5")):
        return open_hdf5_volumes(path, val_fraction=val_fraction)
    return open_tfrecords(path, val_fraction=val_fraction,
                          sample_shape=data_cfg.get("sample_shape"),
                          validate=data_cfg.get("validate", "all"),
                          samples_per_file=int(data_cfg.get("samples_per_file", 1)))


def write_tfrecord(path: str, counts: np.ndarray, targets: np.ndarray, *,
                   gzip: bool = True) -> None:
    """Writes volumes (n, *shape) int16 and targets (n, 4) as the published layout, one record
    per volume, to ``path`` (through a partial file renamed at the end)."""
    import tensorflow as tf

    partial = f"{path}.partial"
    options = tf.io.TFRecordOptions(compression_type="GZIP" if gzip else "")
    try:
        with tf.io.TFRecordWriter(partial, options) as writer:
            for x, y in zip(counts, targets):
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "x": tf.train.Feature(bytes_list=tf.train.BytesList(
                        value=[np.ascontiguousarray(x, "<i2").tobytes()])),
                    "y": tf.train.Feature(float_list=tf.train.FloatList(
                        value=np.asarray(y, np.float32).tolist())),
                })).SerializeToString())
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
