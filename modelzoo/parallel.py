"""Worker processes for the synthetic-data generators of every case."""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def _start_method() -> str:
    # fork: workers inherit the imported modules; spawn would re-import modelzoo and with it
    # TensorFlow in every worker. Generator workers only run numpy and the field libraries
    # (Pythia, GalSim, pyccl), so forking is safe.
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "spawn"


@contextlib.contextmanager
def unordered_results(function: Callable[[Any], Any], tasks: list,
                      processes: int) -> Iterator[Iterable[Any]]:
    """``function(task)`` for every task, as they finish: in this process when ``processes``
    is 1 (or there is one task), else in a pool of ``processes`` workers. Each result must say
    which rows it holds, since arrival order is not task order. Open the output file inside the
    ``with`` block: the pool is forked first, so no worker inherits an open HDF5 handle."""
    if processes <= 1 or len(tasks) <= 1:
        yield (function(task) for task in tasks)
        return
    with multiprocessing.get_context(_start_method()).Pool(min(processes, len(tasks))) as pool:
        yield pool.imap_unordered(function, tasks, chunksize=1)
