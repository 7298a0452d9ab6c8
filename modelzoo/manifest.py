"""The shipped manifest: which weights ship for which model (``pretrained/manifest.json``).

Read by the registry (``list_models(pretrained=True)``, ``info``) and by
:mod:`modelzoo.pretrained`, which loads the weights; this module imports neither, so the two
never import each other. ``MODELZOO_PRETRAINED_DIR`` points the zoo at another copy of the
folder (an offline mirror, a shared folder on a cluster).
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def _default_dir() -> Path:
    """``MODELZOO_PRETRAINED_DIR``, else the source checkout's ``pretrained/``, else the
    package data of an installed wheel."""
    if os.environ.get("MODELZOO_PRETRAINED_DIR"):
        return Path(os.environ["MODELZOO_PRETRAINED_DIR"])
    package = Path(__file__).resolve().parent
    checkout = package.parent / "pretrained"
    if (checkout / MANIFEST).exists():
        return checkout
    return package / "_pretrained"


PRETRAINED_DIR = _default_dir()


def load_manifest() -> dict[str, dict[str, Any]]:
    """Every shipped entry by ``model.tag`` (empty without a manifest)."""
    path = PRETRAINED_DIR / MANIFEST
    if not path.exists():
        return {}
    with open(path) as fh:
        return json.load(fh)


def list_pretrained(pattern: str = "*") -> list[str]:
    """Shipped ``model.tag`` entries whose model name matches ``pattern``."""
    return sorted(k for k, e in load_manifest().items() if fnmatch.fnmatchcase(e["model"], pattern))


def has_pretrained(name: str) -> bool:
    """Whether verified weights ship for model ``name``."""
    return any(entry["model"] == name for entry in load_manifest().values())
