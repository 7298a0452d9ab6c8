"""Keep TensorFlow's start-up noise off a CPU-only user's screen.

TensorFlow writes its C++ start-up lines ("Could not find cuda drivers", "failed call to
cuInit", the oneDNN and CPU-instruction notes) straight to file descriptor 2 before its logging
is configured, so ``TF_CPP_MIN_LOG_LEVEL`` does not reach them. The zoo imports TensorFlow with
descriptor 2 captured and writes back every line except those notes; errors and warnings of
any other kind still show. While a ``modelzoo`` command runs, :func:`filtered_stderr` drops the
few C++ lines that TensorFlow logs as errors although nothing failed (:data:`RUN_NOISE`).
``MODELZOO_TF_LOG=1`` shows everything.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "cudart_stub.cc",
    "cuda_platform.cc",
    "cuda_executor.cc",
    "cuda_diagnostics.cc",
    "port.cc:153] oneDNN custom operations are on",
    "cpu_feature_guard.cc",
    "To enable the following instructions",
    "Unable to register cu",
    "computation placer already registered",
)


# Logged at error level by TensorFlow's graph optimiser although the step runs correctly: the
# remapper declines to fuse a convolution, its bias and a LeakyReLU whose gradient reads the
# bias output (climate_detector's training step), and the graph runs unfused.
RUN_NOISE = ("remapper failed: INVALID_ARGUMENT: Mutation::Apply error: fanout",)


@contextlib.contextmanager
def filtered_stderr(patterns: tuple[str, ...] = RUN_NOISE) -> Iterator[None]:
    """File descriptor 2 passed through a thread that drops whole lines containing one of
    ``patterns`` (what C++ libraries write there included); everything else is forwarded as it
    comes, line by line."""
    if os.environ.get("MODELZOO_TF_LOG") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if not any(p.encode() in line for p in patterns):
                    os.write(saved, line + b"\n")
        if pending:
            os.write(saved, pending)
        os.close(read_end)

    thread = threading.Thread(target=pump, name="modelzoo-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer here: the thread sees its end
        thread.join(timeout=10)
        os.close(saved)


def _filtered(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True)
                   if not any(pattern in line for pattern in NOISE))


class _CapturedLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile(mode="w+b") as capture:
            os.dup2(capture.fileno(), 2)
            try:
                self.loader.exec_module(module)
                # Device discovery is where cuInit fails on a machine without a GPU.
                module.config.list_physical_devices()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                rest = _filtered(capture.read().decode(errors="replace"))
                if rest:
                    sys.stderr.write(rest)


class _TensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _CapturedLoader(spec.loader)
        return spec


def quiet_tensorflow() -> None:
    """Set TensorFlow's log level (unless the user did) and capture its import-time notes."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("MODELZOO_TF_LOG") == "1" or "tensorflow" in sys.modules:
        return
    if not any(isinstance(finder, _TensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _TensorFlowFinder())
