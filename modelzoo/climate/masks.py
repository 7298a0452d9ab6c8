"""Pixel masks from the physics of the events the climate generator draws, in DeepCAM's classes.

DeepCAM's labels (Kurth et al. SC18, arXiv:1810.01993) came from TECA's event criteria applied
to CAM5 output; the generator knows each event's own fields, so it labels them by the same kind
of criterion:

* **Tropical cyclone** (class 1): the storm's gale-force extent, where its own gradient wind
  (Holland 1980 profile) reaches 17 m/s, the radius of gale-force winds (R17) forecasters use
  for a storm's size. Depressions are background, as in DeepCAM's three classes.
* **Atmospheric river** (class 2): the filament's pixels whose integrated vapour transport
  (IVT ~ TMQ x |V850|, kg/m/s) reaches 250 kg/m/s, the usual AR threshold (Ralph et al. 2004,
  Guan and Waliser 2015), inside the filament (its own vapour anomaly at least 10% of its peak),
  so that its length (2,500-5,000 km) and width bound the mask and a humid tropics nearby does
  not join it.
"""

from __future__ import annotations

import numpy as np

BACKGROUND, TROPICAL_CYCLONE, ATMOSPHERIC_RIVER = 0, 1, 2
GALE_WIND = 17.0  # m/s
IVT_THRESHOLD = 250.0  # kg/m/s
RIVER_CORE = 0.1  # share of the filament's peak vapour anomaly that is still the filament


def cyclone_mask(wind: np.ndarray, threshold: float = GALE_WIND) -> np.ndarray:
    """Pixels where a cyclone's own gradient wind (m/s) reaches ``threshold``."""
    return np.asarray(wind) >= threshold


def river_mask(profile: np.ndarray, ivt: np.ndarray, threshold: float = IVT_THRESHOLD,
               core: float = RIVER_CORE) -> np.ndarray:
    """Pixels of a filament (``profile``: its vapour anomaly relative to its peak, 0..1) whose
    IVT (kg/m/s) reaches ``threshold``."""
    profile = np.asarray(profile)
    return (profile >= core * profile.max()) & (np.asarray(ivt) >= threshold)
