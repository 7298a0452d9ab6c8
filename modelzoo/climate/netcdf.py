"""Climate model output (CAM5, reanalysis) as CF-convention netCDF, read with xarray.

Variables are found by name (CAM5's names: ``PRECT``, ``PSL``, ``TMQ``, ...; ``Z1000`` is
accepted for the dataset page's ``Z100``), on ``(time, lat, lon)`` or ``(lat, lon)``
dimensions (``latitude``/``longitude`` also); a descending latitude axis (as in ERA5) is turned
ascending so that rows run south to north as in CAM5 and ExtremeWeather files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from modelzoo.climate.boxes import MAX_BOXES
from modelzoo.climate.reader import CHANNELS
from modelzoo.errors import DataError
from modelzoo.parallel import GeneratorReport, generated_file

_ALIASES = {"Z100": ("Z100", "Z1000")}
_LAT, _LON = ("lat", "latitude"), ("lon", "longitude")


def _dimension(path: str, names: tuple[str, ...], dims: tuple[str, ...], variable: str) -> str:
    for name in names:
        if name in dims:
            return name
    raise DataError(f"{path}: variable '{variable}' has dimensions {dims}; expected one named "
                    f"{' or '.join(names)}")


def read_fields(path: str | os.PathLike,
                variables: Sequence[str] = CHANNELS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fields (T, C, H, W) float32 in the order of ``variables``, latitudes ascending (H,),
    longitudes (W,)) from one netCDF file."""
    import xarray as xr

    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    try:
        data = xr.open_dataset(path, decode_times=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot be opened as netCDF ({err})") from None
    with data:
        arrays, grid = [], None
        for name in variables:
            found = [n for n in _ALIASES.get(name, (name,)) if n in data.variables]
            if not found:
                raise DataError(f"{path}: missing variable '{name}'; expected a (time, lat, lon) "
                                f"field (the file has {', '.join(sorted(data.data_vars))})")
            var = data[found[0]]
            lat = _dimension(path, _LAT, var.dims, found[0])
            lon = _dimension(path, _LON, var.dims, found[0])
            extra = [d for d in var.dims if d not in (lat, lon)]
            if len(extra) > 1:
                raise DataError(f"{path}: variable '{found[0]}' has dimensions {var.dims}; "
                                "expected (time, lat, lon) or (lat, lon)")
            var = var.transpose(*extra, lat, lon)
            if var[lat].values[0] > var[lat].values[-1]:
                var = var.isel({lat: slice(None, None, -1)})
            values = np.asarray(var.values, np.float32)
            values = values if extra else values[None]
            coords = (np.asarray(var[lat].values), np.asarray(var[lon].values))
            if grid is not None and (values.shape[0] != arrays[0].shape[0]
                                     or coords[0].shape != grid[0].shape
                                     or coords[1].shape != grid[1].shape):
                raise DataError(f"{path}: variable '{found[0]}' has shape {values.shape}, "
                                f"expected {arrays[0].shape} like '{variables[0]}'")
            if not np.isfinite(values).all():
                raise DataError(f"{path}: variable '{found[0]}' has NaN or missing values; "
                                "expected finite fields")
            grid = grid or coords
            arrays.append(values)
    return np.stack(arrays, axis=1), grid[0], grid[1]


def netcdf_to_extreme_weather(inputs: Sequence[str | os.PathLike] | str,
                              output: str | os.PathLike, *,
                              progress: bool = True) -> GeneratorReport:
    """Write netCDF file(s) as one ExtremeWeather file: ``images`` (T, 16, H, W) in the published
    channel order and ``boxes`` all -1 (unlabelled: the detector's reconstruction learns from
    them, and it can predict their boxes)."""
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    with generated_file(output, label="climate", noun="snapshots", total=0,
                        progress=progress) as out:
        handle = out.file
        images = None
        for path in paths:
            fields, lat, lon = read_fields(path)
            if images is None:
                images = handle.create_dataset(
                    "images", (0, *fields.shape[1:]), "f4", maxshape=(None, *fields.shape[1:]),
                    chunks=(1, 1, *fields.shape[2:]))  # uncompressed: see generator.py
                handle.attrs.update(channels=list(CHANNELS), lat=lat, lon=lon)
            elif fields.shape[1:] != images.shape[1:]:
                raise DataError(f"{os.fspath(path)}: fields of shape {fields.shape[1:]}, "
                                f"expected {images.shape[1:]} like {os.fspath(paths[0])}")
            start = images.shape[0]
            images.resize(start + len(fields), axis=0)
            images[start:] = fields
            out.total += len(fields)
            out.advance(len(fields))
        handle.create_dataset("boxes", data=np.full((images.shape[0], MAX_BOXES, 5), -1, "i4"))
    return out.report
