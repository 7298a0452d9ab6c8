"""Reader for Daya Bay trigger pairs in the dayabay-learn HDF5 layout, as one labelled stream.

Layout (Kohn's IBD-pair converter in NERSC/dayabay-learn, and what
:mod:`modelzoo.dayabay.generator` writes): one dataset per event class, rows of float values
whose first 768 columns are four flattened 8 x 24 PMT maps (ring-major) in the order prompt
charge, prompt time, delayed charge, delayed time; further columns are metadata and ignored.
A dataset shaped (N, 4, 8, 24) is accepted too. The datasets and the labels they get:

=========  =======================  ======================================================
label      dataset                  events
=========  =======================  ======================================================
0          ``ibd_pair_data``        inverse-beta-decay pairs (signal)
1          ``accidentals_bg_data``  accidental pairs (two uncorrelated singles)
2          ``muon_data``            muon + spallation-neutron pairs (zoo extension)
3          ``flasher_data``         flashing-PMT pairs (zoo extension)
=========  =======================  ======================================================

Any non-empty subset may be present; other datasets are ignored. The classes are merged into
one stream in a fixed interleaved order: row j of a dataset of n rows sits at position
(j + 1/2) / n of the stream, so every contiguous range of the stream (a validation tail, a
rank's shard) holds every class in proportion and each dataset's rows in file order.

Maps come out channels-last (n, 8, 24, 4) as stored: the networks preprocess them themselves
(:class:`modelzoo.dayabay.models.PMTPreprocess`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from modelzoo.errors import ConfigError
from modelzoo.hdf5 import DataError, Field, H5Source, stream

RINGS, COLUMNS = 8, 24
PIXELS = RINGS * COLUMNS
CHANNELS = ("prompt_charge", "prompt_time", "delayed_charge", "delayed_time")
MAP_COLUMNS = len(CHANNELS) * PIXELS
CLASS_DATASETS = (
    ("ibd", "ibd_pair_data"),
    ("accidental", "accidentals_bg_data"),
    ("muon", "muon_data"),
    ("flasher", "flasher_data"),
)
CLASS_NAMES = tuple(name for name, _ in CLASS_DATASETS)
CHANNEL_SETS = {"all": (0, 1, 2, 3), "charge": (0, 2), "prompt": (0, 1)}


def channel_indices(channels: str | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """The map channels a recipe's ``data.channels`` selects (the networks' ``channels``):
    ``all``, ``charge``, ``prompt`` or a list of indices into :data:`CHANNELS`."""
    if isinstance(channels, str):
        if channels not in CHANNEL_SETS:
            raise ConfigError(f"data.channels must be one of {sorted(CHANNEL_SETS)} or a list of "
                              f"indices into {CHANNELS}, got {channels!r}")
        return CHANNEL_SETS[channels]
    picked = tuple(int(c) for c in channels)
    if not picked or any(c not in range(len(CHANNELS)) for c in picked) or len(set(picked)) < len(
            picked):
        raise ConfigError(f"data.channels: distinct indices into {CHANNELS} expected, got "
                          f"{channels!r}")
    return picked


def channels_last(maps: np.ndarray) -> np.ndarray:
    """(n, 4, 8, 24) maps as a file stores them -> (n, 8, 24, 4) float32, the models' layout."""
    return np.transpose(np.asarray(maps, np.float32), (0, 2, 3, 1))


class MergedPairs:
    """The class datasets of one file as one row-indexed source (the interface
    :func:`modelzoo.hdf5.stream` reads): ``read(start, stop)`` gives ``maps`` (n, 4, 8, 24)
    float32 and ``label`` (n,) int32."""

    def __init__(self, path: str, sources: dict[int, tuple[H5Source, str]]) -> None:
        self.path = path
        self.sources = sources
        counts = {label: source.num_rows for label, (source, _) in sources.items()}
        self.class_counts = counts
        keys = np.concatenate([(np.arange(n) + 0.5) / n for n in counts.values()])
        labels = np.concatenate([np.full(n, label, np.int32) for label, n in counts.items()])
        rows = np.concatenate([np.arange(n) for n in counts.values()])
        order = np.lexsort((labels, keys))
        self.labels, self.rows = labels[order], rows[order]
        self.num_rows = len(order)

    def read(self, start: int, stop: int, keys=None) -> dict[str, np.ndarray]:
        labels = self.labels[start:stop]
        out = {"label": labels.copy()}
        if keys is not None and "maps" not in keys:
            return out
        maps = np.empty((len(labels), len(CHANNELS), RINGS, COLUMNS), np.float32)
        rows = self.rows[start:stop]
        for label, (source, _) in self.sources.items():
            here = labels == label
            if here.any():
                lo, hi = int(rows[here][0]), int(rows[here][-1]) + 1
                block = source.read(lo, hi)["pixels"]
                maps[here] = block.reshape(len(block), -1)[:, :MAP_COLUMNS].reshape(
                    -1, len(CHANNELS), RINGS, COLUMNS)
        out["maps"] = maps
        return out


@dataclass
class DayaBayPairs:
    """A validated pair file. ``to_example`` gives model inputs; see :class:`MergedPairs`."""

    source: MergedPairs

    @property
    def num_events(self) -> int:
        return self.source.num_rows

    @property
    def class_counts(self) -> dict[str, int]:
        return {CLASS_NAMES[k]: n for k, n in self.source.class_counts.items()}

    def to_example(self, block: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(maps (n, 8, 24, 4) float32, labels (n,) int32)."""
        return channels_last(block["maps"]), block["label"]

    def dataset(self, rows: tuple[int, int], batch_size: int, **stream_args):
        """tf.data batches of (inputs, labels); see :func:`modelzoo.hdf5.stream`."""
        return stream(self.source, self.to_example, rows=rows, batch_size=batch_size, **stream_args)

    def arrays(self, rows: tuple[int, int], block_rows: int = 4096) -> dict[str, np.ndarray]:
        """``inputs`` (the maps channels-last, as the models take them), ``maps`` (as stored)
        and ``label`` for ``rows``."""
        parts = [self.source.read(s, min(s + block_rows, rows[1]))
                 for s in range(rows[0], rows[1], block_rows)]
        maps = np.concatenate([p["maps"] for p in parts])
        labels = np.concatenate([p["label"] for p in parts])
        return {"inputs": channels_last(maps), "maps": maps, "label": labels}


def _dataset_field(path: str, handle: h5py.File, dataset: str) -> Field:
    node = handle[dataset]
    if not isinstance(node, h5py.Dataset):
        raise DataError(f"{path}: '{dataset}' is a group, expected a dataset of rows with at least "
                        f"{MAP_COLUMNS} values (4 x 8 x 24 maps, then metadata)")
    shape = node.shape
    if len(shape) >= 1 and shape[0] == 0:
        raise DataError(f"{path}: dataset '{dataset}' is empty, expected rows of at least "
                        f"{MAP_COLUMNS} values")
    if len(shape) == 4:
        return Field("pixels", dataset, (len(CHANNELS), RINGS, COLUMNS))
    if len(shape) != 2 or shape[1] < MAP_COLUMNS:
        raise DataError(f"{path}: dataset '{dataset}' has shape {shape}, expected (N, >= "
                        f"{MAP_COLUMNS}) rows (4 x 8 x 24 maps, then metadata) or (N, 4, 8, 24)")
    return Field("pixels", dataset, (None,))


def open_dayabay(
    path: str | os.PathLike,
    *,
    classes: tuple[str, ...] | None = None,
    check_finite: bool = True,
) -> DayaBayPairs:
    """Open and validate a Daya Bay pair file.

    Args:
        path: the HDF5 file.
        classes: class names that must be present (e.g. ``("ibd", "accidental")``); None
            accepts any non-empty subset of :data:`CLASS_NAMES`.
        check_finite: scan every dataset for NaN/Inf up front.

    Raises:
        DataError: naming the file, the dataset and what was expected.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: cannot be opened as HDF5 ({err}); the file may be truncated "
                        "or not an HDF5 file") from None
    with handle:
        present = [(label, dataset) for label, (_, dataset) in enumerate(CLASS_DATASETS)
                   if dataset in handle]
        if not present:
            found = ", ".join(sorted(handle.keys())) or "nothing"
            raise DataError(f"{path}: not a Daya Bay pair file: expected dataset "
                            f"'ibd_pair_data' and/or 'accidentals_bg_data' (or 'muon_data', "
                            f"'flasher_data'), found {found}")
        fields = {label: _dataset_field(path, handle, dataset) for label, dataset in present}
    for name in classes or ():
        label = CLASS_NAMES.index(name)
        if label not in fields:
            raise DataError(f"{path}: missing dataset '{CLASS_DATASETS[label][1]}' ({name} "
                            f"events), expected (N, >= {MAP_COLUMNS}) rows")
    sources = {label: (H5Source(path, [field], check_finite=check_finite), field.path)
               for label, field in fields.items()}
    return DayaBayPairs(MergedPairs(path, sources))
