"""Reader for weak-lensing convergence (mass) maps in HDF5.

Layout (the one ``modelzoo data cosmology`` writes; the NERSC maps were never published, and
this follows what simulation suites ship: one map per row, its cosmology alongside):

* ``kappa``: (N, H, W) or (N, H, W, 1) float convergence maps;
* ``kappa_clean`` (optional, shaped as ``kappa``): the same maps without noise, which a
  denoiser is scored against;
* ``label``: (N,) or (N, 1) class index of the cosmology (int, unsigned, bool, or float holding
  whole numbers 0, 1, ...); needed to classify;
* ``omega_m``, ``sigma_8``: (N,) or (N, 1) float parameters per map; needed for regression;
* root attribute ``pixel_arcmin`` (float): the pixel side, needed for the power spectrum.

Other datasets and attributes are ignored. Every problem raises one
:class:`~modelzoo.errors.DataError` naming the file, the dataset and what was expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from modelzoo.hdf5 import DataError, Field, H5Source

PARAMETERS = ("omega_m", "sigma_8")


def _shapes(path: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """(shape, dtype kind) of every top-level dataset, refusing what is not HDF5."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as handle:
            return {k: (v.shape, v.dtype.kind) for k, v in handle.items()
                    if isinstance(v, h5py.Dataset)}
    except OSError as err:
        raise DataError(f"{path}: cannot be opened as HDF5 ({err}); the file may be truncated "
                        "or not an HDF5 file") from None


def _column(name: str, found: tuple[tuple[int, ...], str] | None, required: bool) -> Field:
    """A per-map column stored as (N,) or (N, 1), integer/boolean or float."""
    trailing = (1,) if found is not None and len(found[0]) == 2 else ()
    kind = "int" if found is not None and found[1] in "iub" else "float"
    return Field(name, name, trailing, kind, required=required)


@dataclass
class MassMaps:
    """A validated map file. ``images`` gives network inputs, ``columns`` the per-map values."""

    source: H5Source
    pixel_arcmin: float | None

    @property
    def num_maps(self) -> int:
        return self.source.num_rows

    @property
    def map_shape(self) -> tuple[int, int]:
        return tuple(self.source._file()["kappa"].shape[1:3])

    @property
    def has_labels(self) -> bool:
        return "label" in self.source.fields

    @property
    def has_clean(self) -> bool:
        return "kappa_clean" in self.source.fields

    def clean_maps(self, block: dict[str, np.ndarray]) -> np.ndarray:
        """(n, H, W, 1) noiseless maps as stored (the noisy ones where the file has none)."""
        return self.maps({"kappa": block.get("kappa_clean", block["kappa"])})

    @property
    def has_parameters(self) -> bool:
        return all(p in self.source.fields for p in PARAMETERS)

    def maps(self, block: dict[str, np.ndarray]) -> np.ndarray:
        """(n, H, W, 1) float32 network inputs: the convergence as stored (the networks scale it
        themselves)."""
        kappa = block["kappa"]
        kappa = kappa[..., None] if kappa.ndim == 3 else kappa
        return kappa.astype(np.float32)

    def columns(self, rows: tuple[int, int], keys: tuple[str, ...],
                block_rows: int = 8192) -> dict[str, np.ndarray]:
        """Per-map ``keys`` (``label``, ``omega_m``, ``sigma_8``) of ``rows`` as flat arrays."""
        parts = [self.source.read(s, min(s + block_rows, rows[1]), keys)
                 for s in range(rows[0], rows[1], block_rows)]
        return {k: np.concatenate([p[k] for p in parts]).reshape(-1) for k in keys}

    def read_maps(self, rows: tuple[int, int]) -> np.ndarray:
        """The raw convergence of ``rows`` as (n, H, W) float64 (for the summary statistics)."""
        kappa = self.source.read(rows[0], rows[1], ("kappa",))["kappa"]
        return np.asarray(kappa.reshape(kappa.shape[:3]), np.float64)

    def require_pixel_scale(self) -> float:
        if self.pixel_arcmin is None:
            raise DataError(f"{self.source.path}: attribute 'pixel_arcmin' missing at the root; "
                            "expected the pixel side in arcmin (or set data.pixel_arcmin)")
        return self.pixel_arcmin


def open_mass_maps(
    path: str | os.PathLike, *, need: tuple[str, ...] = (), pixel_arcmin: float | None = None,
    check_finite: bool = True,
) -> MassMaps:
    """Open and validate a map file.

    Args:
        path: the HDF5 file.
        need: ``"label"`` and/or ``"parameters"``: what the caller cannot do without.
        pixel_arcmin: the pixel side, overriding (or standing in for) the file's attribute.
        check_finite: scan every dataset for NaN/Inf up front.
    """
    path = os.fspath(path)
    shapes = _shapes(path)
    kappa = shapes.get("kappa")
    if kappa is None:
        found = ", ".join(sorted(shapes)) or "nothing"
        raise DataError(f"{path}: missing dataset 'kappa'; expected (N, H, W) or (N, H, W, 1) "
                        f"float convergence maps, found {found}")
    if len(kappa[0]) not in (3, 4) or (len(kappa[0]) == 4 and kappa[0][3] != 1):
        raise DataError(f"{path}: dataset 'kappa' has shape {kappa[0]}, expected (N, H, W) or "
                        "(N, H, W, 1)")
    fields = [
        Field("kappa", "kappa", (None, None) if len(kappa[0]) == 3 else (None, None, 1)),
        Field("kappa_clean", "kappa_clean", tuple(kappa[0][1:]), required=False),
        Field("label", "label", (), "label", required="label" in need),
        *(_column(p, shapes.get(p), "parameters" in need) for p in PARAMETERS),
    ]
    source = H5Source(path, fields, check_finite=check_finite)
    if pixel_arcmin is None and "pixel_arcmin" in source.attrs():
        pixel_arcmin = float(source.attrs()["pixel_arcmin"])
        if not np.isfinite(pixel_arcmin) or pixel_arcmin <= 0:
            raise DataError(f"{path}: attribute 'pixel_arcmin' is {pixel_arcmin}, expected a "
                            "positive pixel side in arcmin")
    maps = MassMaps(source, pixel_arcmin)
    if "parameters" in need:
        values = maps.columns((0, maps.num_maps), PARAMETERS)
        for name in PARAMETERS:
            if (values[name] <= 0).any():
                raise DataError(f"{path}: dataset '{name}' has values <= 0, expected positive "
                                "cosmological parameters")
    return maps
