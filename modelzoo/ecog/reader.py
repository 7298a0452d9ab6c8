"""Reader for consonant-vowel ECoG trials in the published HDF5 layout (Livezey et al. 2019).

The published files (e.g. ``EC2_blocks_..._CV_HG_align_window_-05_to_079_events_nobaseline.h5``)
hold ``X``, high-gamma amplitude per trial, and ``y``, the syllable label (0-56), optionally with
``y_consonant`` and ``y_vowel``; other datasets are ignored. ``X`` is ``(N, channels, samples)``,
or ``(N, channels, 1, samples)`` as stored for the paper's Conv2D-shaped input (1 x 258 with 85
channels). Labels may be stored as any integer, boolean or float type holding exact
non-negative whole numbers, shaped ``(N,)`` or ``(N, 1)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from modelzoo.hdf5 import DataError, Field, H5Source

LABELS = ("y", "y_consonant", "y_vowel")


def _label_field(name: str, required: bool) -> Field:
    """A label dataset of shape (N,) or (N, 1): integers, booleans, or floats holding whole
    numbers (checked by :class:`~modelzoo.hdf5.H5Source`)."""
    return Field(name, name, (), "label", required=required)


@dataclass
class RowView:
    """Rows ``rows`` of an :class:`~modelzoo.hdf5.H5Source`, in that order, readable by position
    like the source itself (what :func:`modelzoo.hdf5.stream` needs): a fold of a shuffled
    split without copying the file."""

    source: H5Source
    rows: np.ndarray

    @property
    def path(self) -> str:
        return self.source.path

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    def read(self, start: int, stop: int, keys=None) -> dict[str, np.ndarray]:
        return self.source.read_rows(self.rows[start:stop], keys)


@dataclass
class ECoGTrials:
    """A validated ECoG file. ``to_example`` turns a block of rows into model inputs."""

    source: H5Source
    n_channels: int
    n_samples: int

    @property
    def num_trials(self) -> int:
        return self.source.num_rows

    def to_example(self, block: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(X float32 (n, channels, samples), labels int32 (n,))."""
        x = block["X"].reshape(len(block["X"]), self.n_channels, self.n_samples)
        return x.astype(np.float32), block["y"].reshape(-1).astype(np.int32)

    def labels(self, name: str = "y") -> np.ndarray:
        """All values of label dataset ``name`` as int64, in file order."""
        return self.source.read(0, self.num_trials, [name])[name].reshape(-1).astype(np.int64)

    def view(self, rows: np.ndarray) -> RowView:
        return RowView(self.source, np.asarray(rows, np.int64))


def open_ecog(path: str | os.PathLike, *, check_finite: bool = True) -> ECoGTrials:
    """Open and validate an ECoG file; one :class:`DataError` names what is wrong."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as handle:
            if "X" not in handle:
                found = ", ".join(sorted(handle.keys())) or "nothing"
                raise DataError(f"{path}: missing dataset 'X'; expected (N, channels, samples) "
                                f"high-gamma amplitude, found {found}")
            x_shape = handle["X"].shape if isinstance(handle["X"], h5py.Dataset) else ()
            fields = [_label_field(name, name == "y") for name in LABELS]
    except OSError as err:
        raise DataError(f"{path}: cannot be opened as HDF5 ({err}); the file may be truncated "
                        "or not an HDF5 file") from None
    if len(x_shape) == 3:
        x_trailing = (None, None)
    elif len(x_shape) == 4 and x_shape[2] == 1:
        x_trailing = (None, 1, None)
    else:
        raise DataError(f"{path}: dataset 'X' has shape {x_shape}, expected (N, channels, "
                        "samples) or (N, channels, 1, samples)")
    source = H5Source(path, [Field("X", "X", x_trailing), *fields], check_finite=check_finite)
    return ECoGTrials(source, int(x_shape[1]), int(x_shape[-1]))
