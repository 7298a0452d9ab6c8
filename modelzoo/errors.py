"""The zoo's own user errors: the CLI prints these as one line; anything else is a bug and keeps
its traceback."""

from __future__ import annotations

import errno
import os
import re


class ZooError(Exception):
    """Base of every error caused by the user's input (files, names, settings), not by a bug."""


class DataError(ZooError, ValueError):
    """A data file does not have the layout or content a reader expects."""


class PretrainedError(ZooError, ValueError):
    """Weights that cannot be used: missing, corrupt, or not matching the model."""


class ConfigError(ZooError, ValueError):
    """A recipe key, builder keyword or setting that does not exist or has a wrong value."""


class ModelNotFoundError(ZooError, KeyError):
    """An unknown model name; the message suggests the closest registered names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class WriteError(ZooError, OSError):
    """The machine could not write a file (disk full, file-size limit, quota): what failed is
    said in one line, and the previous complete file, if any, is left as it was."""


_MACHINE_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def machine_failure(err: BaseException) -> str | None:
    """The reason (e.g. "No space left on device") when ``err`` or an error it came from is a
    full disk, a file-size limit or a quota; None otherwise. HDF5 reports these as a
    RuntimeError whose message carries the system's text, numpy as a short write."""
    seen: BaseException | None = err
    while seen is not None:
        number = getattr(seen, "errno", None)
        if number in _MACHINE_ERRNOS:
            return os.strerror(number)
        text = str(seen)
        for number in _MACHINE_ERRNOS:
            if os.strerror(number) in text or f"errno = {number}," in text:
                return os.strerror(number)
        if isinstance(seen, OSError) and re.search(r"\d+ requested and \d+ written", text):
            return "short write: the disk is full or the file hit a size limit"
        seen = seen.__cause__ or seen.__context__
    return None
