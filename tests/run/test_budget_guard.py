"""The budget guard cannot be switched off by a value that is not a number.

NaN compares false with everything, so ``total > budget`` never stops a run whose budget or
estimate is NaN; an infinite budget stops nothing either. The CLI and the workflow file refuse
such budgets (``tests/cli/test_bad_input_cli.py``); :func:`check_budget` refuses them too, for
callers that build a budget or an estimate themselves.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fetchflow.registry import StepRegistry
from fetchflow.run.cost import BudgetExceeded, PlanEstimate, StepEstimate, check_budget
from fetchflow.step import CostEstimate
from fetchflow.workflow.checking import check_file

BILLABLE = Path(__file__).resolve().parents[1] / "data" / "catalogue" / "cli" / "billable.yaml"


def estimate_of(cost: float) -> PlanEstimate:
    plan = check_file(BILLABLE, StepRegistry.from_entry_points())
    return PlanEstimate([StepEstimate(plan.steps["hero"], CostEstimate(cost))])


@pytest.mark.parametrize("budget", [math.nan, math.inf, -math.inf, -1.0, 0.0])
def test_a_budget_that_is_not_a_finite_amount_above_0_stops_the_run(budget: float) -> None:
    with pytest.raises(
        BudgetExceeded,
        match=rf"^the budget must be a finite amount above 0, got {budget}\n  hint: give the "
        r"most the run may cost, e\.g\. --budget 2\.50$",
    ):
        check_budget(estimate_of(0.01), budget)


@pytest.mark.parametrize("cost", [math.nan, math.inf])
def test_an_estimate_that_is_not_a_number_cannot_be_kept_under_a_budget(cost: float) -> None:
    with pytest.raises(
        BudgetExceeded,
        match=rf"^cannot keep the budget of \$5\.00: the estimate is {cost}\n  hint: a step's "
        "cost estimate is not a number",
    ):
        check_budget(estimate_of(cost), 5.0)


def test_a_finite_estimate_under_the_budget_passes() -> None:
    check_budget(estimate_of(0.01), 5.0)
    with pytest.raises(BudgetExceeded, match=r"over its budget of \$0\.01"):
        check_budget(estimate_of(0.02), 0.01)
