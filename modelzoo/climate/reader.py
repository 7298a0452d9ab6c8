"""Readers for the extreme-weather case: the ExtremeWeather HDF5 layout and patch files.

* ExtremeWeather (Racah et al. 2017, extremeweatherdataset.github.io): ``images``
  (N, 16, 768, 1152) float32 in the channel order of :data:`CHANNELS` and ``boxes`` (N, 15, 5)
  = ymin, xmin, ymax, xmax, class, padded with -1 (:mod:`modelzoo.climate.boxes` states the
  convention). An image without boxes is unlabelled. Any grid size and box-row count is read;
  a root attribute ``channels`` may name the channels of a file holding other variables.
* Patch files (``modelzoo data climate patches``): ``images`` (N, C, H, W) and ``labels`` (N,)
  with class 0 = no event, and root attributes ``channels`` and ``class_names``.

Fields come out channels-last float32 in physical units; the models standardise every channel by
a fixed climatological offset and scale (:data:`CHANNEL_NORMS`) themselves, so a model trained
on one file sees another file's fields on the same scale.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from modelzoo.climate.boxes import BOX_ORDERS, CLASS_NAMES, reorder_boxes
from modelzoo.errors import ConfigError
from modelzoo.hdf5 import DataError, Field, H5Source

# The published channel order (dataset page; its "Z100" is "Z1000" in hur-detect's code).
CHANNELS = ("PRECT", "PS", "PSL", "QREFHT", "T200", "T500", "TMQ", "TREFHT", "TS", "U850",
            "UBOT", "V850", "VBOT", "Z100", "Z200", "ZBOT")
LAND_MASK = "LANDFRAC"
# Typical value and spread of each field (CAM5-like climatology, SI units) for standardising.
CHANNEL_NORMS = {
    "PRECT": (3e-8, 1e-7),      # m/s
    "PS": (96500.0, 8000.0),     # Pa
    "PSL": (101000.0, 1500.0),   # Pa
    "QREFHT": (0.008, 0.006),    # kg/kg
    "T200": (218.0, 6.0),        # K
    "T500": (255.0, 12.0),
    "TMQ": (20.0, 15.0),         # kg/m^2
    "TREFHT": (280.0, 18.0),
    "TS": (281.0, 19.0),
    "U850": (3.0, 9.0),          # m/s
    "UBOT": (1.5, 6.0),
    "V850": (0.0, 6.0),
    "VBOT": (0.0, 5.0),
    "Z100": (16300.0, 350.0),    # m
    "Z200": (11800.0, 300.0),
    "ZBOT": (60.0, 10.0),
    LAND_MASK: (0.3, 0.45),      # fraction
}
# Rows per validation read: a published image is 57 MB, so scan a few at a time.
_SCAN_BYTES = 256 * 2**20


def channels_last(fields: np.ndarray) -> np.ndarray:
    """(N, C, H, W) physical fields -> (N, H, W, C) float32: the one layout change between a
    file and the models."""
    return np.transpose(fields, (0, 2, 3, 1)).astype(np.float32)


def standardize(fields: np.ndarray, channels: tuple[str, ...]) -> np.ndarray:
    """(N, H, W, C) physical fields, each channel standardised by :data:`CHANNEL_NORMS` (what
    the models do to their input; the detector reconstructs this)."""
    offset = np.array([CHANNEL_NORMS[c][0] for c in channels], np.float32)
    scale = np.array([CHANNEL_NORMS[c][1] for c in channels], np.float32)
    return (fields - offset) / scale


def _channel_names(path: str, handle: h5py.File, count: int) -> tuple[str, ...]:
    names = handle.attrs.get("channels")
    if names is None:
        if count == len(CHANNELS):
            return CHANNELS
        raise DataError(
            f"{path}: dataset 'images' has {count} channels and the file has no 'channels' "
            f"attribute; expected the 16 published channels {', '.join(CHANNELS)} or a root "
            "attribute 'channels' naming each"
        )
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in np.atleast_1d(names))
    unknown = [n for n in names if n not in CHANNEL_NORMS]
    if len(names) != count or unknown:
        raise DataError(
            f"{path}: attribute 'channels' is {list(names)}, expected {count} names from "
            f"{', '.join(CHANNEL_NORMS)}"
        )
    return names


def _scan_rows(shape: tuple[int, ...], itemsize: int) -> int:
    return max(1, _SCAN_BYTES // max(1, int(np.prod(shape[1:])) * itemsize))


def _kind(path: str, name: str) -> str:
    """The :class:`Field` kind that accepts dataset ``name`` as it is stored (integer, boolean
    or float numbers are all read; their values are checked afterwards)."""
    with h5py.File(path, "r") as handle:
        if name in handle and isinstance(handle[name], h5py.Dataset):
            return "float" if handle[name].dtype.kind == "f" else "int"
    return "float"


def _image_shape(path: str) -> tuple[tuple[int, ...], int]:
    try:
        with h5py.File(path, "r") as handle:
            if "images" not in handle or not isinstance(handle["images"], h5py.Dataset):
                found = ", ".join(sorted(handle.keys())) or "nothing"
                raise DataError(f"{path}: missing dataset 'images'; expected (N, C, H, W) "
                                f"float fields (found {found})")
            return handle["images"].shape, handle["images"].dtype.itemsize
    except OSError as err:
        raise DataError(f"{path}: cannot be opened as HDF5 ({err}); the file may be truncated "
                        "or not an HDF5 file") from None


@dataclass
class ExtremeWeatherImages:
    """A validated ExtremeWeather file: fields and boxes by row range."""

    source: H5Source
    channels: tuple[str, ...]
    box_order: str

    @property
    def num_images(self) -> int:
        return self.source.num_rows

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the fields the reader yields."""
        shape = self.source._file()["images"].shape
        return shape[2], shape[3], shape[1]

    def fields(self, block: dict[str, np.ndarray]) -> np.ndarray:
        """(n, H, W, C) fields of a block, physical units."""
        return channels_last(block["images"])

    def boxes_of(self, block: dict[str, np.ndarray]) -> np.ndarray:
        """(n, rows, 5) boxes of a block as ymin, xmin, ymax, xmax, class (float64)."""
        return reorder_boxes(np.asarray(block["boxes"], np.float64), self.box_order)

    def boxes(self, rows: tuple[int, int]) -> np.ndarray:
        """(n, rows, 5) boxes of ``rows`` (without reading fields)."""
        return self.boxes_of(self.source.read(rows[0], rows[1], ["boxes"]))

    def labelled(self, rows: tuple[int, int]) -> np.ndarray:
        """Which images of ``rows`` carry boxes (the others are unlabelled)."""
        return (self.boxes(rows)[..., 4] >= 0).any(axis=1)

    @property
    def block_rows(self) -> int:
        """Rows per read: about 64 MB of fields."""
        h, w, c = self.image_shape
        return max(1, (64 * 2**20) // (h * w * c * 4))


def _check_boxes(path: str, boxes: np.ndarray, height: int, width: int, order: str,
                 hint: bool = True) -> None:
    canonical = reorder_boxes(boxes, order)
    cls = canonical[..., 4]
    padding = cls == -1
    if not np.all(canonical[padding] == -1):
        n, r = np.argwhere(padding & ~np.all(canonical == -1, axis=-1))[0]
        raise DataError(f"{path}: dataset 'boxes' row {n} box {r} is {boxes[n, r].tolist()}; "
                        "expected a padding row to be -1 throughout")
    real = ~padding
    bad_class = real & ((cls < 0) | (cls >= len(CLASS_NAMES)) | (cls != np.round(cls)))
    ymin, xmin, ymax, xmax = (canonical[..., k] for k in range(4))
    bad_extent = real & ~((ymin >= 0) & (ymin < ymax) & (ymax <= height)
                          & (xmin >= 0) & (xmin < xmax) & (xmax <= width))
    for bad, what in ((bad_class, f"a class in 0..{len(CLASS_NAMES) - 1} or -1 padding"),
                      (bad_extent, f"0 <= ymin < ymax <= {height} and 0 <= xmin < xmax <= "
                                   f"{width} (box order {order})")):
        if bad.any():
            n, r = np.argwhere(bad)[0]
            other = [o for o in BOX_ORDERS if o != order][0]
            hint = (f"; the rows read in order {other} would be valid (set data.box_order)"
                    if hint and what.startswith("0 <=")
                    and _boxes_valid(boxes, height, width, other) else "")
            raise DataError(f"{path}: dataset 'boxes' row {n} box {r} is {boxes[n, r].tolist()}"
                            f"; expected {what}{hint}")


def _boxes_valid(boxes: np.ndarray, height: int, width: int, order: str) -> bool:
    try:
        _check_boxes("", boxes, height, width, order, hint=False)
    except DataError:
        return False
    return True


def open_extreme_weather(
    path: str | os.PathLike, *, box_order: str = "ymin_xmin_ymax_xmax", check_finite: bool = True,
) -> ExtremeWeatherImages:
    """Open and validate an ExtremeWeather file (``images`` + ``boxes``; any grid size).

    ``box_order``: ``"ymin_xmin_ymax_xmax"`` (the data set page, default) or
    ``"xmin_xmax_ymin_ymax"`` (files made by hur-detect's converter).
    """
    path = os.fspath(path)
    if box_order not in BOX_ORDERS:
        raise ConfigError(f"box_order must be one of {BOX_ORDERS}, got {box_order!r}")
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    shape, itemsize = _image_shape(path)
    if len(shape) != 4:
        raise DataError(f"{path}: dataset 'images' has shape {shape}, expected (N, C, H, W), "
                        "e.g. (N, 16, 768, 1152)")
    fields = [Field("images", "images", (None, None, None)),
              Field("boxes", "boxes", (None, 5), _kind(path, "boxes"))]
    source = H5Source(path, fields, check_finite=check_finite,
                      scan_block_rows=_scan_rows(shape, itemsize))
    with h5py.File(path, "r") as handle:
        channels = _channel_names(path, handle, shape[1])
        boxes = handle["boxes"][()]
    _check_boxes(path, boxes, shape[2], shape[3], box_order)
    return ExtremeWeatherImages(source, channels, box_order)


@dataclass
class ClimatePatches:
    """A validated patch file: patches (physical units) and integer labels."""

    source: H5Source
    channels: tuple[str, ...]
    class_names: tuple[str, ...]

    @property
    def num_patches(self) -> int:
        return self.source.num_rows

    @property
    def patch_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the patches the reader yields."""
        shape = self.source._file()["images"].shape
        return shape[2], shape[3], shape[1]

    def to_example(self, block: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(patches NHWC float32, labels int32) of a block."""
        return (channels_last(block["images"]),
                np.asarray(block["labels"]).reshape(-1).astype(np.int32))

    def labels(self, rows: tuple[int, int]) -> np.ndarray:
        return np.asarray(self.source.read(rows[0], rows[1], ["labels"])["labels"]).reshape(-1)

    @property
    def block_rows(self) -> int:
        h, w, c = self.patch_shape
        return max(1, min(512, (64 * 2**20) // (h * w * c * 4)))


def open_patches(path: str | os.PathLike, *, check_finite: bool = True) -> ClimatePatches:
    """Open and validate a patch file (``images`` (N, C, H, W), ``labels`` (N,) or (N, 1))."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    shape, itemsize = _image_shape(path)
    if len(shape) != 4:
        raise DataError(f"{path}: dataset 'images' has shape {shape}, expected (N, C, H, W)")
    fields = [Field("images", "images", (None, None, None)),
              Field("labels", "labels", (), "label")]
    source = H5Source(path, fields, check_finite=check_finite,
                      scan_block_rows=_scan_rows(shape, itemsize))
    with h5py.File(path, "r") as handle:
        channels = _channel_names(path, handle, shape[1])
        names = handle.attrs.get("class_names")
        labels = np.asarray(handle["labels"][()], np.float64).reshape(-1)
    if names is None:
        names = ["no_event"] + [f"class_{k}" for k in range(1, int(labels.max()) + 1)]
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in np.atleast_1d(names))
    if labels.max() >= len(names):
        raise DataError(f"{path}: dataset 'labels' holds class {int(labels.max())}; expected "
                        f"0..{len(names) - 1} (attribute 'class_names' = {list(names)})")
    return ClimatePatches(source, channels, names)
