"""The step plugin API: the ``Step`` base class and its run context.

A step type is a class that names its config model and output type once, in its class line,
and implements ``run(config, ctx)``::

    class WatermarkStep(Step[WatermarkConfig, list[Asset]]):
        def run(self, config: WatermarkConfig, ctx: StepContext) -> list[Asset]: ...

``config_model`` and ``output_type`` are read from ``Step[...]`` (setting them as class
attributes still works; they must then agree with it). Step types are found through the
``fetchflow.steps`` entry-point group, the built-in ones included, so a third-party package
adds a step exactly the way ``steps/`` does::

    [project.entry-points."fetchflow.steps"]
    watermark = "my_package.watermark:WatermarkStep"

A step with ``matrix:`` (any step type; the engine runs it once per combination of the
axis values and joins the outputs into one list) gets one more call when every
combination has run: :meth:`Step.finish_matrix` (default: the output unchanged), where a
step can add to the joined output, such as an image grid of the combinations.

The registry checks each class when it loads it (:func:`definition_problem`): a config model
derived from :class:`StepConfig`, an output type with a JSON Schema, ``run`` implemented.

Config models validate flat YAML fields. Cross-field rules are model validators that raise
:class:`RuleViolation` naming their ``fields``; a rule that involves a field still holding a
template is checked once the template is rendered, before ``run`` is called. The static
check lets such a violation wait by itself; :func:`deferred` skips the rule up front, so the
rules after it are still checked with the fields' values::

    @model_validator(mode="after")
    def _compression_needs_lossy_format(self, info: ValidationInfo) -> Self:
        if deferred(info, "output_format", "output_compression"):
            return self
        ...
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    Protocol,
    TypeVar,
    get_args,
    get_origin,
    runtime_checkable,
)

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationInfo

from fetchflow.errors import RuleViolation

if TYPE_CHECKING:
    from fetchflow.settings import Settings
    from fetchflow.storage import AssetStore
    from fetchflow.templating import Templates

__all__ = [
    "PROJECT_ROOT_CONTEXT_KEY",
    "TEMPLATED_CONTEXT_KEY",
    "CostEstimate",
    "OutputLength",
    "Previews",
    "Progress",
    "RuleViolation",
    "Step",
    "StepConfig",
    "StepContext",
    "deferred",
    "definition_problem",
    "project_root",
    "static_project_root",
    "step_type_arguments",
]

TEMPLATED_CONTEXT_KEY = "fetchflow_templated"
PROJECT_ROOT_CONTEXT_KEY = "fetchflow_project_root"


class StepConfig(BaseModel):
    """Base for step config models: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


ConfigT = TypeVar("ConfigT", bound=StepConfig)
OutputT = TypeVar("OutputT")


@dataclass(frozen=True)
class CostEstimate:
    """What running a step is expected to cost, from published prices.

    Attributes:
        cost_usd: The expected cost; 0 for free work, None when no price is published.
        images: How many images it will make, when it makes images.
        detail: How the estimate was made (``2 x gpt-image-2 high 1024x1024``).
    """

    cost_usd: float | None
    images: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class OutputLength:
    """How many items a step's output list has, as far as its fields say before the run.

    The static check compares constant indexes (``hero.output.5``) against it.

    Attributes:
        items: The number of items; None when a field that decides it is a template.
        fields: The fields that decide it (named in messages: ``("count",)``).
        at_most: The most items it can have whatever its templates give (None: no bound).
        once: Of these, the items a step with ``matrix:`` adds once for all its
            combinations (in :meth:`Step.finish_matrix`), not once per combination (an
            image step's contact sheet); at most this many when a field is a template.
        why: Why only ``at_most`` is known although no field is a template (an image step
            with ``on_moderation: skip`` may leave images out), for messages; "" otherwise.
    """

    items: int | None
    fields: tuple[str, ...]
    at_most: int | None = None
    once: int = 0
    why: str = ""

    @classmethod
    def counted(
        cls,
        model: type[BaseModel],
        fields: Mapping[str, object],
        templated: frozenset[str],
        name: str = "count",
    ) -> OutputLength | None:
        """One item per unit of the integer field ``name`` (its default when left out).

        A templated count is bounded by the field's ``le`` limit; None when the value
        written breaks the field's type or limits (that is the field's own problem).
        """
        info = model.model_fields[name]
        bounds = {
            key: bound
            for key in ("ge", "le")
            for m in info.metadata
            if isinstance(bound := getattr(m, key, None), int)
        }
        if name in templated:
            return cls(None, (name,), at_most=bounds.get("le"))
        value = fields.get(name, info.default)
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        if not bounds.get("ge", value) <= value <= bounds.get("le", value):
            return None
        return cls(value, (name,), at_most=value)


def deferred(info: ValidationInfo, *fields: str) -> bool:
    """Whether a cross-field rule must wait because one of ``fields`` is still a template.

    During the static check (``fetchflow validate`` and the start of a run) fields whose
    value is a template are not known yet; the rule is then checked after rendering, still
    before the step runs.
    """
    context = info.context
    if not isinstance(context, dict):
        return False
    templated = context.get(TEMPLATED_CONTEXT_KEY, frozenset())
    return any(name in templated for name in fields)


def project_root(search_path: Sequence[Path]) -> Path:
    """The project folder, which relative file paths in steps are read under: the folder
    holding the first ``templates/`` of the template search path, else the current folder.
    """
    for folder in search_path:
        if folder.name == "templates":
            return folder.resolve().parent
    return Path.cwd().resolve()


def static_project_root(info: ValidationInfo) -> Path | None:
    """The project folder during the static check (to check that files exist), else None.

    At run time the step reads its files and reports a missing one itself.
    """
    context = info.context
    root = context.get(PROJECT_ROOT_CONTEXT_KEY) if isinstance(context, dict) else None
    return root if isinstance(root, Path) else None


class Progress(Protocol):
    """Progress of a step that makes several things (shown live in the Prefect UI)."""

    def start(self, total: int) -> None:
        """Begin: ``total`` items are to be made."""

    def advance(self, done: int = 1) -> None:
        """``done`` more items are finished."""


@runtime_checkable
class Previews(Progress, Protocol):
    """A :class:`Progress` that can also show drafts (the run's progress artifact can)."""

    def preview(self, item: int, label: str, image: bytes) -> None:
        """Show a draft of item ``item`` (0-based) while it is being made, e.g. a partial
        image streamed by the provider (``label``: ``partial 1 of 2``); the item's latest
        draft replaces the one before. A display only: the draft is not an output."""


@dataclass(frozen=True)
class StepContext:
    """What a running step may use besides its config.

    Attributes:
        step_id: The step's id in the workflow.
        step_type: The step's type name.
        run_id: The run's id (the Prefect flow run id).
        run_name: The run's display name.
        workflow: The workflow's name.
        started_at: When the run started (UTC).
        logger: Where the step logs (the Prefect run logger during a run).
        settings: fetchflow's settings.
        templates: The run's template environment.
        scope: The template scope of this step (``inputs``, ``run``, upstream steps).
        open_store: Opens the run's asset store on first use.
        read_secret: Reads a named secret (a Prefect Secret block during a run); the value
            is never logged, templated or stored by the engine.
        progress: Reports progress of a multi-item step, when the run shows it.
        timeout_seconds: The step's ``timeout_seconds``: network calls should not wait
            longer (the engine can only interrupt Python code, not a blocked socket read).
        kept: On ``--resume`` (or when a crashed run is run again), what the earlier run of
            this step made and kept (its partial output, or the items it recorded with
            :meth:`keep`), as JSON data with fresh links: a step that can makes only the
            rest. None otherwise.
        on_kept: Records one paid item in the run's checkpoints (see :meth:`keep`).
        combinations: In :meth:`Step.finish_matrix`: every combination of the matrix, in
            order, those that made nothing included (a grid keeps their rows and columns).
    """

    step_id: str
    step_type: str
    run_id: str
    run_name: str
    workflow: str
    started_at: datetime
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    settings: Settings
    templates: Templates
    scope: Mapping[str, object]
    open_store: Callable[[], AssetStore] | None = field(default=None, repr=False)
    read_secret: Callable[[str], str] | None = field(default=None, repr=False)
    progress: Progress | None = field(default=None, repr=False)
    timeout_seconds: float | None = None
    kept: object = field(default=None, repr=False)
    on_kept: Callable[[object], None] | None = field(default=None, repr=False)
    combinations: tuple[Mapping[str, object], ...] = ()

    def keep(self, item: object) -> None:
        """Record one paid piece of work the moment it is stored (an image's record, as
        JSON data), in the run's checkpoints in the store.

        A step that makes several billable things calls it for each one: if the process
        dies before the step ends, ``--resume`` (or the re-run of a crashed run) hands the
        recorded items back as :attr:`kept`, and nothing is paid for twice.
        """
        if self.on_kept is not None:
            self.on_kept(item)

    def interrupted(self) -> bool:
        """Whether the run was asked to stop (Ctrl-C, SIGTERM): start nothing billable."""
        from fetchflow.interrupt import stop_requested

        return stop_requested()

    def check_interrupt(self, what: str = "") -> None:
        """Call before each billable call: raises once the run was asked to stop.

        Args:
            what: What would have started (``image 2 of 3``), for the message.

        Raises:
            Interrupted: A stop was requested; not retried. Hand on what the step made
                before it as the error's ``partial_output`` so the run keeps it.
        """
        from fetchflow.interrupt import check_interrupt

        check_interrupt(what)

    @property
    def store(self) -> AssetStore:
        """The run's asset store (every file a step produces goes through it)."""
        if self.open_store is None:
            raise RuntimeError("this run has no asset store")
        return self.open_store()

    def secret(self, name: str) -> str:
        """The value of the secret called ``name`` (a Prefect Secret block during a run).

        Raises:
            StepError: There is no such secret, or this run cannot read secrets.
        """
        from fetchflow.errors import StepError

        if self.read_secret is None:
            raise StepError(
                message=f'cannot read secret "{name}": this run has no secret store',
                hint="run the workflow with fetchflow run (secrets are Prefect Secret blocks)",
                retryable=False,
            )
        return self.read_secret(name)

    def render_file(self, name: str) -> str:
        """Render a template from the ``templates/`` search path with this step's scope."""
        return self.templates.render_file(name, self.scope)


class Step(ABC, Generic[ConfigT, OutputT]):
    """Base class of every step type: ``class MyStep(Step[MyConfig, MyOutput])``.

    Class attributes:
        config_model: The pydantic model of the step's YAML fields (a :class:`StepConfig`);
            read from ``Step[ConfigT, ...]`` when the class does not set it.
        output_type: The type of what ``run`` returns (a model, ``str``, ``list[...]``);
            read from ``Step[..., OutputT]`` when the class does not set it. Its JSON
            Schema is what template references are checked against.
        billable: Whether running the step can cost money (approval, budgets).
        produces_files: Whether the step writes through the asset store (pre-flight).
        template_file_fields: Config fields that name a file under ``templates/``; the
            file's references are checked statically like inline templates.
        approval_fields: Config fields a reviewer may edit when the step waits for
            approval (``approval: required``), in the order the form shows them.
    """

    config_model: ClassVar[type[StepConfig]]
    output_type: ClassVar[Any]
    billable: ClassVar[bool] = False
    produces_files: ClassVar[bool] = False
    template_file_fields: ClassVar[tuple[str, ...]] = ()
    approval_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Read ``config_model`` and ``output_type`` from ``Step[...]`` unless set here.

        Only what the class line states concretely is taken (a generic base such as
        ``class ImageStep(Step[C, O])`` leaves them to its subclasses); whether the result
        is usable is checked when the registry loads the class (:func:`definition_problem`).
        """
        super().__init_subclass__(**kwargs)
        stated = step_type_arguments(cls)
        if stated is None:
            return
        config, output = stated
        if "config_model" not in cls.__dict__ and isinstance(config, type):
            cls.config_model = config
        if "output_type" not in cls.__dict__ and not isinstance(output, TypeVar):
            cls.output_type = output

    @abstractmethod
    def run(self, config: ConfigT, ctx: StepContext) -> OutputT:
        """Do the step's work and return its output."""

    @classmethod
    def preflight(cls, raw_config: Mapping[str, object], settings: Settings) -> None:
        """Check, right before a run, what this step needs from the machine.

        Called once per step with its fields as written (templates not rendered), after the
        static check and before any step starts, so a missing API key or a misconfigured
        endpoint is an error before anything billable runs. Raise a ``StepError``.
        """
        return

    @classmethod
    def estimate(cls, config: ConfigT, settings: Settings) -> CostEstimate | None:
        """What running the step with ``config`` is expected to cost (None: nothing).

        Billable steps override it; an approval form and ``--dry-run`` show the result.
        """
        return None

    def finish_matrix(self, config: ConfigT, output: OutputT, ctx: StepContext) -> OutputT:
        """Called once after every combination of a step with ``matrix:`` has run (only
        for a step whose output is a list; otherwise the output is one item per combination).

        Args:
            config: The first combination's rendered config.
            output: The step's flat output, every combination's items in combination order.
            ctx: The step's context (no matrix values in its scope).

        Returns:
            The step's output; the default returns ``output`` unchanged. An image step can
            append a record (a contact sheet of the combinations, say).
        """
        return output

    @classmethod
    def output_length(
        cls, fields: Mapping[str, object], templated: frozenset[str]
    ) -> OutputLength | None:
        """How many items the output list will have, read from the fields before the run.

        ``fields`` are the step's fields as written (templates not rendered; possibly
        invalid, which is reported on its own); ``templated`` names those holding a
        template. None (the default): only the run knows.
        """
        return None

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @classmethod
    def output_schema(cls) -> dict[str, Any]:
        """JSON Schema of the step's output (cached per class)."""
        return _output_schema(cls)

    @classmethod
    def dump_output(cls, output: object) -> object:
        """The output as JSON-compatible data: what downstream templates see."""
        return _output_adapter(cls).dump_python(output, mode="json")


@cache
def _output_adapter(cls: type[Step[Any, Any]]) -> TypeAdapter[Any]:
    return TypeAdapter(cls.output_type)


@cache
def _output_schema(cls: type[Step[Any, Any]]) -> dict[str, Any]:
    return _output_adapter(cls).json_schema(mode="serialization")


def _substitute(value: object, mapping: Mapping[object, object]) -> object:
    """``value`` with the type variables in ``mapping`` replaced (``list[T]`` -> ``list[X]``)."""
    if isinstance(value, TypeVar):
        return mapping.get(value, value)
    parameters = getattr(value, "__parameters__", ())
    if parameters and get_origin(value) is not None:
        return value[tuple(mapping.get(p, p) for p in parameters)]  # type: ignore[index]
    return value


def step_type_arguments(cls: type) -> tuple[object, object] | None:
    """What ``cls`` states for ``Step[ConfigT, OutputT]``, through generic bases; None if nothing.

    ``class A(Step[X, Y])`` gives ``(X, Y)``; ``class B(Base[X])`` where
    ``class Base(Step[C, list[C]])`` gives ``(X, list[X])``; a type variable left open
    stays a ``TypeVar``.
    """
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = get_origin(base)
        if origin is Step:
            config, output = get_args(base)
            return config, output
        if isinstance(origin, type) and issubclass(origin, Step):
            inner = step_type_arguments(origin)
            if inner is not None:
                parameters = origin.__dict__.get("__parameters__", ())
                mapping = dict(zip(parameters, get_args(base), strict=False))
                return _substitute(inner[0], mapping), _substitute(inner[1], mapping)
    for parent in cls.__bases__:
        if parent is not Step and issubclass(parent, Step):
            inherited = step_type_arguments(parent)
            if inherited is not None:
                return inherited
    return None


def _type_name(value: object) -> str:
    if isinstance(value, type) and get_origin(value) is None:
        return value.__qualname__
    return repr(value).replace("typing.", "")


def definition_problem(cls: type[Step[Any, Any]]) -> tuple[str, str] | None:
    """What makes ``cls`` unusable as a step type, as ``(message, hint)``; None if nothing.

    Checked: a config model derived from :class:`StepConfig` and an output type, both stated
    in ``Step[...]`` (or set as class attributes that then agree with it), the output type
    has a JSON Schema, and ``run`` is implemented.
    """
    name = cls.__name__
    shape = f"class {name}(Step[{name.removesuffix('Step')}Config, OutputType])"
    stated = step_type_arguments(cls)
    config: object = getattr(cls, "config_model", None)
    output: object = getattr(cls, "output_type", None)
    for what, value, index in (("config model", config, 0), ("output type", output, 1)):
        if value is None:
            return (
                f"{name} does not say its {what}",
                f"state the config model and output type in the class line: {shape}",
            )
        said = stated[index] if stated is not None else value
        if not isinstance(said, TypeVar) and value != said:
            attribute = "config_model" if index == 0 else "output_type"
            return (
                f"{name} sets {attribute} = {_type_name(value)} but its class line says "
                f"{_type_name(said)}",
                f"remove {attribute} (the class line says it once) or make them the same",
            )
    if not (isinstance(config, type) and issubclass(config, StepConfig)):
        return (
            f"{name}'s config model {_type_name(config)} is not a fetchflow StepConfig",
            f"derive {_type_name(config)} from fetchflow.StepConfig (unknown fields are then "
            "errors and values immutable)",
        )
    try:
        _output_schema(cls)
    except Exception as error:  # pydantic's schema errors have no common base worth naming
        # Pydantic's first sentence says what it could not describe; the rest is its advice.
        reason = str(error).splitlines()[0].split(". ")[0] if str(error) else type(error).__name__
        return (
            f"{name}'s output type {_type_name(output)} has no JSON Schema ({reason})",
            "return a pydantic model, a dataclass or JSON types (str, int, float, bool, "
            "list[...], dict[str, ...]); references to the output are checked against its "
            "schema",
        )
    if getattr(cls.run, "__isabstractmethod__", False):
        return (
            f"{name} does not implement run(config, ctx)",
            f"add def run(self, config: {_type_name(config)}, ctx: StepContext) -> "
            f"{_type_name(output)} to {name}",
        )
    return None
