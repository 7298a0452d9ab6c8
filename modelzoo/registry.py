"""The zoo registry: cases, their model builders and tasks, and lookup by name.

A *case* is one package that holds everything one science problem needs (builders, reader,
generator, task, baseline, analysis, recipes, card text) and declares it in a :class:`Case`
named ``CASE`` in its ``__init__.py``. The zoo finds cases itself: every subpackage of
``modelzoo`` that defines ``CASE``, and every ``Case`` named by an entry point of the group
``modelzoo.cases`` in an installed distribution (a plugin)::

    [project.entry-points."modelzoo.cases"]
    mycase = "mypackage.mycase:CASE"

Builders are plain functions returning a ``keras.Model`` (timm's builders). A case names them as
``"module:function"``, so listing the zoo imports no deep-learning framework; the builder's
module is imported on first use. Users can also register a builder directly with the
``@register_model`` decorator and get ``get``/``list_models``/``info``.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.util
import inspect
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelzoo.errors import ConfigError, ModelNotFoundError
from modelzoo.manifest import has_pretrained

ENTRY_POINT_GROUP = "modelzoo.cases"


def _resolve(target: str) -> Any:
    """The object named by ``"package.module:attribute"``."""
    module, _, attribute = target.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attribute) if attribute else obj


@dataclass
class ModelSpec:
    """Everything the zoo knows about one registered model besides its weights.

    Attributes:
        name: registry key, e.g. ``"lhc_cnn"``.
        builder: function ``(**config) -> keras.Model``, or ``"module:function"`` naming it.
        domain: scientific field, e.g. ``"particle physics"``.
        problem: kind of problem, e.g. ``"classification"``, ``"density estimation"`` (the
            :class:`~modelzoo.tasks.Task` that trains it is named by its recipe's ``task``).
        inputs: human description of the input tensor(s).
        outputs: human description of the output(s).
        citation: the paper(s) the architecture follows.
        data_layout: the HDF5 layout the model's reader expects.
        recipe: path of the training recipe (YAML), or None.
        summary: one-line description (default: the builder docstring's first line).
        published: the published result(s) on real data, for model cards.
        case: name of the case the model belongs to ("" for a model registered by hand).
        search_space: hyperparameters for ``modelzoo tune``: ``{"section.key" or
            "model.<keyword>": spec}``, see :mod:`modelzoo.tuning`.
        sample: a small instance of the model and its data, which the conformance suite
            (``tests/test_conformance.py``) runs every check on: ``data``, the arguments of the
            case's generator for a few-row file in the model's layout at the shipped input
            shape; ``config``, builder keywords of a tiny model; ``recipe``, recipe overrides
            for training that tiny model on that file.
    """

    name: str
    builder: Callable[..., Any] | str
    domain: str = "unspecified"
    problem: str = "unspecified"
    inputs: str = ""
    outputs: str = ""
    citation: str = ""
    data_layout: str = ""
    recipe: str | None = None
    summary: str = ""
    published: str = ""
    case: str = ""
    search_space: dict[str, Any] = field(default_factory=dict)
    sample: dict[str, dict[str, Any]] = field(default_factory=dict)

    def function(self) -> Callable[..., Any]:
        """The builder function (imported on first use)."""
        if isinstance(self.builder, str):
            self.builder = _resolve(self.builder)
        return self.builder

    @property
    def defaults(self) -> dict[str, Any]:
        """Builder keyword defaults, read from the builder's signature."""
        return _builder_defaults(self.function())

    def as_dict(self) -> dict[str, Any]:
        """Metadata as plain data (no builder), for ``info`` and model cards."""
        return {
            "name": self.name,
            "case": self.case,
            "summary": self.summary or _first_line(self.function()),
            "domain": self.domain,
            "problem": self.problem,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "defaults": dict(self.defaults),
            "data_layout": self.data_layout,
            "citation": self.citation,
            "published": self.published,
            "recipe": self.recipe,
            "pretrained": has_pretrained(self.name),
        }


@dataclass(frozen=True)
class Case:
    """One case study, declared in its package's ``__init__.py`` as ``CASE``.

    Attributes:
        name: short name, e.g. ``"lhc"``; also the ``modelzoo data <name>`` command.
        title: one line, e.g. the seed's section title.
        package: the case's package (``__name__``); recipes are found in its ``recipes/``.
        models: the case's models; ``recipe`` is a file name inside ``recipes/``.
        tasks: task name (as recipes name it) -> ``"module:Class"`` of a :class:`Task`.
        data_command: ``"module"`` with ``add_arguments(parser)`` and ``run(args)`` for
            ``modelzoo data <name>``, or None.
        generator: ``"module:function"`` writing a synthetic file, called as
            ``fn(path, progress=False, **arguments)`` by the pretrained recipes, or None.
        card: markdown appended to the model cards of the case's models.
    """

    name: str
    title: str
    package: str
    models: tuple[ModelSpec, ...] = ()
    tasks: dict[str, str] = field(default_factory=dict)
    data_command: str | None = None
    generator: str | None = None
    card: str = ""

    def folder(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        return Path(spec.origin).parent


_REGISTRY: dict[str, ModelSpec] = {}
_TASKS: dict[str, Any] = {}
_CASES: dict[str, Case] = {}
_discovered = False


def _first_line(function: Callable[..., Any]) -> str:
    doc = inspect.getdoc(function) or ""
    return doc.splitlines()[0] if doc else ""


def _builder_defaults(builder: Callable[..., Any]) -> dict[str, Any]:
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


def _add(spec: ModelSpec, replace: bool) -> None:
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"model {spec.name!r} is already registered; pass replace=True to "
                         "override")
    _REGISTRY[spec.name] = spec


def register_model(
    _builder: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    replace: bool = False,
    **metadata: Any,
) -> Callable:
    """Register a builder. Use bare (``@register_model``) or with metadata keywords of
    :class:`ModelSpec` (``domain``, ``problem``, ``inputs``, ``recipe``, ...).

    The registry key is ``name`` or the function's name. Registering an existing name raises
    unless ``replace=True`` (so a user's module cannot silently shadow a zoo model).
    """

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        _builder_defaults(builder)  # refuse *args/**kwargs and keywords without defaults now
        spec = ModelSpec(name=name or builder.__name__, builder=builder, **metadata)
        _discover()
        _add(spec, replace)
        return builder

    return decorate(_builder) if _builder is not None else decorate


def register_case(case: Case) -> Case:
    """Add ``case`` with its models and tasks (done by discovery; call it for a case defined in a
    script)."""
    if case.name in _CASES and _CASES[case.name] is not case:
        raise ValueError(f"case {case.name!r} is already registered by "
                         f"{_CASES[case.name].package}")
    _CASES[case.name] = case
    folder = None
    for spec in case.models:
        if spec.recipe and not os.path.isabs(spec.recipe):
            folder = folder or case.folder()
            spec.recipe = str(folder / "recipes" / spec.recipe)
        spec.case = case.name
        _add(spec, replace=False)
    for task_name, target in case.tasks.items():
        _TASKS[task_name] = target
    return case


def _discover() -> None:
    """Register the built-in cases (subpackages of ``modelzoo`` with a ``CASE``) and the plugins
    (entry points of :data:`ENTRY_POINT_GROUP`), once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import modelzoo

    for module in pkgutil.iter_modules(modelzoo.__path__):
        if module.ispkg:
            case = getattr(importlib.import_module(f"modelzoo.{module.name}"), "CASE", None)
            if isinstance(case, Case):
                register_case(case)
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        case = point.load()
        if not isinstance(case, Case):
            raise TypeError(f"entry point {point.name} = {point.value} of group "
                            f"{ENTRY_POINT_GROUP} is a {type(case).__name__}, not a modelzoo Case")
        register_case(case)


def cases() -> dict[str, Case]:
    """Registered cases by name."""
    _discover()
    return dict(_CASES)


def register_task(name: str, task: type | str) -> None:
    """Make ``task`` (a subclass of :class:`modelzoo.tasks.Task`, or ``"module:Class"`` naming
    one, checked when first used) available to recipes under ``name``."""
    if not isinstance(task, str):
        _check_task_class(name, task)
    _TASKS[name] = task


def _check_task_class(name: str, task: Any) -> type:
    from modelzoo.tasks import Task

    if not (isinstance(task, type) and issubclass(task, Task)):
        raise TypeError(f"task {name!r} must be a subclass of modelzoo.tasks.Task, got "
                        f"{task!r}")
    return task


def get_task(name: str) -> Any:
    """A new instance of the task recipes call ``name`` (imported on first use): one per run,
    so that nothing a run learns crosses into another."""
    _discover()
    if name not in _TASKS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}")
    task = _TASKS[name]
    if isinstance(task, str):
        task = _TASKS[name] = _check_task_class(name, _resolve(task))
    return task()


def task_names() -> list[str]:
    """Names of the registered tasks."""
    _discover()
    return sorted(_TASKS)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` for ``name``; unknown names raise with suggestions."""
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ModelNotFoundError(
            f"unknown model {name!r}.{hint} Registered models: {', '.join(sorted(_REGISTRY))}"
        ) from None


def build(name: str, **config: Any):
    """Build ``name`` (a ``keras.Model``) with ``config`` overriding its registered defaults."""
    import keras

    spec = get_spec(name)
    defaults = spec.defaults
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ConfigError(
            f"{name}: unknown config key(s) {', '.join(unknown)}; accepted keys: "
            + ", ".join(f"{k} (default {v!r})" for k, v in defaults.items())
        )
    model = spec.function()(**config)
    if not isinstance(model, keras.Model):
        raise TypeError(f"builder for {name!r} returned {type(model).__name__}, not keras.Model")
    return model


def list_models(
    pattern: str | list[str] = "*",
    *,
    exclude: str | list[str] = (),
    domain: str | None = None,
    problem: str | None = None,
    pretrained: bool = False,
) -> list[str]:
    """Registered names matching shell wildcards, sorted.

    ``domain`` and ``problem`` match case-insensitively with wildcards too; ``pretrained=True``
    keeps only models that ship verified weights.
    """
    _discover()
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
        if problem and not fnmatch.fnmatch(spec.problem.lower(), problem.lower()):
            continue
        if pretrained and not has_pretrained(key):
            continue
        names.append(key)
    return sorted(names)
