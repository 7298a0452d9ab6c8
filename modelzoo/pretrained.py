"""Pretrained weights: loading shipped entries (listed by :mod:`modelzoo.manifest`), integrity
checks, and user-shareable folders.

Shipped weights live in ``pretrained/`` next to ``pretrained/manifest.json``, one entry per
``model.tag`` (timm's naming): file, sha256, byte size, builder config, training recipe, data
recipe, metrics on a fixed evaluation set, date and versions. A source checkout reads the
repository's ``pretrained/``; an installed wheel carries the same files as package data
(``modelzoo/_pretrained``); ``MODELZOO_PRETRAINED_DIR`` points the zoo at another copy (an
offline mirror, a shared folder on a cluster). Every load checks the full sha256
first, so a tampered, truncated or Git-LFS-pointer file is refused with the path and both
hashes, never half-loaded (keras#20271, kkweon/mnist-competition#1).

An entry may instead carry a ``url``: its file is then fetched once, with pooch, into a cache
(``MODELZOO_CACHE_DIR``, else the user's cache folder) and its sha256 checked there, so that large
weights (3-D models) need not travel in the repository or the wheel.

A model folder (keras-hub's preset layout, as written by :func:`save_pretrained` and by
``modelzoo train``) holds ``config.json`` (model name + builder config), ``model.weights.h5``
and ``metadata.json`` (sha256, versions, metrics); :func:`from_pretrained` rebuilds it offline.

Weight files are Keras's own ``.weights.h5`` or, for shipped entries, the zoo's compact
``.float16.h5`` format: one float16 dataset per variable, named by the variable's path, with
the variable's position and the sha256 of its bytes as attributes (large arrays
gzip-compressed, losslessly). Loading assigns each array to the variable of the same path and
refuses a file whose paths, positions, shapes or array checksums do not match (a renamed,
reordered or edited file), and restores float32.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from modelzoo import manifest, registry
from modelzoo.errors import PretrainedError
from modelzoo.manifest import load_manifest

if TYPE_CHECKING:  # keras (and TensorFlow) load when a model is built, not to read the manifest
    import keras

WEIGHTS_FILE = "model.weights.h5"
COMPACT_FORMAT = "modelzoo-float16-v2"
COMPACT_SUFFIX = ".float16.h5"
# Arrays of at least this many bytes are stored gzip-compressed (see write_compact).
COMPRESS_FROM = 1 << 16


# model -> (registry name, builder config) for models built by the zoo, so save_pretrained can
# write the config without the user repeating it.
_BUILT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def remember_build(model: keras.Model, name: str, config: dict[str, Any]) -> None:
    _BUILT[model] = (name, dict(config))


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve(name: str, weights: str) -> tuple[str, dict[str, Any]]:
    """Manifest key and entry for ``weights`` ("default" or a tag) of model ``name``."""
    entries = {k: e for k, e in load_manifest().items() if e["model"] == name}
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


def cache_dir() -> Path:
    """Where entries with a ``url`` are downloaded: ``MODELZOO_CACHE_DIR``, else the user's
    cache folder (``~/.cache/modelzoo`` on Linux)."""
    import pooch

    return Path(os.environ.get("MODELZOO_CACHE_DIR") or pooch.os_cache("modelzoo"))


def entry_file(key: str, entry: dict[str, Any]) -> Path:
    """The weights file of manifest entry ``key``, checked against its sha256 and size: in the
    pretrained folder, or downloaded from the entry's ``url`` into :func:`cache_dir` (once;
    a cached file is re-hashed on every use, a mismatching download is deleted)."""
    if "url" not in entry:
        path = manifest.PRETRAINED_DIR / entry["file"]
    else:
        import pooch

        try:
            path = Path(pooch.retrieve(entry["url"], known_hash=f"sha256:{entry['sha256']}",
                                       fname=entry["file"], path=cache_dir(), progressbar=False))
        except ValueError as err:  # pooch's hash mismatch
            got = str(err).partition(" but got ")[2].partition(".")[0] or "another"
            raise PretrainedError(
                f"{entry['url']}: downloaded sha256 {got} does not match {key}'s {entry['sha256']}"
                "; the file was not kept") from None
        except OSError as err:  # requests' errors are OSErrors
            raise PretrainedError(f"{entry['url']}: cannot download {key} ({err})") from None
    _check_file(path, entry["sha256"], entry["bytes"])
    return path


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


def _array_digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _read_compact(path: Path) -> dict[str, tuple[int, np.ndarray]] | None:
    """variable path -> (position, float16 array) of a compact file, None for any other file;
    arrays whose bytes do not match their recorded sha256 are refused."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("modelzoo_format") != COMPACT_FORMAT:
                return None
            stored: dict[str, tuple[int, np.ndarray]] = {}

            def visit(name: str, obj) -> None:
                if isinstance(obj, h5py.Dataset):
                    array = obj[()]
                    if _array_digest(array) != obj.attrs["sha256"]:
                        raise PretrainedError(
                            f"{path}: array '{name}' does not match its recorded checksum; the "
                            "file was edited after it was written")
                    stored[name] = (int(obj.attrs["position"]), array)

            f["weights"].visititems(visit)
            return stored
    except OSError as err:
        raise PretrainedError(f"{path}: cannot be read as HDF5 weights ({err})") from None


def write_compact(model: keras.Model, path: str | os.PathLike, dtype: str = "float16") -> None:
    """Write ``model``'s weights as ``dtype`` arrays named by variable path."""
    paths = [var.path for var in model.weights]
    if len(set(paths)) != len(paths):
        raise PretrainedError(f"model {model.name!r} has variables that share a path; name its "
                              "layers uniquely to ship it")
    with h5py.File(path, "w") as f:
        f.attrs["modelzoo_format"] = COMPACT_FORMAT
        group = f.create_group("weights")
        for position, var in enumerate(model.weights):
            array = np.asarray(var).astype(dtype)
            # Lossless: byte-shuffled gzip saves 10-15% of a large float16 kernel (the sign and
            # exponent bytes repeat); a small array would grow by its chunk index.
            packed = {"compression": "gzip", "compression_opts": 9, "shuffle": True} if (
                array.nbytes >= COMPRESS_FROM) else {}
            dset = group.create_dataset(var.path, data=array, **packed)
            dset.attrs["position"] = position
            dset.attrs["sha256"] = _array_digest(array)


def _assign(model: keras.Model, path: Path) -> None:
    stored = _read_compact(path)
    if stored is None:
        try:
            model.load_weights(path)
        except (ValueError, OSError) as err:
            raise PretrainedError(f"{path}: does not fit model {model.name!r} ({err})") from None
        return
    variables = {var.path: (position, var) for position, var in enumerate(model.weights)}
    missing, extra = sorted(set(variables) - set(stored)), sorted(set(stored) - set(variables))
    if missing or extra:
        raise PretrainedError(
            f"{path}: its arrays do not name the variables of model {model.name!r} (missing "
            f"{', '.join(missing[:5]) or 'none'}; unexpected {', '.join(extra[:5]) or 'none'}); "
            "the weights belong to another model or configuration")
    for var_path, (position, var) in variables.items():
        saved_position, array = stored[var_path]
        if saved_position != position:
            raise PretrainedError(
                f"{path}: '{var_path}' was written as variable {saved_position}, the model has it "
                f"at {position}; the file was reordered or belongs to another configuration")
        if tuple(var.shape) != array.shape:
            raise PretrainedError(
                f"{path}: '{var_path}' has shape {array.shape}, the model's {tuple(var.shape)}; "
                "the weights belong to another configuration")
    for var_path, (_, var) in variables.items():
        var.assign(stored[var_path][1].astype(np.float32))
    # As Keras's own loading does: layers that derive state from their variables (Normalization's
    # mean and variance from its adapted statistics) rebuild it now.
    for layer in _all_layers(model):
        if hasattr(layer, "finalize_state"):  # input layers have none
            layer.finalize_state()


def _all_layers(model) -> list:
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        found.extend(_all_layers(layer))
    return found


def _shipped_model(name: str, weights: str, config: dict[str, Any]) -> keras.Model:
    """Model ``name`` with shipped ``weights``; ``config`` may change only what leaves the
    variables as they are (e.g. the grid of a fully convolutional model)."""
    key, entry = resolve(name, weights)
    defaults = registry.get_spec(name).defaults
    trained = {**json.loads(json.dumps(defaults)), **entry["config"]}
    conflicts = {k: v for k, v in config.items() if json.loads(json.dumps(v)) != trained.get(k)}
    path = entry_file(key, entry)
    built = {**entry["config"], **conflicts}
    try:
        model = registry.build(name, **built)
        _assign(model, path)
    except PretrainedError:
        if not conflicts:
            raise
        raise PretrainedError(
            f"{key} was trained with config {entry['config']}; {conflicts} changes its "
            "variables (build with weights=None to change the architecture)"
        ) from None
    remember_build(model, name, built)
    return model


def _with_weights(name: str, weights: str | os.PathLike,
                       config: dict[str, Any]) -> keras.Model:
    """Model ``name`` with ``weights``: ``"default"`` or a tag of a shipped entry, a model or run
    folder (its ``config.json`` must name the same model), or a weights file (the model is built
    from ``config`` over the registered defaults)."""
    source = os.fspath(weights)
    if os.path.isdir(source):
        model = _from_folder(source, config)
        saved = _BUILT[model][0]
        if saved != name:
            raise PretrainedError(f"{source} holds a {saved!r} model, not {name!r}")
        return model
    if os.path.isfile(source):
        model = registry.build(name, **config)
        _load_into(model, source)
        remember_build(model, name, config)
        return model
    if os.sep in source or source.endswith(".h5"):
        raise PretrainedError(f"{source}: no such weights file or folder")
    return _shipped_model(name, source, config)


def _load_into(model: keras.Model, source: str | os.PathLike) -> keras.Model:
    """Load weights into ``model`` from a shipped ``model.tag``, a model folder, or a file.

    Shipped entries and folders are checked against their sha256 before loading.
    """
    source_str = os.fspath(source)
    if source_str in load_manifest():
        path = entry_file(source_str, load_manifest()[source_str])
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
    from modelzoo.parallel import machine_failures

    path = os.fspath(path)
    tmp = path[: -len(".weights.h5")] + f".tmp{os.getpid()}.weights.h5"
    with machine_failures(path, cleanup=lambda: Path(tmp).unlink(missing_ok=True)):
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


def _from_folder(folder: str | os.PathLike, config: dict[str, Any] | None = None) -> keras.Model:
    """Rebuild the model saved in ``folder`` (by :func:`save_pretrained` or ``modelzoo train``),
    with ``config`` over its builder keywords (what leaves the variables as they are, e.g. the
    grid of a fully convolutional model)."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise PretrainedError(f"{folder}: no config.json; not a model folder")
    model_cfg = json.loads(config_path.read_text())["model"]
    model_cfg["config"] = {**model_cfg.get("config", {}), **(config or {})}
    model = registry.build(model_cfg["name"], **model_cfg["config"])
    if (folder / WEIGHTS_FILE).exists():
        _load_into(model, folder)
    else:  # a run folder still training: its latest checkpoint
        pointer = folder / "checkpoints" / "latest.json"
        if not pointer.exists():
            raise PretrainedError(f"{folder}: neither {WEIGHTS_FILE} nor a checkpoint")
        checkpoint = json.loads(pointer.read_text())["checkpoint"]
        _load_into(model, folder / "checkpoints" / checkpoint / WEIGHTS_FILE)
    remember_build(model, model_cfg["name"], model_cfg.get("config", {}))
    return model


def versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    from modelzoo import __version__

    return {
        "modelzoo_version": __version__,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "date": datetime.date.today().isoformat(),
    }


VERDICTS = ("ahead", "tied", "behind")
NO_INTERVAL = "*no interval*"


def verdict(interval: list[float] | tuple[float, float]) -> str:
    """The word a difference's 95% interval (positive: better for the zoo) allows."""
    return "ahead" if interval[0] > 0 else "behind" if interval[1] < 0 else "tied"


def _number(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def _span(interval: list[float]) -> str:
    return f"[{interval[0]:.3g}, {interval[1]:.3g}]"


def _case_readme(model: str) -> str | None:
    """The case README of ``model``, relative to the repository root, if it has one."""
    for case in registry.cases().values():
        if any(spec.name == model for spec in case.models):
            readme = case.folder() / "README.md"
            if readme.exists():
                return f"modelzoo/{case.folder().name}/README.md"
    return None


def results_table(link_prefix: str = "") -> str:
    """Markdown table of every default entry's published numbers, from the manifest's
    ``intervals``, ``comparisons`` and ``eval_size``: value, 95% interval, what it is
    compared with, the difference (positive: better for the zoo) with its interval, and the
    verdict. An entry without intervals gets one row marked "no interval". Case README links
    are prefixed with ``link_prefix`` (the path from the page to the repository root)."""
    rows = ["| entry | metric | value | 95% interval | against | difference [95% interval] "
            "| verdict | evaluation set |", "|---|---|---|---|---|---|---|---|"]
    for key, entry in sorted(load_manifest().items()):
        if not entry.get("default"):
            continue
        readme = _case_readme(entry["model"])
        name = f"[`{key}`]({link_prefix}{readme})" if readme else f"`{key}`"
        size = entry.get("eval_size", "")
        intervals = entry.get("intervals") or {}
        if not intervals:
            rows.append(f"| {name} | | | {NO_INTERVAL} | | | | {size} |")
            continue
        compared: dict[str, list[dict]] = {}
        for item in entry.get("comparisons", []):
            compared.setdefault(item["metric"], []).append(item)
        for metric, interval in intervals.items():
            value = entry["metrics"].get(metric, "")
            against = compared.get(metric) or [None]
            for k, item in enumerate(against):
                cells = [name, f"`{metric}`", _number(value), _span(interval)] if k == 0 else \
                    ["", "", "", ""]
                if item is None:
                    cells += ["", "", ""]
                else:
                    cells += [item["against"],
                              f"{item['difference']:+.3g} {_span(item['interval'])}",
                              f"**{item['verdict']}**"]
                rows.append("| " + " | ".join([*cells, size]) + " |")
                name = size = ""
    return "\n".join(rows) + "\n"


RESULTS_COMMAND = "modelzoo pretrained table --output docs/results.md"


def results_page(link_prefix: str = "../") -> str:
    """docs/results.md: :func:`results_table` with what its columns mean."""
    return f"""# Results of the shipped models

Generated from `pretrained/manifest.json` by `{RESULTS_COMMAND}`
(a test checks it is current); do not edit by hand. One block of rows per default entry: each
number is the shipped weights' on the entry's fixed evaluation set (`modelzoo pretrained verify
KEY --full` regenerates it), with its 95% interval. *against* is a baseline scored on the same
samples (the difference's interval from a paired bootstrap, unless the entry's
`interval_method` in the manifest says otherwise) or a paper's number (which has no interval:
the zoo's interval shifted by it). The difference is oriented so that positive is better for
the zoo; the verdict is **ahead** when its interval lies above 0, **behind** below it, **tied**
otherwise. The case READMEs (linked) say what each metric means and what differs from the
papers. Entries marked {NO_INTERVAL} have their numbers in their case README, without
intervals in the manifest yet.

{results_table(link_prefix)}"""
