"""Reader for LHC whole-detector calorimeter images in the two published HDF5 layouts.

* ``acat`` (Bhimji et al. 2017 files): group ``all_events`` with ``hist``, ``histEM``,
  ``histtrack`` (N, H, W each), ``y`` (labels), ``weight`` and optionally ``passSR``.
* ``benchmark`` (NERSC hep_cnn_benchmark / 15PF files): ``data`` (N, 3, H, W) NCHW or
  (N, H, W, 3) NHWC, ``label``, ``weight`` (or ``normweight``) and optionally ``psr``.

Images come out channels-last float32 (N, H, W, C) with the energies as stored (the models
compress them themselves), with integer labels and per-event physics weights. C is 3, or 1
for a file with the energy channel alone (an ACAT file with ``hist`` only, as the paper's own
network used; a benchmark file with one channel). Labels and selection flags may be stored as
int, unsigned, bool or float 0/1, as (N,) or (N, 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from modelzoo.hdf5 import DataError, Field, H5Source, stream

CHANNELS = ("calorimeter_energy", "em_energy", "track_count")
LAYOUTS = ("acat", "benchmark")
_PROCESS_FIELD = Field("process_id", "truth/process_id", (), "int", required=False)
"""The generating process (signal, or a QCD pT-hat slice) where a simulated file records it:
the strata whose event counts were fixed by design, for the bootstrap."""


def detect_layout(path: str | os.PathLike) -> str:
    """``"acat"`` or ``"benchmark"`` from the datasets present in ``path``."""
    try:
        with h5py.File(path, "r") as handle:
            if "all_events" in handle:
                return "acat"
            if "data" in handle:
                return "benchmark"
            found = ", ".join(sorted(handle.keys())) or "nothing"
    except OSError as err:
        raise DataError(
            f"{os.fspath(path)}: cannot be opened as HDF5 ({err}); the file may be truncated"
        ) from None
    raise DataError(
        f"{os.fspath(path)}: not an LHC image file: expected group 'all_events' (ACAT layout) or "
        f"dataset 'data' (benchmark layout), found {found}"
    )


def _benchmark_channel_axis(path: str) -> int:
    with h5py.File(path, "r") as handle:
        shape = handle["data"].shape
    if len(shape) == 4 and shape[1] in (1, 3):
        return 1
    if len(shape) == 4 and shape[3] in (1, 3):
        return 3
    raise DataError(
        f"{path}: dataset 'data' has shape {shape}, expected (N, C, H, W) NCHW or (N, H, W, C) "
        "NHWC with C = 3 (energy, EM energy, track count) or 1 (energy)"
    )


@dataclass
class LHCImages:
    """A validated LHC image file. Use :meth:`dataset` for training and :meth:`arrays` for
    evaluation."""

    source: H5Source
    layout: str
    channel_axis: int

    @property
    def num_events(self) -> int:
        return self.source.num_rows

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the images, from the datasets' shapes (no rows are read)."""
        if self.layout == "acat":
            channels = [k for k in ("hist", "hist_em", "hist_track") if k in self.source.fields]
            return (*self.source.shape("hist")[1:], len(channels))
        shape = self.source.shape("data")[1:]
        return (shape[1], shape[2], shape[0]) if self.channel_axis == 1 else tuple(shape)

    @property
    def has_selection(self) -> bool:
        """Whether the file carries the cut-based physics selection flag per event."""
        return "passes_selection" in self.source.fields

    @property
    def columns(self) -> list[str]:
        """Per-event values besides the image: label, weight, and the selection flag and the
        generating process where the file has them."""
        return ["label", "weight"] + [k for k in ("passes_selection", "process_id")
                                      if k in self.source.fields]

    def _images(self, block: dict[str, np.ndarray]) -> np.ndarray:
        if self.layout == "acat":
            channels = [k for k in ("hist", "hist_em", "hist_track") if k in block]
            images = np.stack([block[k] for k in channels], axis=-1)
        elif self.channel_axis == 1:
            images = np.transpose(block["data"], (0, 2, 3, 1))
        else:
            images = block["data"]
        return images.astype(np.float32)

    def to_example(self, block: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images NHWC float32, labels int32, weights float32) for one block."""
        return (
            self._images(block),
            block["label"].astype(np.int32).reshape(-1),
            block["weight"].astype(np.float32).reshape(-1),
        )

    def dataset(self, rows: tuple[int, int], batch_size: int, **stream_args):
        """tf.data batches of (images, labels, weights) over ``rows``; see
        :func:`modelzoo.hdf5.stream` for shuffling, repeat and sharding arguments."""
        return stream(self.source, self.to_example, rows=rows, batch_size=batch_size, **stream_args)

    def arrays(self, rows: tuple[int, int], block_rows: int = 4096) -> dict[str, np.ndarray]:
        """The :attr:`columns` of ``rows``, without images."""
        keys = self.columns
        parts = [
            self.source.read(s, min(s + block_rows, rows[1]), keys)
            for s in range(rows[0], rows[1], block_rows)
        ]
        return {k: np.concatenate([p[k] for p in parts]).reshape(-1) for k in keys}


def open_lhc(
    path: str | os.PathLike,
    *,
    weight: str = "weight",
    check_finite: bool = True,
) -> LHCImages:
    """Open and validate an LHC image file in either published layout.

    Args:
        path: the HDF5 file.
        weight: which weight dataset to train with: ``"weight"`` (physics cross-section weight)
            or ``"normweight"`` / ``"normalized_weight"`` (class-balanced), as the file offers.
        check_finite: scan every dataset for NaN/Inf up front.
    """
    path = os.fspath(path)
    layout = detect_layout(path)
    if layout == "acat":
        weight_path = {"weight": "weight", "normweight": "normalized_weight"}.get(weight, weight)
        fields = [
            Field("hist", "all_events/hist", (None, None)),
            # The ACAT paper's own network (run111) used the energy channel alone.
            Field("hist_em", "all_events/histEM", (None, None), required=False),
            Field("hist_track", "all_events/histtrack", (None, None), required=False),
            Field("label", "all_events/y", (), "label", classes=(0, 1)),
            Field("weight", f"all_events/{weight_path}", ()),
            Field("passes_selection", "all_events/passSR", (), "label", required=False,
                  classes=(0, 1)),
            _PROCESS_FIELD,
        ]
        channel_axis = -1
    else:
        channel_axis = _benchmark_channel_axis(path)
        image_shape = (None, None, None)
        weight_path = {"normalized_weight": "normweight"}.get(weight, weight)
        fields = [
            Field("data", "data", image_shape),
            Field("label", "label", (), "label", classes=(0, 1)),
            Field("weight", weight_path, ()),
            Field("passes_selection", "psr", (), "label", required=False, classes=(0, 1)),
            _PROCESS_FIELD,
        ]
    source = H5Source(path, fields, check_finite=check_finite)
    images = LHCImages(source, layout, channel_axis)
    if layout == "acat":
        if ("hist_em" in source.fields) != ("hist_track" in source.fields):
            raise DataError(f"{path}: has only one of 'all_events/histEM' and "
                            "'all_events/histtrack'; expected both (three channels) or 'hist' "
                            "alone (one channel)")
        shapes = {k: source.shape(k) for k in ("hist", "hist_em", "hist_track")
                  if k in source.fields}
        if len(set(shapes.values())) > 1:
            raise DataError(f"{path}: hist, histEM and histtrack differ in shape: {shapes}")
    return images
