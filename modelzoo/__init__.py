"""modelzoo: the LBNL deep-learning-for-science case studies as one Keras 3 model zoo.

    >>> import modelzoo
    >>> modelzoo.list_models("lhc*")
    ['lhc_cnn', 'lhc_cnn_15pf']
    >>> model = modelzoo.get("lhc_cnn", dropout=0.3)

Seed article: Prabhat, "A look at deep learning for science", O'Reilly, April 2017.
"""

from __future__ import annotations

import os
from typing import Any

# TensorFlow's C++ INFO/WARNING lines (no CUDA driver, oneDNN notes) drown the progress output
# scientists need to read; errors still show. An explicit setting by the user wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from modelzoo import models as _models  # noqa: F401, E402  (registers the built-in builders)
from modelzoo import pretrained
from modelzoo.pretrained import (
    PretrainedError,
    from_pretrained,
    list_pretrained,
    load_weights,
    save_pretrained,
)
from modelzoo.registry import (
    ModelNotFoundError,
    ModelSpec,
    build,
    get_spec,
    list_models,
    register_model,
)
from modelzoo.tasks import galaxy as _galaxy_task  # noqa: F401  (registers the galaxy task)
from modelzoo.tasks import lhc as _lhc_task  # noqa: F401  (registers the LHC task)

__version__ = "0.1.0"
__all__ = [
    "ModelNotFoundError",
    "ModelSpec",
    "PretrainedError",
    "from_pretrained",
    "get",
    "info",
    "list_models",
    "list_pretrained",
    "load_weights",
    "register_model",
    "save_pretrained",
]


def get(name: str, weights: str | None = None, **config: Any) -> keras.Model:
    """A Keras functional model from the zoo.

    Args:
        name: registry name, see :func:`list_models`.
        weights: ``None`` for random initialisation, ``"default"`` or a tag for the shipped
            weights (sha256-checked; see :func:`list_pretrained`).
        **config: builder keywords overriding the registered defaults; an unknown keyword raises
            and lists the accepted ones.
    """
    if weights is not None:
        return pretrained.build_pretrained(name, weights, config)
    model = build(name, **config)
    pretrained.remember_build(model, name, config)
    return model


def info(name: str) -> dict[str, Any]:
    """Metadata of a registered model: domain, task, inputs/outputs, defaults, citation, layout."""
    return get_spec(name).as_dict()
