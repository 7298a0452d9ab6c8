"""modelzoo: the LBNL deep-learning-for-science case studies as one Keras 3 model zoo.

    >>> import modelzoo
    >>> modelzoo.list_models("lhc*")
    ['lhc_cnn', 'lhc_cnn_15pf']
    >>> model = modelzoo.get("lhc_cnn", dropout=0.3)
    >>> model = modelzoo.get("lhc_cnn", weights="default")

Importing the package imports no deep-learning framework: listing and describing models is
instant, and TensorFlow loads when a model is first built.

Seed article: Prabhat, "A look at deep learning for science", O'Reilly, April 2017.
"""

from __future__ import annotations

import os
from typing import Any

from modelzoo._quiet import quiet_tensorflow

quiet_tensorflow()

from modelzoo.errors import (  # noqa: E402
    ConfigError,
    DataError,
    ModelNotFoundError,
    PretrainedError,
    ZooError,
)
from modelzoo.registry import (  # noqa: E402
    Case,
    ModelSpec,
    build,
    cases,
    get_spec,
    list_models,
    register_case,
    register_model,
)

__version__ = "0.1.0"
__all__ = [
    "Case",
    "ConfigError",
    "DataError",
    "ModelNotFoundError",
    "ModelSpec",
    "PretrainedError",
    "ZooError",
    "build",
    "cases",
    "get",
    "info",
    "list_models",
    "list_pretrained",
    "register_case",
    "register_model",
    "save_pretrained",
]


def get(name: str, weights: str | os.PathLike | None = None, **config: Any):
    """A Keras functional model from the zoo: the one public way to a model, with or without
    weights.

    Args:
        name: registry name, see :func:`list_models`.
        weights: ``None`` for random initialisation; ``"default"`` or a tag for the shipped
            weights (sha256-checked; see :func:`list_pretrained`); or the path of a weights
            file, a model folder (:func:`save_pretrained`) or a run folder (``modelzoo train``).
        **config: builder keywords overriding the registered defaults; an unknown keyword raises
            and lists the accepted ones.
    """
    from modelzoo import pretrained

    if weights is not None:
        return pretrained._with_weights(name, weights, config)
    model = build(name, **config)
    pretrained.remember_build(model, name, config)
    return model


def info(name: str) -> dict[str, Any]:
    """Metadata of a registered model: case, domain, problem, inputs/outputs, defaults, citation,
    data layout, recipe, whether weights ship."""
    return get_spec(name).as_dict()


def list_pretrained(pattern: str = "*") -> list[str]:
    """Shipped ``model.tag`` entries whose model name matches ``pattern``."""
    from modelzoo import manifest

    return manifest.list_pretrained(pattern)


def save_pretrained(model, folder: str | os.PathLike, **kwargs: Any):
    """Write ``model`` as a model folder; see :func:`modelzoo.pretrained.save_pretrained`."""
    from modelzoo import pretrained

    return pretrained.save_pretrained(model, folder, **kwargs)
