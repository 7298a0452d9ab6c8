"""Synthetic climate-model snapshots in the ExtremeWeather layout, with their event boxes.

Each image is a smooth large-scale state of the 16 published fields on a latitude-longitude grid
(the whole globe by default, as CAM5 output; or a regional window, which keeps storms several
pixels wide on small grids), with planted extreme-weather events and their boxes:

* **Tropical cyclones and depressions** (classes 1 and 0) from a parametric vortex: the
  Holland (1980) pressure profile p(r) = p_c + dp exp(-(R_max / r)^B) and its gradient wind,
  cyclonic (counter-clockwise in the north), with a warm core aloft (T500, T200, raised Z200),
  a moisture bulge (TMQ, QREFHT) and an eyewall rain ring (PRECT), 8-30 degrees from the
  equator. Depressions are weak (dp 5-12 hPa, winds under tropical-storm force).
* **Extratropical cyclones** (class 2) at 35-60 degrees: a broad Gaussian low with its
  geostrophic wind, a cold core aloft and a warm and a cold front bounding a warm, moist sector
  with rain bands along the fronts.
* **Atmospheric rivers** (class 3): long narrow filaments of water vapour (TMQ + 18-30 kg/m^2)
  carried poleward-eastward by a low-level jet from the subtropics, 2,500-5,000 km long and
  280-590 km wide at half maximum, with integrated vapour transport far above 250 kg/m/s: the
  usual AR criteria (length >= 2,000 km, length/width >= 2, IVT >= 250 kg/m/s; Ralph et al.
  2004, Guan and Waliser 2015).

Boxes follow the convention of :mod:`modelzoo.climate.boxes` (ymin, xmin, ymax, xmax, class in
pixels; rows along latitude, ascending from the south as in CAM5 files). Unlabelled images (a
chosen fraction) carry -1 rows only, like the unlabelled part of ExtremeWeather. The land mask
(``land_mask``, H x W; the same planet in every file) is written as an extra dataset; readers
ignore it unless a patch asks for ``LANDFRAC``. Image ``i`` depends only on ``(seed, i)``: any
number of processes writes the same file.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelzoo.climate.boxes import CLASS_NAMES, MAX_BOXES
from modelzoo.climate.masks import (
    ATMOSPHERIC_RIVER,
    TROPICAL_CYCLONE,
    cyclone_mask,
    river_mask,
)
from modelzoo.climate.reader import CHANNELS
from modelzoo.errors import ConfigError
from modelzoo.parallel import GeneratorReport, generated_file, generator_arguments

EARTH_OMEGA = 7.292e-5  # rad/s
KM_PER_DEGREE = 111.2
AIR_DENSITY = 1.15  # kg/m^3, boundary layer
GRAVITY = 9.81


@dataclass(frozen=True)
class Grid:
    """A regular latitude-longitude grid; row ``i`` is at ``lat[i]`` (ascending)."""

    height: int
    width: int
    lat_range: tuple[float, float] = (-90.0, 90.0)
    lon_range: tuple[float, float] = (0.0, 360.0)

    @property
    def dlat(self) -> float:
        return (self.lat_range[1] - self.lat_range[0]) / self.height

    @property
    def dlon(self) -> float:
        return (self.lon_range[1] - self.lon_range[0]) / self.width

    @property
    def lat(self) -> np.ndarray:
        return self.lat_range[0] + (np.arange(self.height) + 0.5) * self.dlat

    @property
    def lon(self) -> np.ndarray:
        return self.lon_range[0] + (np.arange(self.width) + 0.5) * self.dlon

    def offsets_km(self, lat0: float, lon0: float) -> tuple[np.ndarray, np.ndarray]:
        """(north, east) distances in km of every pixel from (lat0, lon0), local tangent plane."""
        dlon = (self.lon[None, :] - lon0 + 180.0) % 360.0 - 180.0
        north = (self.lat[:, None] - lat0) * KM_PER_DEGREE + 0 * dlon
        east = dlon * KM_PER_DEGREE * np.cos(np.radians(self.lat[:, None]))
        return north, east

    def box(self, lat0: float, lon0: float, half_north_km: float, half_east_km: float,
            cls: int) -> tuple[int, int, int, int, int] | None:
        """Integer pixel box around (lat0, lon0), clipped to the image; None when less than
        half of it lies inside."""
        cy = (lat0 - self.lat_range[0]) / self.dlat
        cx = (lon0 - self.lon_range[0]) / self.dlon
        hy = half_north_km / KM_PER_DEGREE / self.dlat
        hx = half_east_km / (KM_PER_DEGREE * np.cos(np.radians(lat0))) / self.dlon
        return self.clip_box(cy - hy, cx - hx, cy + hy, cx + hx, cls)

    def clip_box(self, ymin: float, xmin: float, ymax: float, xmax: float,
                 cls: int) -> tuple[int, int, int, int, int] | None:
        full = (ymax - ymin) * (xmax - xmin)
        y0, x0 = max(0, int(np.floor(ymin))), max(0, int(np.floor(xmin)))
        y1, x1 = min(self.height, int(np.ceil(ymax))), min(self.width, int(np.ceil(xmax)))
        if y1 <= y0 or x1 <= x0 or (y1 - y0) * (x1 - x0) < 0.5 * full:
            return None
        return y0, x0, y1, x1, cls


def smooth_noise(rng: np.random.Generator, grid: Grid, modes: int = 12,
                 max_wavenumber: int = 5) -> np.ndarray:
    """A smooth random field of unit standard deviation: a few large-scale waves in longitude
    and latitude with red (1/k) amplitudes."""
    lat, lon = np.radians(grid.lat)[:, None], np.radians(grid.lon)[None, :]
    field = np.zeros((grid.height, grid.width))
    for _ in range(modes):
        k, m = rng.integers(1, max_wavenumber + 1, size=2)
        phase = rng.uniform(0, 2 * np.pi, size=2)
        field += np.cos(k * lon + phase[0]) * np.cos(2 * m * lat + phase[1]) / np.hypot(k, m)
    return field / (field.std() + 1e-12)


def land_mask(grid: Grid) -> np.ndarray:
    """The synthetic planet's land/sea mask on ``grid`` (about 30% land), 1 on land: the same in
    every file, as the Earth's is (a classifier given the mask, as Liu et al.'s atmospheric-river
    network is, may learn where land lies)."""
    noise = smooth_noise(np.random.default_rng(2**31 - 1), grid, modes=20, max_wavenumber=4)
    return (noise > np.quantile(noise, 0.7)).astype(np.float32)


def saturation_humidity(temperature: np.ndarray, pressure: np.ndarray) -> np.ndarray:
    """Saturation specific humidity (kg/kg) from Bolton's (1980) vapour pressure."""
    es = 611.2 * np.exp(17.67 * (temperature - 273.15) / (temperature - 29.65))
    return 0.622 * es / (pressure - 0.378 * es)


def background(rng: np.random.Generator, grid: Grid, land: np.ndarray) -> dict[str, np.ndarray]:
    """The smooth large-scale state: zonal-mean climatology plus large random waves."""
    lat = grid.lat[:, None] + np.zeros((1, grid.width))
    s2 = np.sin(np.radians(lat)) ** 2
    alat = np.abs(lat)
    f = {}
    f["TS"] = 301.0 - 48.0 * s2 + 2.5 * smooth_noise(rng, grid) - 3.0 * land
    f["TREFHT"] = f["TS"] - 1.2 + 0.5 * smooth_noise(rng, grid)
    f["T500"] = f["TS"] - 33.0 - 6.0 * s2 + 1.5 * smooth_noise(rng, grid)
    f["T200"] = 214.0 + 8.0 * s2 + 2.0 * smooth_noise(rng, grid)
    f["PSL"] = (101300.0 + 900.0 * np.exp(-(((alat - 32.0) / 11.0) ** 2))
                - 1300.0 * np.exp(-(((alat - 62.0) / 10.0) ** 2))
                + 500.0 * smooth_noise(rng, grid))
    topography = land * 700.0 * (1.0 + 0.8 * smooth_noise(rng, grid)).clip(0.1, None)  # m
    f["PS"] = f["PSL"] * np.exp(-topography / 8400.0)
    humidity = 0.78 + 0.05 * smooth_noise(rng, grid) - 0.15 * land
    f["QREFHT"] = humidity * saturation_humidity(f["TREFHT"], f["PS"])
    # Precipitable water: vapour scale height ~2 km against the 8 km pressure scale height.
    f["TMQ"] = f["QREFHT"] * f["PS"] / GRAVITY * 0.24
    f["U850"] = (22.0 * np.exp(-(((alat - 45.0) / 12.0) ** 2))
                 - 7.0 * np.exp(-((lat / 14.0) ** 2)) + 3.0 * smooth_noise(rng, grid))
    f["UBOT"] = 0.55 * f["U850"] + 1.0 * smooth_noise(rng, grid)
    f["V850"] = 3.0 * smooth_noise(rng, grid)
    f["VBOT"] = 0.6 * f["V850"] + 0.8 * smooth_noise(rng, grid)
    # Convective rain where the column is moist (ITCZ), large-scale rain in the storm tracks.
    f["PRECT"] = (1.2e-7 * np.clip((f["TMQ"] - 35.0) / 15.0, 0, None) ** 1.5
                  + 2e-8 * np.exp(-(((alat - 50.0) / 10.0) ** 2))
                  * (1 + 0.5 * smooth_noise(rng, grid)).clip(0, None))
    # Heights: hypsometric thicknesses over the lower and upper troposphere.
    f["ZBOT"] = 62.0 + 0.1 * (f["TREFHT"] - 280.0) + 0.0 * lat
    f["Z200"] = 11820.0 + 21.0 * (f["T500"] - 255.0) + 0.08 * (f["PSL"] - 101300.0)
    f["Z100"] = 16250.0 + 28.0 * (f["T500"] - 255.0) + 6.0 * (f["T200"] - 218.0)
    return f


def _rotate(fields: dict[str, np.ndarray], north: np.ndarray, east: np.ndarray,
            speed: np.ndarray, hemisphere: float, surface: float) -> None:
    """Add a cyclonic circulation of tangential ``speed`` (counter-clockwise in the north)."""
    r = np.hypot(north, east) + 1e-6
    u, v = -hemisphere * speed * north / r, hemisphere * speed * east / r
    fields["U850"] += u
    fields["V850"] += v
    fields["UBOT"] += surface * u
    fields["VBOT"] += surface * v


def tropical_cyclone(rng: np.random.Generator, grid: Grid, fields: dict[str, np.ndarray],
                     lat0: float, lon0: float, depression: bool = False,
                     labels: np.ndarray | None = None):
    """Plant a Holland-profile vortex at (lat0, lon0); returns its box (class 0 or 1).
    ``labels`` (H, W): a cyclone (not a depression) marks its gale-force extent there
    (:func:`modelzoo.climate.masks.cyclone_mask`)."""
    dp = rng.uniform(500.0, 1200.0) if depression else rng.uniform(2000.0, 7000.0)  # Pa
    rmax = rng.uniform(60.0, 110.0) if depression else rng.uniform(30.0, 70.0)  # km
    b = rng.uniform(1.2, 1.8)
    north, east = grid.offsets_km(lat0, lon0)
    r = np.sqrt(north**2 + east**2 + (0.2 * rmax) ** 2)  # km, softened at the eye
    x = (rmax / r) ** b
    deficit = dp * (1.0 - np.exp(-x))  # p_env - p(r), p(r) = p_c + dp exp(-(R/r)^B)
    coriolis = 2 * EARTH_OMEGA * np.sin(np.radians(abs(lat0)))
    rf = r * 1e3 * coriolis / 2
    wind = np.sqrt(b * dp / AIR_DENSITY * x * np.exp(-x) + rf**2) - rf  # gradient wind, m/s
    fields["PSL"] -= deficit
    fields["PS"] -= deficit
    _rotate(fields, north, east, wind, np.sign(lat0), surface=0.85)
    if labels is not None and not depression:
        labels[cyclone_mask(wind)] = TROPICAL_CYCLONE
    strength = dp / 5000.0
    core = np.exp(-((r / (4 * rmax)) ** 2))
    fields["T500"] += 4.0 * strength**0.7 * core
    fields["T200"] += 5.0 * strength**0.7 * np.exp(-((r / (5 * rmax)) ** 2))
    fields["Z200"] += 60.0 * strength**0.7 * core
    fields["ZBOT"] -= 0.4 * deficit / 100.0
    bulge = np.exp(-((r / (6 * rmax)) ** 2))
    fields["TMQ"] += 22.0 * np.sqrt(strength) * bulge
    fields["QREFHT"] += 0.004 * np.sqrt(strength) * bulge
    fields["TREFHT"] -= 1.0 * strength * core
    fields["PRECT"] += 2.5e-6 * strength * np.exp(-(((r - 1.5 * rmax) / (2 * rmax)) ** 2))
    half = 6.0 * rmax
    return grid.box(lat0, lon0, half, half, 0 if depression else 1)


def _sector(north: np.ndarray, east: np.ndarray, start: float, stop: float,
            width_km: float) -> np.ndarray:
    """Smooth indicator of the sector swept counter-clockwise from angle ``start`` to ``stop``
    (radians from east, less than pi apart), edges ``width_km`` wide."""
    cross_start = np.cos(start) * north - np.sin(start) * east
    cross_stop = np.cos(stop) * north - np.sin(stop) * east
    return 1 / (1 + np.exp(-cross_start / width_km)) / (1 + np.exp(cross_stop / width_km))


def _ray_distance(north: np.ndarray, east: np.ndarray, angle: float,
                  length: float) -> np.ndarray:
    """Distance (km) of every pixel from the segment leaving the centre at ``angle``."""
    along = (np.cos(angle) * east + np.sin(angle) * north).clip(0, length)
    return np.hypot(east - along * np.cos(angle), north - along * np.sin(angle))


def extratropical_cyclone(rng: np.random.Generator, grid: Grid, fields: dict[str, np.ndarray],
                          lat0: float, lon0: float):
    """Plant a mid-latitude low with a warm and a cold front; returns its box (class 2)."""
    dp = rng.uniform(1500.0, 4000.0)
    radius = rng.uniform(400.0, 700.0)  # km, Gaussian scale of the low
    north, east = grid.offsets_km(lat0, lon0)
    r2 = north**2 + east**2
    low = np.exp(-r2 / (2 * radius**2))
    fields["PSL"] -= dp * low
    fields["PS"] -= dp * low
    coriolis = 2 * EARTH_OMEGA * np.sin(np.radians(abs(lat0)))
    gradient = dp * np.sqrt(r2) * 1e3 / (radius * 1e3) ** 2 * low  # Pa/m
    _rotate(fields, north, east, np.minimum(gradient / (AIR_DENSITY * coriolis), 40.0),
            np.sign(lat0), surface=0.6)
    fields["T500"] -= 5.0 * dp / 3000.0 * np.exp(-r2 / (2 * (1.2 * radius) ** 2))
    fields["ZBOT"] -= 0.4 * dp * low / 100.0
    # Fronts: the warm front leaves the low eastward, the cold front equatorward; the warm
    # sector between them (mirrored in the south).
    warm = np.radians(rng.uniform(-30.0, 0.0))
    cold = np.radians(rng.uniform(-120.0, -90.0))
    if lat0 < 0:
        warm, cold = -warm, -cold
    start, stop = (cold, warm) if lat0 >= 0 else (warm, cold)
    envelope = np.exp(-r2 / (2 * (1.6 * radius) ** 2))
    sector = _sector(north, east, start, stop, 80.0) * envelope
    contrast = rng.uniform(5.0, 9.0)  # K across the fronts
    anomaly = contrast * (sector - 0.4 * envelope)
    fields["TREFHT"] += anomaly
    fields["TS"] += 0.6 * anomaly
    fields["T500"] += 0.4 * anomaly
    fields["TMQ"] += 8.0 * sector
    fields["QREFHT"] += 0.003 * sector
    length = 2.1 * radius
    rain = sum(np.exp(-(_ray_distance(north, east, a, length) ** 2) / (2 * 70.0**2))
               for a in (warm, cold))
    fields["PRECT"] += 1.2e-6 * rain * envelope + 6e-7 * np.exp(-r2 / (2 * (0.5 * radius) ** 2))
    half = 2.2 * radius
    return grid.box(lat0, lon0, half, half, 2)


def atmospheric_river(rng: np.random.Generator, grid: Grid, fields: dict[str, np.ndarray],
                      lat0: float, lon0: float, labels: np.ndarray | None = None):
    """Plant a water-vapour filament starting in the subtropics at (lat0, lon0) and running
    poleward-eastward; returns (box (class 3), diagnostics: length_km, width_km (full width at
    half maximum), core_ivt (kg/m/s, TMQ x |V850| at the filament's axis)). ``labels`` (H, W):
    marks its extent there (:func:`modelzoo.climate.masks.river_mask`)."""
    length = rng.uniform(2500.0, 5000.0)
    sigma = rng.uniform(120.0, 250.0)  # km
    heading = np.radians(rng.uniform(25.0, 55.0))  # from east, toward the pole
    bend = np.radians(rng.uniform(-10.0, 15.0)) / 1000.0  # per km
    amplitude, jet = rng.uniform(18.0, 30.0), rng.uniform(12.0, 22.0)
    hemisphere = np.sign(lat0) or 1.0
    s = np.linspace(0.0, length, 80)
    angle = heading + bend * s
    step = s[1] - s[0]
    path_east = np.r_[0.0, np.cumsum(np.cos(angle[:-1]) * step)]
    path_north = hemisphere * np.r_[0.0, np.cumsum(np.sin(angle[:-1]) * step)]
    north, east = grid.offsets_km(lat0, lon0)
    # Distance of every pixel to the path: nearest of the sampled axis points.
    d2 = np.full(north.shape, np.inf)
    nearest = np.zeros(north.shape, int)
    for k in range(len(s)):
        dk = (north - path_north[k]) ** 2 + (east - path_east[k]) ** 2
        closer = dk < d2
        d2[closer], nearest[closer] = dk[closer], k
    taper = np.minimum(1.0, np.minimum(s, length - s) / 400.0).clip(0, 1) ** 0.5
    profile = np.exp(-d2 / (2 * sigma**2)) * taper[nearest]
    direction_east = np.cos(angle)[nearest]
    direction_north = hemisphere * np.sin(angle)[nearest]
    fields["TMQ"] += amplitude * profile
    fields["QREFHT"] += 0.005 * profile
    fields["U850"] += jet * profile * direction_east
    fields["V850"] += jet * profile * direction_north
    fields["UBOT"] += 0.6 * jet * profile * direction_east
    fields["VBOT"] += 0.6 * jet * profile * direction_north
    fields["PRECT"] += 4e-7 * profile
    inside = profile > 0.1
    box = None
    if inside.any():
        rows, cols = np.nonzero(inside)
        box = grid.clip_box(rows.min(), cols.min(), rows.max() + 1, cols.max() + 1, 3)
    axis = profile >= 0.9 * profile.max()
    speed = np.hypot(fields["U850"], fields["V850"])
    if labels is not None:
        labels[river_mask(profile, fields["TMQ"] * speed)] = ATMOSPHERIC_RIVER
    diagnostics = {"length_km": float(length), "width_km": float(2.355 * sigma),
                   "core_ivt": float(np.median((fields["TMQ"] * speed)[axis]))}
    return box, diagnostics


# Latitude bands (absolute degrees) where each event type is planted.
_BANDS = {"tc": (8.0, 30.0), "td": (8.0, 30.0), "etc": (35.0, 60.0), "ar": (18.0, 28.0)}
_RADIUS_KM = {"tc": 420.0, "td": 660.0, "etc": 1540.0, "ar": 1500.0}


def _place(rng: np.random.Generator, grid: Grid, kind: str,
           taken: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """A centre for an event of ``kind`` inside the grid and clear of the events ``taken``."""
    lo, hi = _BANDS[kind]
    lat_lo, lat_hi = grid.lat_range
    bands = [(max(lo, lat_lo), min(hi, lat_hi)), (max(-hi, lat_lo), min(-lo, lat_hi))]
    bands = [b for b in bands if b[1] > b[0]]
    if not bands:
        return None
    for _ in range(30):
        band = bands[rng.integers(len(bands))]
        lat0, lon0 = rng.uniform(*band), rng.uniform(*grid.lon_range)
        clear = all(
            np.hypot((lat0 - la) * KM_PER_DEGREE,
                     ((lon0 - lo_ + 180) % 360 - 180) * KM_PER_DEGREE
                     * np.cos(np.radians(lat0))) > 0.8 * (_RADIUS_KM[kind] + ra)
            for la, lo_, ra in taken
        )
        if clear:
            taken.append((lat0, lon0, _RADIUS_KM[kind]))
            return lat0, lon0
    return None


def make_image(seed: int, index: int, grid: Grid, land: np.ndarray,
               channels: tuple[str, ...] = CHANNELS,
               labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image ``index`` of a file: fields (C, H, W) float32 and boxes (15, 5) int32 (-1 padded);
    with ``labels`` (H, W), its pixel masks in DeepCAM's classes (:mod:`modelzoo.climate.masks`).
    """
    rng = np.random.default_rng([seed, index])
    fields = background(rng, grid, land)
    counts = {"tc": rng.integers(0, 3), "td": rng.integers(0, 2), "etc": rng.integers(1, 3),
              "ar": rng.integers(0, 3)}
    taken: list[tuple[float, float, float]] = []
    boxes = []
    for kind in ("etc", "ar", "tc", "td"):
        for _ in range(counts[kind]):
            where = _place(rng, grid, kind, taken)
            if where is None:
                continue
            if kind == "tc":
                box = tropical_cyclone(rng, grid, fields, *where, labels=labels)
            elif kind == "td":
                box = tropical_cyclone(rng, grid, fields, *where, depression=True)
            elif kind == "etc":
                box = extratropical_cyclone(rng, grid, fields, *where)
            else:
                box, _ = atmospheric_river(rng, grid, fields, *where, labels=labels)
            if box is not None:
                boxes.append(box)
    fields["PRECT"] = np.clip(fields["PRECT"], 0.0, None)
    table = np.full((MAX_BOXES, 5), -1, np.int32)
    table[: len(boxes)] = np.asarray(boxes[:MAX_BOXES], np.int32).reshape(-1, 5)
    return np.stack([fields[c] for c in channels]).astype(np.float32), table


def _make_chunk(job):
    seed, indices, grid, land, labelled = job
    results = []
    for index, keep_boxes in zip(indices, labelled):
        image, boxes = make_image(seed, index, grid, land)
        results.append((image, boxes if keep_boxes else np.full_like(boxes, -1)))
    return results


def generate_extreme_weather(
    path: str | os.PathLike,
    *,
    n_images: int = 64,
    height: int = 96,
    width: int = 144,
    lat_range: tuple[float, float] = (-90.0, 90.0),
    lon_range: tuple[float, float] = (0.0, 360.0),
    labelled_fraction: float = 1.0,
    drop_unlabelled: bool = False,
    seed: int = 0,
    processes: int = 1,
    progress: bool = True,
) -> GeneratorReport:
    """Write ``n_images`` synthetic snapshots in the ExtremeWeather layout to ``path``.

    Args:
        height, width: grid size (the published one is 768 x 1152, the whole globe).
        lat_range, lon_range: the grid's domain in degrees (default: the globe).
        labelled_fraction: fraction of images that keep their boxes; the others are written
            with -1 rows only (unlabelled). Which ones is fixed by ``seed``.
        drop_unlabelled: write only the labelled images (the same images, with the same boxes,
            as the labelled rows of the file written with the same arguments otherwise): the
            training set of a supervised-only comparison.
        processes: worker processes; the file is the same for any number.
    """
    arguments = generator_arguments(locals())
    if n_images < 1 or height < 8 or width < 8:
        raise ConfigError(f"need n_images >= 1 and a grid of at least 8 x 8, got {n_images}, "
                          f"{height} x {width}")
    if not 0.0 <= labelled_fraction <= 1.0:
        raise ConfigError(f"labelled_fraction must be in [0, 1], got {labelled_fraction}")
    grid = Grid(height, width, tuple(lat_range), tuple(lon_range))
    if not (-90 <= grid.lat_range[0] < grid.lat_range[1] <= 90 and grid.dlon > 0):
        raise ConfigError(f"bad domain: lat_range {lat_range}, lon_range {lon_range}")
    land = land_mask(grid)
    chosen = np.zeros(n_images, bool)
    chosen[np.random.default_rng([seed, 1]).permutation(n_images)[
        : int(round(labelled_fraction * n_images))]] = True
    indices = np.flatnonzero(chosen) if drop_unlabelled else np.arange(n_images)
    if len(indices) == 0:
        raise ConfigError("drop_unlabelled with labelled_fraction 0 leaves no images")
    chunk = 4
    jobs = [(seed, indices[i:i + chunk], grid, land, chosen[indices[i:i + chunk]])
            for i in range(0, len(indices), chunk)]
    with generated_file(path, _make_chunk, jobs, processes=processes, ordered=True,
                        label="climate", noun="images", total=len(indices),
                        progress=progress,
                        arguments=arguments) as out:
        handle = out.file
        # Uncompressed: simulated float fields compress only 1.5x, and decompressing them
        # (gzip) limited the reader to ~750 images/s per core at 64 x 96 x 16, below
        # what training takes; uncompressed they read at ~4,800/s (benchmarks/README.md).
        images = handle.create_dataset(
            "images", (len(indices), len(CHANNELS), height, width), "f4",
            chunks=(1, 1, height, width))
        boxes = handle.create_dataset("boxes", (len(indices), MAX_BOXES, 5), "i4")
        for result in out.results:
            for image, table in result:
                images[out.done], boxes[out.done] = image, table
                out.advance(1)
        handle.create_dataset("land_mask", data=land)
        handle.attrs.update(
            generator="modelzoo.climate.generator", seed=seed, channels=list(CHANNELS),
            class_names=list(CLASS_NAMES), box_order="ymin_xmin_ymax_xmax",
            lat_range=grid.lat_range, lon_range=grid.lon_range,
            image_axes="(channel, latitude ascending, longitude)",
            labelled_fraction=labelled_fraction, drop_unlabelled=drop_unlabelled,
            source_indices=indices,
            references="Racah et al. 2017 arXiv:1612.02095; Holland 1980 MWR 108:1212",
        )
    return out.report


def generate_climate(path: str | os.PathLike, *, kind: str = "images", progress: bool = False,
                     event: str = "tropical_cyclone", patch_size: tuple[int, int] | None = None,
                     patch_channels: tuple[str, ...] | None = None,
                     negatives_per_event: float = 1.0,
                     **image_args) -> GeneratorReport:
    """The case's data for pretrained recipes: ``kind="images"`` writes the ExtremeWeather
    layout (:func:`generate_extreme_weather` with ``image_args``); ``kind="deepcam"`` a DeepCAM
    folder with masks (:func:`modelzoo.climate.deepcam.generate_deepcam`); ``kind="patches"`` writes
    those images next to ``path`` and then the patch file of ``event`` extracted from them."""
    from modelzoo.climate.patches import extract_patches

    if kind == "images":
        return generate_extreme_weather(path, progress=progress, **image_args)
    if kind == "deepcam":
        from modelzoo.climate.deepcam import generate_deepcam

        return generate_deepcam(path, progress=progress, **image_args)
    if kind != "patches":
        raise ConfigError(f"kind must be 'images', 'deepcam' or 'patches', got {kind!r}")
    images = Path(f"{path}.images.h5")
    generate_extreme_weather(images, progress=progress, **image_args)
    try:
        return extract_patches(images, path, event=event, patch_size=patch_size,
                               channels=patch_channels, negatives_per_event=negatives_per_event,
                               seed=int(image_args.get("seed", 0)), progress=progress)
    finally:
        images.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# Command line: modelzoo data climate {images,deepcam,patches,netcdf} ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``modelzoo data climate``."""
    from modelzoo.climate.patches import EVENT_TYPES

    sub = parser.add_subparsers(dest="climate_command", required=True)
    p = sub.add_parser("images", help="synthetic snapshots in the ExtremeWeather layout")
    p.add_argument("--output", required=True, help="HDF5 file to write")
    p.add_argument("--images", type=int, default=64, help="number of snapshots")
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=144)
    p.add_argument("--lat-range", type=float, nargs=2, default=(-90.0, 90.0))
    p.add_argument("--lon-range", type=float, nargs=2, default=(0.0, 360.0))
    p.add_argument("--labelled-fraction", type=float, default=1.0)
    p.add_argument("--drop-unlabelled", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--processes", type=int, default=1)
    p = sub.add_parser("deepcam", help="synthetic snapshots with pixel masks as a DeepCAM "
                       "folder (data-*.h5 + stats.h5), for climate_segmenter")
    p.add_argument("--output", required=True, help="folder to write (new or empty)")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--height", type=int, default=768)
    p.add_argument("--width", type=int, default=1152)
    p.add_argument("--lat-range", type=float, nargs=2, default=(-90.0, 90.0))
    p.add_argument("--lon-range", type=float, nargs=2, default=(0.0, 360.0))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--processes", type=int, default=1)
    p = sub.add_parser("patches", help="centred event patches (and no-event patches) from an "
                       "ExtremeWeather file, for climate_patch_cnn")
    p.add_argument("--input", required=True, help="ExtremeWeather HDF5 file to cut from")
    p.add_argument("--output", required=True)
    p.add_argument("--event", choices=sorted(EVENT_TYPES), default="tropical_cyclone")
    p.add_argument("--patch-size", type=int, nargs=2, help="default: the event's (Liu 2016)")
    p.add_argument("--patch-channels", nargs="+", help="default: the event's (Liu 2016)")
    p.add_argument("--negatives-per-event", type=float, default=1.0)
    p.add_argument("--box-order", default="ymin_xmin_ymax_xmax")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("netcdf", help="CF-convention netCDF climate model output -> the "
                       "ExtremeWeather layout (unlabelled)")
    p.add_argument("--input", required=True, nargs="+", help="netCDF file(s), one time axis")
    p.add_argument("--output", required=True)


def run(args: argparse.Namespace) -> None:
    """``modelzoo data climate ...``"""
    if args.climate_command == "images":
        generate_extreme_weather(
            args.output, n_images=args.images, height=args.height, width=args.width,
            lat_range=tuple(args.lat_range), lon_range=tuple(args.lon_range),
            labelled_fraction=args.labelled_fraction, drop_unlabelled=args.drop_unlabelled,
            seed=args.seed, processes=args.processes)
    elif args.climate_command == "deepcam":
        from modelzoo.climate.deepcam import generate_deepcam

        generate_deepcam(args.output, n_samples=args.samples, height=args.height,
                         width=args.width, lat_range=tuple(args.lat_range),
                         lon_range=tuple(args.lon_range), seed=args.seed,
                         processes=args.processes)
    elif args.climate_command == "patches":
        from modelzoo.climate.patches import extract_patches

        extract_patches(args.input, args.output, event=args.event,
                        patch_size=tuple(args.patch_size) if args.patch_size else None,
                        channels=tuple(args.patch_channels) if args.patch_channels else None,
                        negatives_per_event=args.negatives_per_event, box_order=args.box_order,
                        seed=args.seed)
    else:
        from modelzoo.climate.netcdf import netcdf_to_extreme_weather

        netcdf_to_extreme_weather(args.input, args.output)
