"""The one skeleton of every synthetic-data generator (``modelzoo data <case>``).

A case's generator keeps its physics (a function drawing one unit of work) and writes through
:func:`generated_file`, which does the rest once for every case::

    def generate_maps(path, *, npix=128, seed=0, processes=1, progress=True):
        arguments = generator_arguments(locals())    # first: the settings, recorded in the file
        ...
        with generated_file(path, draw_chunk, chunks, processes=processes, label="cosmology",
                            noun="maps", total=total, progress=progress,
                            arguments=arguments) as out:
            kappa = out.file.create_dataset("kappa", (total, npix, npix), "f4")
            for chunk, maps in out.results:      # as they finish (ordered=True: task order)
                kappa[chunk.rows] = maps
                out.advance(len(maps))           # the progress line
            out.file.attrs["generator"] = "..."
            out.details = {"cosmologies": [...]} # what the report adds for this case
        return out.report                        # a GeneratorReport

* the output folder is created; the file is written as ``path.partial`` in the same folder and
  renamed to ``path`` only once complete, so a reader never sees a half-written file under the
  name asked for;
* the partial file is removed on ANY failure (an exception, Ctrl-C, a full disk), and a
  ``SIGTERM`` ends the command the same way; an earlier complete ``path`` is left untouched;
* the work runs in this process (``processes=1``) or in a pool of forked workers started
  before the HDF5 file is opened (no worker inherits an open HDF5 handle);
* one progress line style on stderr: ``label: done/total noun (pct%), rate noun/s, N s left``
  about every 5 seconds, then ``label: wrote N noun to PATH in S s (R noun/s)``;
* one report type, :class:`GeneratorReport`;
* a generator that writes a folder of files (CosmoFlow's TFRecords, DeepCAM's samples) uses
  :func:`generated_folder` instead: the same, with ``path.partial/`` renamed when complete;
* the file's root attribute ``generator_arguments`` (JSON) says how it was made, so that
  evaluating a shipped model on data made otherwise can say so (:mod:`modelzoo.reproduce`);
* a write the machine cannot finish (disk full, file-size limit, quota) is one
  :class:`~modelzoo.errors.WriteError` line; :func:`machine_failures` does the same for any
  other file written through a temporary name (checkpoints, weights, predictions).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelzoo.errors import DataError, WriteError, machine_failure

PROGRESS_SECONDS = 5.0


def _start_method() -> str:
    # fork: workers inherit the imported modules; spawn would re-import modelzoo and with it
    # TensorFlow in every worker. Generator workers only run numpy and the field libraries
    # (Pythia, GalSim, pyccl), so forking is safe.
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "spawn"


def _default_signals() -> None:
    """A worker dies of SIGTERM (the pool's way of ending it), whatever its parent does."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def worker_results(function: Callable[[Any], Any], tasks: list, processes: int, *,
                   ordered: bool = False) -> Iterator[Iterable[Any]]:
    """``function(task)`` for every task: in this process when ``processes`` is 1 (or there is
    one task), else in a pool of ``processes`` workers; in task order with ``ordered``, else as
    they finish (each result must then say which rows it holds). Open the output file inside
    the ``with`` block: the pool is forked first, so no worker inherits an open HDF5 handle."""
    if processes <= 1 or len(tasks) <= 1:
        yield (function(task) for task in tasks)
        return
    with multiprocessing.get_context(_start_method()).Pool(
            min(processes, len(tasks)), initializer=_default_signals) as pool:
        yield (pool.imap if ordered else pool.imap_unordered)(function, tasks, chunksize=1)


@dataclass(frozen=True)
class GeneratorReport:
    """What a generator wrote: ``rows`` of ``noun`` to ``path`` in ``seconds``; ``details``:
    what the case adds (class counts, the physics selection's efficiencies, ...)."""

    path: str
    rows: int
    noun: str
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def summary(self, label: str) -> str:
        return (f"{label}: wrote {self.rows} {self.noun} to {self.path} in {self.seconds:.1f} s "
                f"({self.rows_per_second:.1f} {self.noun}/s)")


def generator_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """A generator's keyword arguments (pass ``locals()`` first thing) as JSON values, without
    the output path and what does not change the data (``processes``, ``progress``)."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        return value

    return {k: plain(v) for k, v in arguments.items()
            if k not in ("path", "output", "processes", "progress")}


class _Terminated(BaseException):
    """SIGTERM while a generator writes: unwinds like Ctrl-C, so the partial file goes."""


@contextlib.contextmanager
def _terminate_as_exception() -> Iterator[None]:
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise _Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def partial_path(path: str | os.PathLike) -> Path:
    """Where ``path`` is written until it is complete."""
    target = Path(path)
    return target.with_name(target.name + ".partial")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """The path to write ``path`` through: ``path.partial`` in the same folder (the folder is
    created), renamed to ``path`` after the ``with`` block succeeds and removed if it fails in
    any way. A previous complete ``path`` stays until the new one replaces it."""
    target = Path(path)
    if target.is_dir():
        raise DataError(f"{target}: is a folder; expected the name of an HDF5 file to write")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{target}: cannot create its folder ({err.strerror})") from None
    partial = partial_path(target)
    with (machine_failures(target, cleanup=lambda: partial.unlink(missing_ok=True)),
          _terminate_as_exception()):
        yield partial
        _fsync(partial)
        os.replace(partial, target)


@contextlib.contextmanager
def machine_failures(target: str | os.PathLike, *, cleanup: Callable[[], None] | None = None,
                     kept: str | None = None) -> Iterator[None]:
    """Around the writing of ``target`` (through a temporary name): on any failure ``cleanup``
    runs (removing the temporary file); a full disk, a file-size limit or a quota (see
    :func:`modelzoo.errors.machine_failure`) becomes one :class:`WriteError` saying what failed
    and what is kept (``kept``, default: the previous ``target`` if there is one)."""
    try:
        yield
    except BaseException as err:
        if cleanup is not None:
            cleanup()
        reason = machine_failure(err)
        if reason is None:
            raise
        kept = kept or ("the previous file is unchanged" if os.path.exists(target)
                        else "no file was written")
        raise WriteError(f"{os.fspath(target)}: writing failed ({reason}); {kept}") from err


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


# HDF5 objects of files whose writing failed for lack of space. HDF5 cannot close such a file:
# its close retries the failed metadata write, and freeing the handles afterwards crashed the
# interpreter (h5py 3 on HDF5 1.14, a segmentation fault). They are kept open instead (the file
# itself is already unlinked), and the command ends without freeing them: see
# modelzoo.cli._exit_after_write_failure.
UNCLOSABLE: list[Any] = []


@contextlib.contextmanager
def hdf5_output(path: str | os.PathLike) -> Iterator[Any]:
    """``h5py.File(path, "w")``, closed after the block; if the block or the close fails
    because the machine cannot write (see :func:`modelzoo.errors.machine_failure`), its
    handles are left open in :data:`UNCLOSABLE` rather than freed."""
    import h5py

    handle = h5py.File(path, "w")
    try:
        yield handle
        handle.close()
    except BaseException as err:
        if machine_failure(err) is not None:
            UNCLOSABLE.append(h5py.h5f.get_obj_ids(handle.id, types=h5py.h5f.OBJ_ALL))
        elif handle.id.valid:
            handle.close()
        raise


class GeneratedOutput:
    """What :func:`generated_file` and :func:`generated_folder` yield: ``results`` (the
    workers' results), ``advance`` (the progress line) and ``details`` (for the report)."""

    def __init__(self, results: Iterable[Any], label: str, noun: str, total: int,
                 progress: bool) -> None:
        self.results = results
        self.label, self.noun, self.total, self.progress = label, noun, total, progress
        self.done = 0
        self.details: dict[str, Any] = {}
        self.report: GeneratorReport | None = None
        self._start = self._last = time.perf_counter()

    def advance(self, rows: int) -> None:
        """``rows`` more rows written; prints the progress line when it is due."""
        self.done += rows
        now = time.perf_counter()
        if self.progress and (self.done >= self.total or now - self._last >= PROGRESS_SECONDS):
            self._last = now
            rate = self.done / max(now - self._start, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            print(f"{self.label}: {self.done}/{self.total} {self.noun} "
                  f"({100 * self.done / max(self.total, 1):.0f}%), {rate:.1f} {self.noun}/s, "
                  f"{left:.0f} s left", file=sys.stderr, flush=True)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._start


class GeneratedFile(GeneratedOutput):
    """The open output of :func:`generated_file`; ``file``: the h5py File being written."""

    def __init__(self, file, results: Iterable[Any], label: str, noun: str, total: int,
                 progress: bool) -> None:
        super().__init__(results, label, noun, total, progress)
        self.file = file


class GeneratedFolder(GeneratedOutput):
    """The open output of :func:`generated_folder`; ``folder``: where to write its files
    (``NAME.partial/`` until it is complete)."""

    def __init__(self, folder: Path, results: Iterable[Any], label: str, noun: str, total: int,
                 progress: bool) -> None:
        super().__init__(results, label, noun, total, progress)
        self.folder = folder


@contextlib.contextmanager
def generated_file(path: str | os.PathLike, function: Callable[[Any], Any] | None = None,
                   tasks: list | tuple = (), *, label: str, noun: str, total: int,
                   processes: int = 1, ordered: bool = False, progress: bool = True,
                   arguments: dict[str, Any] | None = None) -> Iterator[GeneratedFile]:
    """Write one generated HDF5 file: see the module docstring. ``function(task)`` runs for
    every task (see :func:`worker_results`; none for a file computed before it is written);
    ``total`` rows are expected; ``label`` starts every progress line (the case's name).
    After the block, ``out.report`` holds the :class:`GeneratorReport` (rows = the rows passed
    to ``advance``). ``arguments`` (see :func:`generator_arguments`) go into the root attribute
    ``generator_arguments`` (JSON), so that the file says how it was made."""
    # The pool first: its workers must not inherit the SIGTERM handler of atomic_output (the
    # pool ends its workers with SIGTERM) nor an open HDF5 handle.
    with (worker_results(function, list(tasks), processes, ordered=ordered) as results,
          atomic_output(path) as partial,
          hdf5_output(partial) as handle):
        if arguments is not None:
            handle.attrs["generator_arguments"] = json.dumps(arguments, sort_keys=True)
        out = GeneratedFile(handle, results, label, noun, total, progress)
        yield out
    out.report = GeneratorReport(os.fspath(path), out.done, noun, out.seconds, out.details)
    if progress:
        print(out.report.summary(label), file=sys.stderr, flush=True)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """The folder to write the folder ``path`` through: ``path.partial/`` next to it (made
    fresh; the parent folder is created), renamed to ``path`` after the ``with`` block succeeds
    and removed with everything in it if the block fails in any way (SIGTERM included). A
    previous ``path`` stays until the new folder replaces it."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise DataError(f"{target}: is a file; expected the name of a folder to write")
    partial = partial_path(target)
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    except OSError as err:
        raise DataError(f"{partial}: cannot create the folder ({err.strerror})") from None
    with (machine_failures(target, cleanup=lambda: shutil.rmtree(partial, ignore_errors=True),
                           kept="the previous folder is unchanged" if target.exists()
                           else "no folder was written"),
          _terminate_as_exception()):
        yield partial
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)


@contextlib.contextmanager
def generated_folder(path: str | os.PathLike, function: Callable[[Any], Any] | None = None,
                     tasks: list | tuple = (), *, label: str, noun: str, total: int,
                     processes: int = 1, ordered: bool = False, progress: bool = True
                     ) -> Iterator[GeneratedFolder]:
    """:func:`generated_file` for a generator that writes a folder of files (the workers may
    write into ``out.folder``, ``path.partial/``, whose name :func:`partial_path` gives before
    the block): the same pool, progress line and :class:`GeneratorReport`; the folder is
    renamed to ``path`` once complete and removed on any failure."""
    # The folder first and the pool inside it: workers may write into the folder as soon as
    # they start, and on a failure the pool has ended them before the folder is removed.
    with (atomic_folder(path) as partial,
          worker_results(function, list(tasks), processes, ordered=ordered) as results):
        out = GeneratedFolder(partial, results, label, noun, total, progress)
        yield out
    out.report = GeneratorReport(os.fspath(path), out.done, noun, out.seconds, out.details)
    if progress:
        print(out.report.summary(label), file=sys.stderr, flush=True)
