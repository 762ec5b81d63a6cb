"""Cost before spending: an estimate per step and per run, a budget that stops a run.

Estimates come from each step type's :meth:`~fetchflow.step.Step.estimate` (the image
steps read the model catalog's published prices). Values that depend on upstream outputs
(a prompt made by an earlier step) are not known before the run; a field whose template
cannot be rendered yet is estimated from its template text, which is enough for what prices
depend on (model, count, size, quality). Nothing here calls a provider or writes anything.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from fetchflow.errors import BudgetExceeded, RunError, TemplateError
from fetchflow.field_issues import translate_errors
from fetchflow.run.matrix_execution import resolve_combinations
from fetchflow.settings import Settings
from fetchflow.step import CostEstimate
from fetchflow.templating import Templates
from fetchflow.workflow.matrix import combination_label
from fetchflow.workflow.plan import Plan, PlannedStep

__all__ = [
    "BudgetExceeded",
    "PlanEstimate",
    "StepEstimate",
    "check_budget",
    "estimate_plan",
    "format_estimate",
]


@dataclass(frozen=True)
class StepEstimate:
    """One step's expected cost.

    Attributes:
        step: The step.
        estimate: What the step type estimated; None for steps that cost nothing. For a
            step with a matrix, the sum of its combinations.
        note: Why there is no estimate, when there is none for a billable step.
        combinations: For a step with a matrix: each combination's axis values and
            estimate, in run order.
    """

    step: PlannedStep
    estimate: CostEstimate | None
    note: str = ""
    combinations: tuple[tuple[dict[str, object], CostEstimate | None], ...] = ()

    @property
    def cost_usd(self) -> float | None:
        """The expected cost: 0 for free steps, None when it cannot be known."""
        if not self.step.step_cls.billable:
            return 0.0
        return self.estimate.cost_usd if self.estimate is not None else None


@dataclass(frozen=True)
class PlanEstimate:
    """The expected cost of a whole run."""

    steps: list[StepEstimate] = field(default_factory=list)

    @property
    def total_usd(self) -> float | None:
        """The sum, or None when a billable step's cost is unknown."""
        costs = [row.cost_usd for row in self.steps]
        return None if None in costs else sum(c for c in costs if c is not None)

    @property
    def unknown(self) -> list[StepEstimate]:
        """Billable steps whose cost cannot be estimated."""
        return [row for row in self.steps if row.cost_usd is None]


def _estimation_config(
    step: PlannedStep, templates: Templates, scope: Mapping[str, object]
) -> BaseModel:
    """The config as far as it is known before the run (see the module docstring)."""
    values: dict[str, object] = {}
    for name, value in step.raw_config.items():
        if name in step.templated:
            try:
                values[name] = templates.render_value(value, scope)
            except Exception:  # needs upstream outputs: the template text stands in
                values[name] = value
        else:
            values[name] = value
    return step.step_cls.config_model.model_validate(values)


def estimate_plan(
    plan: Plan,
    inputs: Mapping[str, object],
    settings: Settings,
    reused: Collection[str] = (),
) -> PlanEstimate:
    """Estimate every step of a plan with the given inputs, calling nothing.

    Steps in ``reused`` (their output comes from an earlier run) cost nothing.
    """
    scope: dict[str, object] = {
        "inputs": dict(inputs),
        "run": {"id": "(dry run)", "name": "(dry run)", "started_at": ""},
    }
    rows: list[StepEstimate] = []
    for step_id in plan.order():
        step = plan.steps[step_id]
        if step_id in reused:
            rows.append(StepEstimate(step, CostEstimate(0.0, detail="reused")))
            continue
        if not step.step_cls.billable:
            rows.append(StepEstimate(step, None))
            continue
        if step.common.matrix is not None:
            rows.append(_matrix_estimate(step, plan.templates, scope, settings))
            continue
        try:
            config = _estimation_config(step, plan.templates, scope)
        except ValidationError:
            rows.append(StepEstimate(step, None, _LATER))
            continue
        estimate = step.step_cls.estimate(config, settings)
        note = "" if estimate and estimate.cost_usd is not None else "no published price"
        rows.append(StepEstimate(step, estimate, note))
    return PlanEstimate(rows)


_LATER = "depends on values known only when it runs"


def _matrix_estimate(
    step: PlannedStep, templates: Templates, scope: Mapping[str, object], settings: Settings
) -> StepEstimate:
    """Every combination of a matrix step priced with its own axis values; the sum."""
    try:
        combos = resolve_combinations(step, templates, scope)
    except TemplateError:
        return StepEstimate(step, None, f"its matrix {_LATER}")
    except RunError as error:  # a bad axis value: the run fails the step before any call
        return StepEstimate(step, None, error.message)
    priced: list[tuple[dict[str, object], CostEstimate | None]] = []
    for values in combos:
        try:
            config = _estimation_config(step, templates, {**scope, "matrix": values})
        except ValidationError as error:
            # Say why, as a step without a matrix does: a value this combination gives
            # (model: gemini-… with quality: low) or one known only when it runs.
            said = _combination_problem(step, templates, {**scope, "matrix": values}, error)
            priced.append((values, CostEstimate(None, detail=f"({said})")))
            continue
        priced.append((values, step.step_cls.estimate(config, settings)))
    costs = [e.cost_usd if e is not None else None for _, e in priced]
    images = [e.images if e is not None else None for _, e in priced]
    total = None if None in costs else sum(c for c in costs if c is not None)
    count = len(priced)
    estimate = CostEstimate(
        total,
        None if None in images else sum(i for i in images if i is not None),
        f"{count} combination{'s' if count != 1 else ''}",
    )
    missing = any(e is None for _, e in priced)
    note = "" if total is not None else _LATER if missing else "no published price"
    return StepEstimate(step, estimate, note, tuple(priced))


def _combination_problem(
    step: PlannedStep, templates: Templates, scope: Mapping[str, object], error: ValidationError
) -> str:
    """Why one combination's config cannot be priced: the field and its problem when every
    template rendered (the run will refuse it too), else that it depends on the run."""
    for name in step.templated:
        try:
            templates.render_value(step.raw_config[name], scope)
        except Exception:  # needs upstream outputs
            return _LATER
    first = translate_errors(error, list(step.step_cls.config_model.model_fields))[0]
    return f'field "{first.field}": {first.message}'


def check_budget(estimate: PlanEstimate, budget_usd: float | None) -> None:
    """Stop a run whose estimate is over budget, before its first billable call.

    A budget cannot be kept with a step of unknown cost: that is refused too.

    Raises:
        BudgetExceeded: The estimate is over budget or cannot be made.
    """
    if budget_usd is None:
        return
    unknown = estimate.unknown
    if unknown:
        names = ", ".join(f"{row.step.id} ({row.note})" for row in unknown)
        raise BudgetExceeded(
            message=f"cannot keep the budget of ${budget_usd:.2f}: the cost of {names} "
            "cannot be estimated",
            hint="use models with a published price (fetchflow run --dry-run shows them), "
            "or run without a budget",
            retryable=False,
        )
    if not (math.isfinite(budget_usd) and budget_usd > 0):
        raise BudgetExceeded(  # nan compares false with everything: it would let all through
            message=f"the budget must be a finite amount above 0, got {budget_usd}",
            hint="give the most the run may cost, e.g. --budget 2.50",
            retryable=False,
        )
    total = estimate.total_usd or 0.0
    if not math.isfinite(total):
        raise BudgetExceeded(
            message=f"cannot keep the budget of ${budget_usd:.2f}: the estimate is {total}",
            hint="a step's cost estimate is not a number; run without a budget, or fix the "
            "step's price",
            retryable=False,
        )
    if total > budget_usd:
        priciest = max(estimate.steps, key=lambda row: row.cost_usd or 0.0)
        raise BudgetExceeded(
            message=f"the run is estimated at ${total:.4f}, over its budget of "
            f"${budget_usd:.2f} (most of it: {priciest.step.id}, "
            f"${priciest.cost_usd or 0.0:.4f})",
            hint="lower count or quality, pick a cheaper model, or raise budget_usd / "
            "--budget (fetchflow run --dry-run shows the estimate)",
            retryable=False,
        )


def format_estimate(plan: Plan, estimate: PlanEstimate, budget_usd: float | None) -> str:
    """The ``--dry-run`` report: the resolved plan in run order, with the estimate."""
    width = max((len(step_id) for step_id in plan.steps), default=4)
    lines = [f"{plan.name}: dry run (nothing was called)", ""]
    for row in estimate.steps:
        step = row.step
        after = f" after {', '.join(step.depends_on)}" if step.depends_on else ""
        if not step.step_cls.billable:
            cost = "free"
        elif row.cost_usd is None:
            cost = "unknown" if row.estimate and row.estimate.detail else f"unknown ({row.note})"
        else:
            cost = f"${row.cost_usd:.4f}"
        detail = f"  {row.estimate.detail}" if row.estimate and row.estimate.detail else ""
        lines.append(f"  {step.id:<{width}}  {step.type:<18} {cost}{detail}{after}")
        for values, each in row.combinations:
            price = "unknown" if each is None or each.cost_usd is None else f"${each.cost_usd:.4f}"
            said = f"  {each.detail}" if each is not None and each.detail else ""
            lines.append(f"  {'':<{width}}    {combination_label(values)}: {price}{said}")
    total = estimate.total_usd
    lines += ["", f"estimated total: {'unknown' if total is None else f'${total:.4f}'}"]
    if budget_usd is not None:
        lines.append(f"budget: ${budget_usd:.2f}")
    return "\n".join(lines)
