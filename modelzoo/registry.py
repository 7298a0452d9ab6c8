"""The zoo registry: model builders, their metadata, and lookup by name.

Builders are plain functions returning a ``keras.Model``; ``@register_model`` records them with a
:class:`ModelSpec` (after timm's ``register_model`` and torchvision's ``get_model``). Users
register their own builders the same way and get ``get``/``list_models``/``info`` and the CLI.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras


class ModelNotFoundError(KeyError):
    """An unknown model name; the message suggests the closest registered names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class ModelSpec:
    """Everything the zoo knows about one registered model besides its weights.

    Attributes:
        name: registry key, e.g. ``"lhc_cnn"``.
        builder: function ``(**config) -> keras.Model``.
        domain: scientific field, e.g. ``"particle physics"``.
        task: e.g. ``"classification"``, ``"density estimation"``.
        inputs: human description of the input tensor(s).
        outputs: human description of the output(s).
        citation: the paper(s) the architecture follows.
        data_layout: the HDF5 layout the model's reader expects.
        defaults: builder keyword defaults, read from the builder's signature.
        recipe: name of the training recipe (``modelzoo/configs/<recipe>.yaml``), or None.
        summary: one-line description.
        published: the published result(s) on real data, for model cards.
    """

    name: str
    builder: Callable[..., keras.Model]
    domain: str
    task: str
    inputs: str
    outputs: str
    citation: str
    data_layout: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    summary: str = ""
    published: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Metadata as plain data (no builder), for ``info`` and model cards."""
        return {
            "name": self.name,
            "summary": self.summary,
            "domain": self.domain,
            "task": self.task,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "defaults": dict(self.defaults),
            "data_layout": self.data_layout,
            "citation": self.citation,
            "published": self.published,
            "recipe": self.recipe,
            "pretrained": has_pretrained(self.name),
        }


_REGISTRY: dict[str, ModelSpec] = {}
# Set by modelzoo.pretrained at import: name -> bool. Kept as a hook so the registry does not
# import the weights machinery (and the weights machinery can list what it ships).
_pretrained_lookup: Callable[[str], bool] = lambda name: False  # noqa: E731


def has_pretrained(name: str) -> bool:
    """Whether verified weights ship for ``name``."""
    return _pretrained_lookup(name)


def _builder_defaults(builder: Callable[..., keras.Model]) -> dict[str, Any]:
    defaults = {}
    for param in inspect.signature(builder).parameters.values():
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            raise TypeError(
                f"builder {builder.__name__} takes *args/**kwargs; the zoo needs named "
                "keyword parameters so it can validate config keys"
            )
        if param.default is param.empty:
            raise TypeError(f"builder {builder.__name__}: parameter {param.name!r} needs a default")
        defaults[param.name] = param.default
    return defaults


def register_model(
    _builder: Callable[..., keras.Model] | None = None,
    *,
    name: str | None = None,
    domain: str = "unspecified",
    task: str = "unspecified",
    inputs: str = "",
    outputs: str = "",
    citation: str = "",
    data_layout: str = "",
    recipe: str | None = None,
    published: str = "",
    replace: bool = False,
) -> Callable:
    """Register a builder. Use bare (``@register_model``) or with metadata.

    The registry key is ``name`` or the function's name. Registering an existing name raises
    unless ``replace=True`` (so a user's module cannot silently shadow a zoo model).
    """

    def decorate(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        key = name or builder.__name__
        if key in _REGISTRY and not replace:
            raise ValueError(f"model {key!r} is already registered; pass replace=True to override")
        doc = inspect.getdoc(builder) or ""
        _REGISTRY[key] = ModelSpec(
            name=key,
            builder=builder,
            domain=domain,
            task=task,
            inputs=inputs,
            outputs=outputs,
            citation=citation,
            data_layout=data_layout,
            defaults=_builder_defaults(builder),
            recipe=recipe,
            summary=doc.splitlines()[0] if doc else "",
            published=published,
        )
        return builder

    return decorate(_builder) if _builder is not None else decorate


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` for ``name``; unknown names raise with suggestions."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ModelNotFoundError(
            f"unknown model {name!r}.{hint} Registered models: {', '.join(sorted(_REGISTRY))}"
        ) from None


def build(name: str, **config: Any) -> keras.Model:
    """Build ``name`` with ``config`` overriding its registered defaults."""
    spec = get_spec(name)
    unknown = sorted(set(config) - set(spec.defaults))
    if unknown:
        raise TypeError(
            f"{name}: unknown config key(s) {', '.join(unknown)}; accepted keys: "
            + ", ".join(f"{k} (default {v!r})" for k, v in spec.defaults.items())
        )
    model = spec.builder(**config)
    if not isinstance(model, keras.Model):
        raise TypeError(f"builder for {name!r} returned {type(model).__name__}, not keras.Model")
    return model


def list_models(
    pattern: str | list[str] = "*",
    *,
    exclude: str | list[str] = (),
    domain: str | None = None,
    task: str | None = None,
    pretrained: bool = False,
) -> list[str]:
    """Registered names matching shell wildcards, sorted.

    ``domain`` and ``task`` match case-insensitively with wildcards too; ``pretrained=True``
    keeps only models that ship verified weights.
    """
    include = [pattern] if isinstance(pattern, str) else list(pattern)
    excludes = [exclude] if isinstance(exclude, str) else list(exclude)
    names = []
    for key, spec in _REGISTRY.items():
        if not any(fnmatch.fnmatchcase(key, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(key, p) for p in excludes):
            continue
        if domain and not fnmatch.fnmatch(spec.domain.lower(), domain.lower()):
            continue
        if task and not fnmatch.fnmatch(spec.task.lower(), task.lower()):
            continue
        if pretrained and not has_pretrained(key):
            continue
        names.append(key)
    return sorted(names)
