"""Reader for galaxy stamps: one prominent galaxy per image, optional noise variance and PSF.

Layout (HDF5; what :mod:`modelzoo.galaxy.generator` writes, and what a survey cut-out
pipeline can write for real data):

* ``images``: (N, S, S) for one band or (N, S, S, B), float, sky-subtracted, any flux unit.
* ``noise_variance`` (optional): per-pixel noise variance, same shape as ``images``, > 0.
* ``psf`` (optional): (N, P, P) or (N, P, P, B), one PSF image per stamp and band, P odd.
* root attribute ``noise_sigma`` (optional): typical background noise, in image units.

Images are divided by one constant per file, the *scale* (by default the background noise
sigma), so models see stamps in units of the sky noise. Because the scale is the same for
every stamp and every model, it changes each log-density by the same constant
(``-num_pixels * log(scale)``) and never changes which model assigns the higher density.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from modelzoo.hdf5 import DataError, Field, H5Source, stream


def _layout(path: str, images: str, psf: str) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Trailing shapes of ``images`` and ``psf`` (if present), checked for form, not content."""
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DataError(
            f"{path}: cannot be opened as HDF5 ({err}); the file may be truncated or not HDF5"
        ) from None
    with handle:
        if images not in handle or not isinstance(handle[images], h5py.Dataset):
            found = ", ".join(sorted(handle.keys())) or "nothing"
            raise DataError(
                f"{path}: not a galaxy stamp file: missing dataset '{images}' of shape "
                f"(N, S, S) or (N, S, S, bands); found {found}"
            )
        shape = handle[images].shape
        if len(shape) not in (3, 4) or shape[1] != shape[2]:
            raise DataError(
                f"{path}: dataset '{images}' has shape {shape}, expected square stamps "
                "(N, S, S) or (N, S, S, bands)"
            )
        psf_shape = None
        if psf in handle:
            psf_shape = handle[psf].shape
            if (len(psf_shape) != len(shape) or psf_shape[1] != psf_shape[2]
                    or psf_shape[1] % 2 == 0 or psf_shape[3:] != shape[3:]):
                want = "(N, P, P)" if len(shape) == 3 else f"(N, P, P, {shape[3]})"
                raise DataError(
                    f"{path}: dataset '{psf}' has shape {psf_shape}, expected {want} with P odd "
                    f"(one PSF per stamp{'' if len(shape) == 3 else ' and band'})"
                )
    return shape[1:], (psf_shape[1:] if psf_shape else None)


@dataclass
class GalaxyStamps:
    """A validated stamp file; arrays come out channels-last (N, S, S, B), divided by ``scale``.

    Attributes:
        source: the checked HDF5 source.
        scale: image units per model unit (the background noise sigma by default).
    """

    source: H5Source
    scale: float

    @property
    def num_stamps(self) -> int:
        return self.source.num_rows

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return _channels_last(self.source.read(0, 1, ["images"])["images"]).shape[1:]

    @property
    def has_noise_variance(self) -> bool:
        return "noise_variance" in self.source.fields

    @property
    def has_psf(self) -> bool:
        return "psf" in self.source.fields

    def to_example(self, block: dict[str, np.ndarray]) -> tuple[np.ndarray]:
        """``(images,)`` for training: float32 (n, S, S, B) in model units."""
        return (_channels_last(block["images"]).astype(np.float32) / np.float32(self.scale),)

    def dataset(self, rows: tuple[int, int], batch_size: int, **stream_args):
        """tf.data batches of ``(images,)`` over ``rows``; see :func:`modelzoo.hdf5.stream`."""
        return stream(self.source, self.to_example, rows=rows, batch_size=batch_size, **stream_args)

    def arrays(self, rows: tuple[int, int], block_rows: int = 1024) -> dict[str, np.ndarray]:
        """``images`` and, when present, ``noise_variance`` (model units squared) and ``psf``
        (unit sum per band) for ``rows``, channels-last."""
        parts = [self.source.read(s, min(s + block_rows, rows[1]))
                 for s in range(rows[0], rows[1], block_rows)]
        out = {k: _channels_last(np.concatenate([p[k] for p in parts]))
               for k in parts[0]} if parts else {}
        if "images" in out:
            out["images"] = out["images"].astype(np.float32) / np.float32(self.scale)
        if "noise_variance" in out:
            out["noise_variance"] = (out["noise_variance"].astype(np.float64)
                                     / self.scale**2).astype(np.float32)
        if "psf" in out:
            psf = out["psf"].astype(np.float64)
            out["psf"] = (psf / psf.sum(axis=(1, 2), keepdims=True)).astype(np.float32)
        return out


def _channels_last(array: np.ndarray) -> np.ndarray:
    return array[..., None] if array.ndim == 3 else array


def estimate_scale(source: H5Source, max_rows: int = 1024) -> float:
    """The file's background noise sigma: the ``noise_sigma`` attribute, else the median
    square root of ``noise_variance``, else a robust (MAD) sigma of the stamps' border pixels."""
    attrs = source.attrs()
    if "noise_sigma" in attrs:
        value = float(attrs["noise_sigma"])
    else:
        block = source.read(0, min(max_rows, source.num_rows))
        if "noise_variance" in block:
            value = float(np.sqrt(np.median(block["noise_variance"])))
        else:
            img = _channels_last(block["images"]).astype(np.float64)
            border = np.concatenate([img[:, :3].ravel(), img[:, -3:].ravel(),
                                     img[:, :, :3].ravel(), img[:, :, -3:].ravel()])
            value = float(1.4826 * np.median(np.abs(border - np.median(border))))
    if not np.isfinite(value) or value <= 0:
        raise DataError(
            f"{source.path}: cannot derive a positive image scale (got {value}); pass an "
            "explicit scale (recipe key data.scale)"
        )
    return value


def open_galaxies(
    path: str | os.PathLike,
    *,
    scale: float | str = "auto",
    image_size: int | None = None,
    bands: int | None = None,
    check_finite: bool = True,
) -> GalaxyStamps:
    """Open and validate a galaxy stamp file.

    Args:
        path: the HDF5 file.
        scale: image units per model unit, or ``"auto"`` for :func:`estimate_scale`.
        image_size: required stamp side (e.g. 69 for ``galaxy_vae``); None accepts any.
        bands: required number of bands; None accepts any.
        check_finite: scan every dataset for NaN/Inf up front.

    Raises:
        DataError: naming the file, the dataset and what was expected, for a missing or
            misshapen dataset, differing lengths, NaN/Inf, non-positive noise variance or a
            PSF without positive total.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    img_trailing, psf_trailing = _layout(path, "images", "psf")
    if image_size is not None and img_trailing[0] != image_size:
        raise DataError(
            f"{path}: stamps are {img_trailing[0]}x{img_trailing[1]}, the model expects "
            f"{image_size}x{image_size}"
        )
    n_bands = img_trailing[2] if len(img_trailing) == 3 else 1
    if bands is not None and n_bands != bands:
        raise DataError(f"{path}: stamps have {n_bands} band(s), the model expects {bands}")
    fields = [
        Field("images", "images", img_trailing),
        Field("noise_variance", "noise_variance", img_trailing, required=False,
              check=lambda v: (v.reshape(len(v), -1) > 0).all(axis=1),
              expected="per-pixel noise variances must be > 0"),
    ]
    if psf_trailing is not None:
        fields.append(Field("psf", "psf", psf_trailing,
                            check=lambda p: _channels_last(p).sum(axis=(1, 2)).min(axis=-1) > 0,
                            expected="each PSF image must sum to a positive total"))
    source = H5Source(path, fields, check_finite=check_finite)
    if scale == "auto":
        scale = estimate_scale(source)
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return GalaxyStamps(source, scale)
