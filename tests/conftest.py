"""Shared fixtures: small HDF5 files written with numpy in the published LHC layouts."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


import subprocess  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fast_tier_starts_no_process(request, monkeypatch):
    """``make test-fast`` (``-m "not slow"``) means no subprocess: a test that starts one
    (a horovodrun job, a CLI in a fresh interpreter, a pip install) belongs to the slow tier."""
    if request.node.get_closest_marker("slow") is not None:
        return

    start = subprocess.Popen.__init__

    def refuse(self, args, *rest, **kwargs):
        program = os.path.basename(str(args[0] if isinstance(args, (list, tuple)) else args))
        if program in _MACHINE_PROBES:
            return start(self, args, *rest, **kwargs)
        raise AssertionError(f"{request.node.nodeid} started a subprocess ({args!r}); mark it "
                             "@pytest.mark.slow")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


# What libraries run to learn about the machine (scikit-learn's process pool reads
# /proc/cpuinfo with `cat`): not a job of the test's own.
_MACHINE_PROBES = {"cat", "lscpu", "nproc", "sysctl"}


def toy_lhc_arrays(n: int = 64, size: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Events whose signal has a bright square (the images are NCHW)."""
    rng = np.random.default_rng(seed)
    label = (np.arange(n) % 2).astype(np.int32)
    data = rng.gamma(1.0, 1.0, (n, 3, size, size)).astype(np.float32)
    data[label == 1, :, size // 4 : size // 2, size // 4 : size // 2] += 5.0
    weight = np.where(label == 1, 0.01, 10.0).astype(np.float32)
    psr = (label == 1) & (np.arange(n) % 4 == 1)
    return {"data": data, "label": label, "weight": weight, "psr": psr.astype(np.int8)}


def write_benchmark(path, arrays: dict[str, np.ndarray], nhwc: bool = False) -> str:
    with h5py.File(path, "w") as f:
        f["data"] = np.transpose(arrays["data"], (0, 2, 3, 1)) if nhwc else arrays["data"]
        for key in ("label", "weight", "psr"):
            f[key] = arrays[key]
    return str(path)


def write_acat(path, arrays: dict[str, np.ndarray]) -> str:
    with h5py.File(path, "w") as f:
        g = f.create_group("all_events")
        g["hist"], g["histEM"], g["histtrack"] = (arrays["data"][:, c] for c in range(3))
        g["y"], g["weight"], g["passSR"] = arrays["label"], arrays["weight"], arrays["psr"]
    return str(path)


@pytest.fixture
def toy_arrays() -> dict[str, np.ndarray]:
    return toy_lhc_arrays()


@pytest.fixture
def benchmark_file(tmp_path, toy_arrays) -> str:
    return write_benchmark(tmp_path / "bench.h5", toy_arrays)


@pytest.fixture
def acat_file(tmp_path, toy_arrays) -> str:
    return write_acat(tmp_path / "acat.h5", toy_arrays)
