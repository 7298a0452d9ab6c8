"""The zoo's own user errors: the CLI prints these as one line; anything else is a bug and keeps
its traceback."""

from __future__ import annotations


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
