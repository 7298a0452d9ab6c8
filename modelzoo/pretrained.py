"""Pretrained weights: the shipped manifest, integrity checks, and user-shareable folders.

Shipped weights live in ``pretrained/`` next to ``pretrained/manifest.json``, one entry per
``model.tag`` (timm's naming): file, sha256, byte size, builder config, training recipe, data
recipe, metrics on a fixed evaluation set, date and versions. Every load checks the full sha256
first, so a tampered, truncated or Git-LFS-pointer file is refused with the path and both
hashes, never half-loaded (keras#20271, kkweon/mnist-competition#1).

A model folder (keras-hub's preset layout, as written by :func:`save_pretrained` and by
``modelzoo train``) holds ``config.json`` (model name + builder config), ``model.weights.h5``
and ``metadata.json`` (sha256, versions, metrics); :func:`from_pretrained` rebuilds it offline.

Weight files are Keras's own ``.weights.h5`` or, for shipped entries, a compact variant that
stores float16 arrays by variable path (attribute ``modelzoo_format``); loading restores
float32 either way.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import weakref
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np

from modelzoo import registry

PRETRAINED_DIR = Path(
    os.environ.get("MODELZOO_PRETRAINED_DIR", Path(__file__).resolve().parent.parent / "pretrained")
)
MANIFEST = "manifest.json"
WEIGHTS_FILE = "model.weights.h5"
COMPACT_FORMAT = "modelzoo-compact-v1"

# model -> (registry name, builder config) for models built by the zoo, so save_pretrained can
# write the config without the user repeating it.
_BUILT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class PretrainedError(ValueError):
    """Weights that cannot be used: missing, corrupt, or not matching the model."""


def remember_build(model: keras.Model, name: str, config: dict[str, Any]) -> None:
    _BUILT[model] = (name, dict(config))


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest() -> dict[str, dict[str, Any]]:
    path = PRETRAINED_DIR / MANIFEST
    if not path.exists():
        return {}
    with open(path) as fh:
        return json.load(fh)


def list_pretrained(pattern: str = "*") -> list[str]:
    """Shipped ``model.tag`` entries whose model name matches ``pattern``."""
    import fnmatch

    return sorted(k for k, e in load_manifest().items() if fnmatch.fnmatchcase(e["model"], pattern))


def resolve(name: str, weights: str) -> tuple[str, dict[str, Any]]:
    """Manifest key and entry for ``weights`` ("default" or a tag) of model ``name``."""
    manifest = load_manifest()
    entries = {k: e for k, e in manifest.items() if e["model"] == name}
    if not entries:
        raise PretrainedError(f"no pretrained weights ship for {name!r}")
    if weights == "default":
        defaults = [k for k, e in entries.items() if e.get("default")]
        key = defaults[0] if defaults else sorted(entries)[0]
    else:
        key = weights if weights in entries else f"{name}.{weights}"
        if key not in entries:
            raise PretrainedError(
                f"{name!r} has no weights {weights!r}; available: {', '.join(sorted(entries))}"
            )
    return key, entries[key]


def _check_file(path: Path, sha256: str | None, size: int | None) -> None:
    if not path.exists():
        raise PretrainedError(f"{path}: weights file is missing")
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise PretrainedError(
            f"{path}: {actual_size} bytes, expected {size}; the file is truncated or replaced "
            "(a Git LFS pointer?)"
        )
    if sha256 is not None:
        actual = sha256_of(path)
        if actual != sha256:
            raise PretrainedError(f"{path}: sha256 {actual} does not match expected {sha256}")


def _read_weights(path: Path) -> tuple[list[str], list[np.ndarray]] | None:
    """(paths, arrays) of a compact file, or None for a Keras-native file."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("modelzoo_format") != COMPACT_FORMAT:
                return None
            group = f["weights"]
            keys = sorted(group.keys())
            return (
                [group[k].attrs["path"] for k in keys],
                [group[k][()].astype(np.float32) for k in keys],
            )
    except OSError as err:
        raise PretrainedError(f"{path}: cannot be read as HDF5 weights ({err})") from None


def write_compact(model: keras.Model, path: str | os.PathLike, dtype: str = "float16") -> None:
    """Write ``model``'s weights as ``dtype`` arrays keyed by variable order and path."""
    with h5py.File(path, "w") as f:
        f.attrs["modelzoo_format"] = COMPACT_FORMAT
        group = f.create_group("weights")
        for i, var in enumerate(model.weights):
            dset = group.create_dataset(f"{i:04d}", data=np.asarray(var).astype(dtype))
            dset.attrs["path"] = var.path


def _assign(model: keras.Model, path: Path) -> None:
    compact = _read_weights(path)
    if compact is None:
        try:
            model.load_weights(path)
        except (ValueError, OSError) as err:
            raise PretrainedError(f"{path}: does not fit model {model.name!r} ({err})") from None
        return
    paths, arrays = compact
    variables = model.weights
    if len(arrays) != len(variables):
        raise PretrainedError(
            f"{path}: holds {len(arrays)} arrays, model {model.name!r} has {len(variables)} "
            "variables; the weights belong to another configuration"
        )
    for var, saved_path, array in zip(variables, paths, arrays):
        if tuple(var.shape) != array.shape:
            raise PretrainedError(
                f"{path}: {saved_path} has shape {array.shape}, the model's {var.path} "
                f"{tuple(var.shape)}; the weights belong to another configuration"
            )
    for var, array in zip(variables, arrays):
        var.assign(array)


def build_pretrained(name: str, weights: str, config: dict[str, Any]) -> keras.Model:
    """Model ``name`` with shipped ``weights``; ``config`` may only repeat the entry's values."""
    key, entry = resolve(name, weights)
    defaults = registry.get_spec(name).defaults
    trained = {**json.loads(json.dumps(defaults)), **entry["config"]}
    conflicts = {k: v for k, v in config.items() if json.loads(json.dumps(v)) != trained.get(k)}
    if conflicts:
        raise PretrainedError(
            f"{key} was trained with config {entry['config']}; {conflicts} does not match the "
            "weights (build with weights=None to change the architecture)"
        )
    path = PRETRAINED_DIR / entry["file"]
    _check_file(path, entry["sha256"], entry["bytes"])
    model = registry.build(name, **entry["config"])
    _assign(model, path)
    remember_build(model, name, entry["config"])
    return model


def load_weights(model: keras.Model, source: str | os.PathLike) -> keras.Model:
    """Load weights into ``model`` from a shipped ``model.tag``, a model folder, or a file.

    Shipped entries and folders are checked against their sha256 before loading.
    """
    source_str = os.fspath(source)
    if source_str in load_manifest():
        entry = load_manifest()[source_str]
        path = PRETRAINED_DIR / entry["file"]
        _check_file(path, entry["sha256"], entry["bytes"])
    elif os.path.isdir(source_str):
        path = Path(source_str) / WEIGHTS_FILE
        meta_path = Path(source_str) / "metadata.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        _check_file(path, meta.get("sha256"), meta.get("bytes"))
    else:
        path = Path(source_str)
        _check_file(path, None, None)
    _assign(model, path)
    return model


def write_weights(model: keras.Model, path: str | os.PathLike, *, name: str,
                  config: dict[str, Any], plain: keras.Model | None = None) -> None:
    """``model``'s own variables into ``path`` (Keras ``.weights.h5``), atomically: written to a
    temporary file, flushed to disk, then renamed over ``path``.

    A compiled model's optimizer state is left out: Keras would add it (tripling the file of an
    Adam-trained model), and it belongs to resuming, which keeps it in the run's checkpoints.
    The variables go through an uncompiled ``name``/``config`` build for that: ``plain`` when
    given (a caller writing every epoch builds it once), else a fresh one.
    """
    if getattr(model, "optimizer", None) is not None:
        plain = registry.build(name, **config) if plain is None else plain
        plain.set_weights(model.get_weights())
        model = plain
    path = os.fspath(path)
    tmp = path[: -len(".weights.h5")] + f".tmp{os.getpid()}.weights.h5"
    model.save_weights(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_pretrained(
    model: keras.Model,
    folder: str | os.PathLike,
    *,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``config.json`` + ``model.weights.h5`` + ``metadata.json`` into ``folder``.

    ``name``/``config`` default to what :func:`modelzoo.get` recorded when it built ``model``.
    """
    if name is None or config is None:
        if model not in _BUILT:
            raise ValueError(
                "save_pretrained needs name= and config= for a model not built by modelzoo.get"
            )
        built_name, built_config = _BUILT[model]
        name, config = name or built_name, built_config if config is None else config
    registry.get_spec(name)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS_FILE
    write_weights(model, weights, name=name, config=config)
    (folder / "config.json").write_text(
        json.dumps({"model": {"name": name, "config": config}}, indent=2, default=list)
    )
    meta = {
        **(metadata or {}),
        "sha256": sha256_of(weights),
        "bytes": weights.stat().st_size,
        **versions(),
    }
    (folder / "metadata.json").write_text(json.dumps(meta, indent=2, default=float))
    return folder


def from_pretrained(folder: str | os.PathLike) -> keras.Model:
    """Rebuild the model saved in ``folder`` (by :func:`save_pretrained` or ``modelzoo train``)."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise PretrainedError(f"{folder}: no config.json; not a model folder")
    model_cfg = json.loads(config_path.read_text())["model"]
    model = registry.build(model_cfg["name"], **model_cfg.get("config", {}))
    load_weights(model, folder)
    remember_build(model, model_cfg["name"], model_cfg.get("config", {}))
    return model


def versions() -> dict[str, str]:
    import tensorflow as tf

    from modelzoo import __version__

    return {
        "modelzoo_version": __version__,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "date": datetime.date.today().isoformat(),
    }


registry._pretrained_lookup = lambda name: any(
    e["model"] == name for e in load_manifest().values()
)
