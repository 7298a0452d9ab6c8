"""modelzoo: the LBNL deep-learning-for-science case studies as one Keras 3 model zoo.

    >>> import modelzoo
    >>> modelzoo.list_models("lhc*")
    ['lhc_cnn', 'lhc_cnn_15pf']
    >>> model = modelzoo.get("lhc_cnn", dropout=0.3)

Seed article: Prabhat, "A look at deep learning for science", O'Reilly, April 2017.
"""

from __future__ import annotations

from typing import Any

import keras

from modelzoo import models as _models  # noqa: F401  (registers the built-in builders)
from modelzoo import tasks as _tasks  # noqa: F401
from modelzoo.registry import ModelNotFoundError, ModelSpec, get_spec, list_models, register_model
from modelzoo.tasks import lhc as _lhc_task  # noqa: F401  (registers the LHC task)

__version__ = "0.1.0"
__all__ = [
    "ModelNotFoundError",
    "ModelSpec",
    "get",
    "info",
    "list_models",
    "register_model",
]


def get(name: str, weights: str | None = None, **config: Any) -> keras.Model:
    """A Keras functional model from the zoo.

    Args:
        name: registry name, see :func:`list_models`.
        weights: ``None`` for random initialisation.
        **config: builder keywords overriding the registered defaults; an unknown keyword raises
            and lists the accepted ones.
    """
    from modelzoo.registry import build

    if weights is not None:
        raise NotImplementedError("pretrained weights are not available yet; use weights=None")
    return build(name, **config)


def info(name: str) -> dict[str, Any]:
    """Metadata of a registered model: domain, task, inputs/outputs, defaults, citation, layout."""
    return get_spec(name).as_dict()
