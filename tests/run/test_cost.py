"""Cost before spending: estimates per step and run, budgets, ``fetchflow run --dry-run``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fetchflow.run.cost import BudgetExceeded, check_budget, estimate_plan, format_estimate
from fetchflow.settings import Settings
from fetchflow.workflow.checking import check_file
from fetchflow.workflow.inputs import resolve_inputs

if TYPE_CHECKING:
    from fetchflow.registry import StepRegistry

FLOWS = Path(__file__).resolve().parents[1] / "data" / "cost"
REPO = Path(__file__).resolve().parents[2]


def estimate(registry: StepRegistry, name: str, **given: object):  # type: ignore[no-untyped-def]
    plan = check_file(FLOWS / f"{name}.yaml", registry)
    return plan, estimate_plan(plan, resolve_inputs(plan.header, given), Settings())


def test_every_billable_step_is_estimated_from_its_rendered_values(
    plugin_registry: StepRegistry,
) -> None:
    plan, found = estimate(plugin_registry, "priced", copies=5)

    costs = {row.step.id: row.cost_usd for row in found.steps}
    # hero's prompt needs brief's output: estimated from the template text, count is known.
    assert costs == {"brief": 0.0, "hero": pytest.approx(0.08), "variants": pytest.approx(0.1)}
    assert found.total_usd == pytest.approx(0.18)
    report = format_estimate(plan, found, 1.0)
    assert "  hero      priced             $0.0800  2 x $0.04 after brief" in report
    assert "estimated total: $0.1800" in report


def test_a_run_over_budget_stops_before_anything_runs(plugin_registry: StepRegistry) -> None:
    _, found = estimate(plugin_registry, "priced", copies=10)

    with pytest.raises(
        BudgetExceeded,
        match=r"estimated at \$0\.2800, over its budget of "
        r"\$0\.25 \(most of it: variants, \$0\.2000\)",
    ) as caught:
        check_budget(found, 0.25)
    assert "raise budget_usd / --budget" in caught.value.hint
    check_budget(found, 2.0)  # under budget: nothing raised


def test_a_budget_cannot_be_kept_when_a_cost_is_unknown(plugin_registry: StepRegistry) -> None:
    _, found = estimate(plugin_registry, "unknown")

    assert [row.step.id for row in found.unknown] == ["shots"]
    assert found.total_usd is None
    with pytest.raises(
        BudgetExceeded,
        match=r"cost of shots \(depends on values known only "
        r"when it runs\) cannot be estimated",
    ):
        check_budget(found, 10.0)
    check_budget(found, None)  # no budget: the run may go on


def run_cli(
    args: list[str], env: Mapping[str, str], plugin_pythonpath: str, home: Path
) -> subprocess.CompletedProcess[str]:
    env = {**env, "PYTHONPATH": plugin_pythonpath, "FETCHFLOW_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "run", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_dry_run_prints_the_plan_and_estimate_and_calls_nothing(
    plugin_pythonpath: str, tmp_path: Path, clean_env: Mapping[str, str]
) -> None:
    done = run_cli(
        [str(FLOWS / "priced.yaml"), "--dry-run", "--json", "-i", "copies=4"],
        clean_env,
        plugin_pythonpath,
        tmp_path / "home",
    )

    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["estimated_total_usd"] == pytest.approx(0.16)
    assert document["steps"]["variants"] == {
        "type": "priced",
        "after": [],
        "estimated_cost_usd": pytest.approx(0.08),
        "detail": "4 x $0.02",
    }
    assert not (tmp_path / "home").exists()  # no Prefect home, no store: nothing ran


def test_budget_flag_overrides_the_workflow_and_stops_the_run(
    plugin_pythonpath: str, tmp_path: Path, clean_env: Mapping[str, str]
) -> None:
    done = run_cli(
        [str(FLOWS / "priced.yaml"), "--budget", "0.10"],
        clean_env,
        plugin_pythonpath,
        tmp_path / "home",
    )

    assert done.returncode == 2  # refused before the run: nothing ran
    assert done.stderr.splitlines() == [
        "fetchflow: the run is estimated at $0.1400, over its budget of $0.10 (most of it: "
        "hero, $0.0800)",
        "  hint: lower count or quality, pick a cheaper model, or raise budget_usd / --budget "
        "(fetchflow run --dry-run shows the estimate)",
    ]
    assert not (tmp_path / "home" / "prefect").exists()


def test_a_dry_run_over_budget_prints_the_estimate_then_refuses_with_exit_2(
    plugin_pythonpath: str, tmp_path: Path, clean_env: Mapping[str, str]
) -> None:
    done = run_cli(
        [str(FLOWS / "priced.yaml"), "--dry-run", "--budget", "0.10"],
        clean_env,
        plugin_pythonpath,
        tmp_path / "home",
    )

    assert done.returncode == 2
    assert "$0.1400" in done.stdout  # the estimate is still shown
    assert done.stderr.splitlines()[0] == (
        "fetchflow: the run is estimated at $0.1400, over its budget of $0.10 (most of it: "
        "hero, $0.0800)"
    )
    assert not (tmp_path / "home" / "prefect").exists()


def test_a_combination_that_cannot_be_priced_says_why() -> None:
    from fetchflow.registry import StepRegistry

    plan, found = estimate(StepRegistry.from_entry_points(), "matrix_models")

    report = format_estimate(plan, found, None).splitlines()
    assert "           model=preview: $0.0000  1 x preview (free)" in report
    assert (
        '           model=gemini-2.5-flash-image: unknown  (field "quality": quality: low is '
        "not accepted by model gemini-2.5-flash-image (it takes auto))"
    ) in report
