"""A checked workflow, ready to run: steps with their configs and dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fetchflow.step import Step
from fetchflow.templating import Templates
from fetchflow.workflow.graph import downstream_of, topological_order
from fetchflow.workflow.spec import StepCommon, WorkflowHeader

__all__ = ["Plan", "PlannedStep"]


@dataclass(frozen=True)
class PlannedStep:
    """One step of a checked workflow.

    Attributes:
        common: The keys every step has (id, type, policies).
        step_cls: The step type's class.
        raw_config: The step-type fields as written (templates not rendered).
        templated: The config fields that hold templates.
        depends_on: Steps that must finish first (references and ``needs``), file order.
        line: The line the step starts on.
    """

    common: StepCommon
    step_cls: type[Step[Any, Any]]
    raw_config: dict[str, object]
    templated: frozenset[str]
    depends_on: tuple[str, ...]
    line: int

    @property
    def id(self) -> str:
        """The step id."""
        return self.common.id

    @property
    def type(self) -> str:
        """The step type name."""
        return self.common.type

    @property
    def title(self) -> str:
        """The step's readable name (its id when it has none)."""
        return self.common.name or self.common.id


@dataclass(frozen=True)
class Plan:
    """A workflow that passed every static check.

    Attributes:
        header: Name, description and inputs.
        steps: The steps by id, in file order.
        file: The workflow file.
        templates: The template environment (with the workflow's ``templates/`` folders).
    """

    header: WorkflowHeader
    steps: dict[str, PlannedStep]
    file: Path
    templates: Templates = field(repr=False)

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self.header.name

    @property
    def edges(self) -> dict[str, tuple[str, ...]]:
        """``{step: steps it depends on}``."""
        return {step_id: step.depends_on for step_id, step in self.steps.items()}

    def order(self) -> list[str]:
        """A topological order of the steps (file order among independent ones)."""
        return topological_order(self.edges)

    def downstream(self, step_id: str) -> list[str]:
        """Every step that depends on ``step_id``, directly or not."""
        return downstream_of(self.edges, step_id)

    @property
    def billable_steps(self) -> list[PlannedStep]:
        """Steps whose run can cost money."""
        return [step for step in self.steps.values() if step.step_cls.billable]

    @property
    def needs_store(self) -> bool:
        """Whether any step writes files (so the store is checked before the run)."""
        return any(step.step_cls.produces_files for step in self.steps.values())
