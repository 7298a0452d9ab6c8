"""DeepCAM's files as published (MLPerf HPC DeepCAM; Kurth et al. SC18, arXiv:1810.01993).

Layout (learnt from the MLPerf HPC reference's reader, github.com/mlcommons/hpc deepcam/):

* a folder of per-sample HDF5 files ``data-*.h5``, each holding ``climate/data`` (768, 1152, 16)
  float, the 16 CAM5 fields of :data:`DEEPCAM_CHANNELS` channels last, and
  ``climate/labels_0`` (768, 1152) integer, 0 background, 1 tropical cyclone, 2 atmospheric
  river (TECA's labels);
* ``stats.h5`` beside the samples or one folder up (the published ``train/`` and
  ``validation/`` folders share it): ``climate/count``, ``climate/mean``, ``climate/sqmean``,
  ``climate/minval``, ``climate/maxval``, one number per channel. The reference scales a sample
  by ``(x - minval) / (maxval - minval)``; here that scaling lives inside the model
  (:func:`~modelzoo.climate.segmenter.climate_segmenter`'s ``input_scaling`` layer), so the
  reader hands the fields on as stored.

:class:`DeepCAMFolder` reads row ``i`` = file ``i`` of the sorted listing, so the zoo's row
sharding (:func:`modelzoo.tasks.split_streams`) shards by file across ranks and
:func:`modelzoo.hdf5.stream` opens only the files it is reading: nothing loads the folder.
Every file a process reads is checked (datasets present, shapes, dtypes, finite fields, labels
in 0..2); a bad one raises one :class:`DataError` naming the file and the dataset.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass

import h5py
import numpy as np

from modelzoo.errors import ConfigError, DataError
from modelzoo.hdf5 import shard_range
from modelzoo.parallel import GeneratorReport, generated_folder, partial_path

# The 16 channels of a DeepCAM sample, in the order of its last axis (as the data set's README
# lists them; "Z100" is the zoo's name for the 1000 hPa height, as in modelzoo.climate.reader).
DEEPCAM_CHANNELS = ("TMQ", "U850", "V850", "UBOT", "VBOT", "QREFHT", "PS", "PSL", "T200",
                    "T500", "PRECT", "TS", "TREFHT", "Z100", "Z200", "ZBOT")
# The label values 0, 1, 2. The reference README names them "background, atmospheric river,
# tropical cyclone", but its class weights (frequencies 0.986, 0.00046, 0.0133) put the rare
# class, the cyclones, at 1.
SEGMENT_CLASSES = ("background", "tropical_cyclone", "atmospheric_river")

DATA = "climate/data"
LABELS = "climate/labels_0"
STATS_FILE = "stats.h5"
STATS_KEYS = ("count", "mean", "sqmean", "minval", "maxval")


def sample_files(folder: str) -> list[str]:
    """The sample files of ``folder`` in the reference's order (sorted names)."""
    return sorted(glob.glob(os.path.join(glob.escape(folder), "data-*.h5")))


def stats_path(folder: str) -> str | None:
    """``stats.h5`` beside the samples, else one folder up, else None."""
    for candidate in (os.path.join(folder, STATS_FILE),
                      os.path.join(os.path.dirname(os.path.abspath(folder)), STATS_FILE)):
        if os.path.isfile(candidate):
            return candidate
    return None


def read_stats(path: str, channels: int) -> dict[str, np.ndarray]:
    """The statistics file's per-channel arrays (``count`` is a scalar)."""
    try:
        with h5py.File(path, "r") as handle:
            stats = {}
            for key in STATS_KEYS:
                name = f"climate/{key}"
                if name not in handle:
                    raise DataError(f"{path}: missing dataset '{name}'; expected one number per "
                                    f"channel ({channels})")
                value = np.asarray(handle[name][()], np.float64)
                if key != "count" and value.shape != (channels,):
                    raise DataError(f"{path}: dataset '{name}' has shape {value.shape}, "
                                    f"expected ({channels},), one number per channel")
                stats[key] = value
    except OSError as err:
        raise DataError(f"{path}: cannot be opened as HDF5 ({err})") from None
    if not np.all(stats["maxval"] > stats["minval"]):
        k = int(np.argmin(stats["maxval"] - stats["minval"]))
        raise DataError(f"{path}: dataset 'climate/maxval' channel {k} is not above "
                        "'climate/minval'; expected maxval > minval for every channel")
    return stats


def _open_sample(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: cannot be opened as HDF5 ({err}); the file may be truncated "
                        "or not an HDF5 file") from None


def _check_layout(path: str, handle: h5py.File, shape: tuple[int, int, int] | None) -> tuple:
    """(H, W, C) of a sample file after checking both datasets' presence, shape and dtype
    (against ``shape`` when given: every file of a folder has the first file's)."""
    for name, what in ((DATA, "(H, W, C) float fields, e.g. (768, 1152, 16)"),
                       (LABELS, "(H, W) integer labels 0, 1, 2")):
        if name not in handle or not isinstance(handle[name], h5py.Dataset):
            raise DataError(f"{path}: missing dataset '{name}'; expected {what}")
    data, labels = handle[DATA], handle[LABELS]
    if data.ndim != 3 or data.dtype.kind not in "fiu":
        raise DataError(f"{path}: dataset '{DATA}' has shape {data.shape} dtype {data.dtype}, "
                        "expected (H, W, C) float fields, e.g. (768, 1152, 16)")
    if shape is not None and data.shape != shape:
        raise DataError(f"{path}: dataset '{DATA}' has shape {data.shape}, expected {shape} "
                        "like the folder's first sample")
    if labels.shape != data.shape[:2] or labels.dtype.kind not in "iuf":
        raise DataError(f"{path}: dataset '{LABELS}' has shape {labels.shape} dtype "
                        f"{labels.dtype}, expected {data.shape[:2]} integer labels 0, 1, 2")
    return data.shape


@dataclass
class DeepCAMFolder:
    """A validated DeepCAM folder, read by file ranges (row ``i`` is ``files[i]``)."""

    path: str
    files: list[str]
    sample_shape: tuple[int, int, int]
    stats: dict[str, np.ndarray] | None
    channels: tuple[str, ...]

    @property
    def num_rows(self) -> int:
        return len(self.files)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of a sample."""
        return self.sample_shape

    def scaling(self) -> tuple[list[float], list[float]] | None:
        """(shift, scale) of the reference's min-max scaling from ``stats.h5``, or None."""
        if self.stats is None:
            return None
        shift = self.stats["minval"]
        return shift.tolist(), (self.stats["maxval"] - shift).tolist()

    def read(self, start: int, stop: int,
             keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Samples ``start:stop``: ``data`` (n, H, W, C) float32 as stored and ``labels``
        (n, H, W) int32 (or only ``keys``), every file checked."""
        keys = ("data", "labels") if keys is None else tuple(keys)
        out: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for path in self.files[start:stop]:
            with _open_sample(path) as handle:
                _check_layout(path, handle, self.sample_shape)
                try:
                    if "data" in keys:
                        data = np.asarray(handle[DATA][()], np.float32)
                        if not np.isfinite(data).all():
                            raise DataError(f"{path}: dataset '{DATA}' has NaN or Inf; "
                                            "expected finite fields")
                        out["data"].append(data)
                    if "labels" in keys:
                        labels = np.asarray(handle[LABELS][()])
                        valid = np.isin(labels, np.arange(len(SEGMENT_CLASSES)))
                        if not valid.all():
                            bad = labels[~valid].flat[0]
                            raise DataError(f"{path}: dataset '{LABELS}' holds {bad}; "
                                            "expected labels 0 (background), 1 (tropical "
                                            "cyclone), 2 (atmospheric river)")
                        out["labels"].append(labels.astype(np.int32))
                except (OSError, RuntimeError) as err:
                    raise DataError(f"{path}: cannot be read ({err}); the file is probably "
                                    "truncated") from None
        return {k: np.stack(v) for k, v in out.items()}


def open_deepcam(folder: str | os.PathLike, *, rank: int = 0, size: int = 1) -> DeepCAMFolder:
    """Open a DeepCAM folder: list its samples, read ``stats.h5`` if present, and check the
    layout of this process's share of the files (``rank`` of ``size``; the others are checked
    by their own ranks, and every file again when it is read)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: not a folder; expected a DeepCAM folder of data-*.h5 "
                        "sample files")
    files = sample_files(folder)
    if not files:
        hint = "".join(f"; it has a '{s}' folder: point at that" for s in ("train", "validation")
                       if os.path.isdir(os.path.join(folder, s)))
        raise DataError(f"{folder}: no data-*.h5 sample files; expected DeepCAM's per-sample "
                        f"HDF5 files ('{DATA}', '{LABELS}'){hint}")
    with _open_sample(files[0]) as handle:
        shape = _check_layout(files[0], handle, None)
        names = handle.attrs.get("channels")
    lo, hi = shard_range(len(files), rank, size)
    for path in files[lo:hi]:
        with _open_sample(path) as handle:
            _check_layout(path, handle, shape)
    channels = (tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
                if names is not None else DEEPCAM_CHANNELS[:shape[2]])
    stats_file = stats_path(folder)
    stats = read_stats(stats_file, shape[2]) if stats_file else None
    return DeepCAMFolder(folder, files, tuple(shape), stats, channels)


def write_sample(path: str | os.PathLike, data: np.ndarray, labels: np.ndarray,
                 channels: Sequence[str] = DEEPCAM_CHANNELS, **attrs) -> None:
    """One sample file in DeepCAM's layout, plus attributes: ``channels`` naming the fields and
    ``attrs`` (the generator's ``lat_range``/``lon_range``)."""
    with h5py.File(path, "w") as handle:
        handle.create_dataset(DATA, data=np.asarray(data, np.float32))
        handle.create_dataset(LABELS, data=np.asarray(labels, np.int32))
        handle.attrs["channels"] = list(channels)
        handle.attrs.update(attrs)


def write_stats(path: str | os.PathLike, count: int, mean: np.ndarray, sqmean: np.ndarray,
                minval: np.ndarray, maxval: np.ndarray) -> None:
    """``stats.h5`` in the reference's layout (per-channel arrays under ``climate/``)."""
    with h5py.File(path, "w") as handle:
        for key, value in zip(STATS_KEYS, (count, mean, sqmean, minval, maxval)):
            handle.create_dataset(f"climate/{key}", data=np.asarray(value, np.float64))


# ----------------------------------------------------------------------------------------------
# Synthetic DeepCAM folders: the climate generator's fields with its physics masks.


def _write_samples(job) -> list[tuple[int, np.ndarray]]:
    """Worker: write samples ``indices`` into ``folder``; returns each one's per-channel
    (mean, mean square, min, max) for ``stats.h5``."""
    from modelzoo.climate.generator import make_image

    seed, indices, grid, land, folder = job
    out = []
    for index in indices:
        labels = np.zeros((grid.height, grid.width), np.int32)
        fields, _ = make_image(seed, int(index), grid, land, DEEPCAM_CHANNELS, labels=labels)
        data = np.ascontiguousarray(np.transpose(fields, (1, 2, 0)))
        write_sample(os.path.join(folder, f"data-{int(index):06d}.h5"), data, labels,
                     lat_range=grid.lat_range, lon_range=grid.lon_range, seed=seed,
                     generator="modelzoo.climate.deepcam")
        flat = data.reshape(-1, data.shape[-1]).astype(np.float64)
        out.append((int(index), np.stack([flat.mean(0), (flat**2).mean(0), flat.min(0),
                                          flat.max(0)])))
    return out


def generate_deepcam(
    folder: str | os.PathLike,
    *,
    n_samples: int = 16,
    height: int = 768,
    width: int = 1152,
    lat_range: tuple[float, float] = (-90.0, 90.0),
    lon_range: tuple[float, float] = (0.0, 360.0),
    seed: int = 0,
    processes: int = 1,
    progress: bool = True,
) -> GeneratorReport:
    """Write ``n_samples`` synthetic snapshots as a DeepCAM folder: ``data-NNNNNN.h5`` files
    (``climate/data`` (H, W, 16) in :data:`DEEPCAM_CHANNELS` order, ``climate/labels_0``
    (H, W) from :mod:`modelzoo.climate.masks`) and ``stats.h5`` over them.

    The fields are those of :func:`modelzoo.climate.generator.make_image` (sample ``i`` depends
    only on ``(seed, i)``), on any grid up to DeepCAM's 768 x 1152 (the whole globe by default;
    a regional ``lat_range``/``lon_range`` keeps storms several pixels wide on small grids).
    Written through :func:`modelzoo.parallel.generated_folder`, so a failed run leaves no
    folder a reader accepts; returns what was written (``report.path``: the folder).
    """
    from modelzoo.climate.generator import Grid, land_mask

    if n_samples < 1 or height < 16 or width < 16:
        raise ConfigError(f"need n_samples >= 1 and a grid of at least 16 x 16, got {n_samples}, "
                          f"{height} x {width}")
    target = os.fspath(folder).rstrip(os.sep)
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
        raise ConfigError(f"{target}: exists and is not an empty folder; choose a new folder")
    grid = Grid(height, width, tuple(lat_range), tuple(lon_range))
    if not (-90 <= grid.lat_range[0] < grid.lat_range[1] <= 90 and grid.dlon > 0):
        raise ConfigError(f"bad domain: lat_range {lat_range}, lon_range {lon_range}")
    land = land_mask(grid)
    chunk = 2
    jobs = [(seed, range(i, min(i + chunk, n_samples)), grid, land, os.fspath(partial_path(target)))
            for i in range(0, n_samples, chunk)]
    moments = np.zeros((n_samples, 4, len(DEEPCAM_CHANNELS)))
    with generated_folder(target, _write_samples, jobs, processes=processes,
                          label="climate deepcam", noun="samples", total=n_samples,
                          progress=progress) as out:
        for result in out.results:
            for index, summary in result:
                moments[index] = summary
            out.advance(len(result))
        write_stats(out.folder / STATS_FILE, n_samples, moments[:, 0].mean(0),
                    moments[:, 1].mean(0), moments[:, 2].min(0), moments[:, 3].max(0))
    return out.report
