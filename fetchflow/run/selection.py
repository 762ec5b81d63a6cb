"""Run one step, or from one step on, reusing upstream outputs: ``--only``, ``--from``, ``--using``.

``fetchflow run FILE --only STEP[,STEP...]`` runs just those steps; ``--from STEP`` runs STEP
and everything downstream of it. Every step they need that is not selected is *reused*: its
output comes from an earlier run's checkpoints in the store (the latest run of the workflow
that completed it, or ``--using RUN_ID``), so it is neither run nor paid for. Steps that are
neither selected nor needed do not run (``not selected``). The run's inputs are the earlier
run's unless given again.

A selected step with ``matrix:`` redoes only its missing combinations: it is handed the
combinations the latest run of the workflow that ran it finished (``--using``'s run if
given), and runs again only those not among them and those whose request renders otherwise
now (an edited prompt, another input value or upstream image: never a stale output; see
:mod:`fetchflow.run.matrix_checkpoints`). The images a combination kept before it failed
half-way come too, when the step, the inputs it reads and the upstream outputs it reads are
those it was made with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fetchflow.errors import StorageError, UsageError, closest
from fetchflow.run.checkpoints import SavedRun
from fetchflow.run.matrix_checkpoints import (
    describe_kept,
    is_combination_checkpoint,
    written_combinations,
)
from fetchflow.run.reuse import Reused, step_fingerprint

if TYPE_CHECKING:
    from fetchflow.storage import AssetStore
    from fetchflow.workflow.plan import Plan

__all__ = ["EDITED", "Selection", "parse_steps", "read_selection", "select_steps"]

#: The end of a reuse note whose step was edited after the output was made.
EDITED = "(edited since)"
#: An input named in a template.
_INPUT = re.compile(r"(?<![\w.])inputs\s*(?:\.\s*(\w+)|\[\s*[\"']([^\"']+)[\"']\s*\])")


@dataclass(frozen=True)
class Selection:
    """What a ``--only``/``--from`` run does with each step.

    Attributes:
        run_id: The newest earlier run whose outputs are reused (each needed step's output
            comes from the latest run that completed it); ``--using``'s run; "" when
            nothing is reused.
        inputs: That run's inputs.
        reuse: The outputs of the needed upstream steps, by step id; for a selected matrix
            step, the combinations an earlier run finished (a partial :class:`Reused`).
        not_selected: Why each other step does not run, by step id.
        selected: The steps that run, in run order.
    """

    run_id: str
    inputs: dict[str, object] = field(default_factory=dict)
    reuse: dict[str, Reused] = field(default_factory=dict)
    not_selected: dict[str, str] = field(default_factory=dict)
    selected: tuple[str, ...] = ()


def parse_steps(text: str, plan: Plan, flag: str) -> list[str]:
    """The step ids of ``--only a,b`` (or ``--from a``), each checked against the plan.

    Raises:
        UsageError: Empty, a name that is no step of the workflow, or several for ``--from``.
    """
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UsageError(
            f"{flag}: expected step ids, got {text!r}",
            f"give step ids of {plan.name}: {', '.join(plan.steps)}",
        )
    if flag == "--from" and len(names) > 1:
        raise UsageError(
            f"--from takes one step, got {text!r}",
            f"--from {names[0]} runs {names[0]} and every step after it; to run just some "
            f"steps, use --only {','.join(names)}",
        )
    for name in names:
        if name not in plan.steps:
            guess = closest(name, list(plan.steps))
            raise UsageError(
                f'{flag}: workflow {plan.name} has no step "{name}"'
                + (f'; did you mean "{guess}"?' if guess else ""),
                f"its steps: {', '.join(plan.steps)}",
            )
    return names


def _ancestors(plan: Plan, steps: Iterable[str]) -> set[str]:
    found: set[str] = set()
    pending = list(steps)
    while pending:
        for upstream in plan.steps[pending.pop()].depends_on:
            if upstream not in found:
                found.add(upstream)
                pending.append(upstream)
    return found


def _latest_runs(store: AssetStore, workflow: str) -> Iterator[SavedRun]:
    """The workflow's runs in the store, newest first, each read only when asked for.

    A run whose records cannot be read (a corrupted ``run.json`` or step document, of this
    workflow or another) is passed over, as ``fetchflow runs`` skips it: one bad document
    must not stop every ``--only``.

    Raises:
        StorageError: The store cannot be listed.
    """
    from fetchflow.run.history import list_runs

    listing = list_runs(store, workflow=workflow, limit=None, with_steps=False)
    for summary in listing.runs:
        try:
            run = SavedRun.load(store, summary.run_id)
        except StorageError:
            continue
        if run is not None:
            yield run


def _completed(run: SavedRun, step_id: str) -> bool:
    return run.steps.get(step_id, {}).get("status") == "completed"


def _ran(run: SavedRun, step_id: str) -> bool:
    """Whether the step ran in ``run`` (not reused, skipped or not selected there)."""
    if run.kept.get(step_id):
        return True
    document = run.steps.get(step_id, {})
    return document.get("status") in ("completed", "failed") and not document.get("reused")


def _checkpointed_matrix(plan: Plan, step_id: str) -> bool:
    step = plan.steps[step_id]
    return step.common.matrix is not None and (
        step.step_cls.billable or step.step_cls.produces_files
    )


class _Runs:
    """The candidate runs, newest first, each read once however often they are walked."""

    def __init__(self, runs: Iterator[SavedRun]) -> None:
        self._pending = runs
        self.seen: list[SavedRun] = []

    def __iter__(self) -> Iterator[SavedRun]:
        yield from list(self.seen)
        for run in self._pending:
            self.seen.append(run)
            yield run


def _using(store: AssetStore, plan: Plan, run_id: str) -> SavedRun:
    """The run ``--using`` names, checked: a run id, in the store, of this workflow.

    Raises:
        UsageError: It is not a run id, not in the store, or a run of another workflow.
    """
    from fetchflow.run.history import check_run_id

    check_run_id(run_id, store, "--using")
    run = SavedRun.load(store, run_id)
    if run is None or run.record.get("workflow") != plan.name:
        found = "no run" if run is None else f"a run of {run.record.get('workflow')!r}"
        raise UsageError(
            f"--using {run_id}: {found} in the asset store {store.describe()}, not a run "
            f"of {plan.name}",
            f"give the id of a run of this workflow (fetchflow runs {plan.file} lists them)",
        )
    return run


def select_steps(
    store: AssetStore,
    plan: Plan,
    *,
    only: Sequence[str] = (),
    start: str | None = None,
    using: str | None = None,
    given: Mapping[str, object] | None = None,
) -> Selection:
    """Which steps run and which outputs are reused for ``--only``/``--from``.

    Args:
        store: The run's store (where earlier runs' checkpoints are).
        plan: The workflow.
        only: ``--only`` step ids.
        start: ``--from`` step id.
        using: ``--using``: the run to take upstream outputs from (default: for each
            needed step, the latest run of the workflow that completed it).
        given: The ``--input`` values: a reused output made from another value of an
            input its step reads says so.

    Raises:
        UsageError: No earlier run has a needed upstream output (the message names the
            step and the run to use), or ``--using`` names no run of this workflow.
        StorageError: The store cannot be read.
    """
    chosen = set(only) if only else {start, *plan.downstream(start)} if start else set()
    selected = tuple(step_id for step_id in plan.order() if step_id in chosen)
    needed = _ancestors(plan, selected) - chosen
    flag = f"--only {','.join(only)}" if only else f"--from {start}"
    not_selected = {
        step_id: f"not selected ({flag})"
        for step_id in plan.steps
        if step_id not in chosen and step_id not in needed
    }
    named = _using(store, plan, using) if using is not None else None
    runs = _Runs(iter([named]) if named is not None else _latest_runs(store, plan.name))
    matrix_steps = [step_id for step_id in selected if _checkpointed_matrix(plan, step_id)]
    matrix_sources: dict[str, SavedRun] = {}
    for run in runs if matrix_steps else ():
        for step_id in matrix_steps:
            if step_id not in matrix_sources and _ran(run, step_id):
                matrix_sources[step_id] = run
        if len(matrix_sources) == len(matrix_steps):
            break
    if not needed:  # no upstream output to reuse; a run given still gives its inputs
        source = named or next(iter(matrix_sources.values()), None)
        inputs = source.record.get("inputs") if source is not None else {}
        inputs = dict(inputs) if isinstance(inputs, dict) else {}
        final = {**inputs, **(given or {})}
        return Selection(
            source.run_id if source is not None else "",
            inputs,
            _combinations_kept(plan, matrix_sources, {}, final),
            not_selected,
            selected,
        )
    # Each needed step from the latest run that completed it (runs read newest first,
    # only as far as needed): a run of --only b has the new b, an older whole run the rest.
    sources: dict[str, SavedRun] = {}
    for run in runs:
        for step in needed - sources.keys():
            if _completed(run, step):
                sources[step] = run
        if len(sources) == len(needed):
            break
    seen = runs.seen
    missing = sorted(needed - sources.keys(), key=list(plan.steps).index)
    if not seen:
        raise UsageError(
            f"{flag}: no earlier run of {plan.name} in the asset store {store.describe()} "
            f"to take the output of {', '.join(missing)} from",
            f"run the whole workflow once (fetchflow run {plan.file}), or run those "
            f"steps too (--only {','.join([*missing, *selected])})",
        )
    if missing:
        if using is not None:
            raise UsageError(
                f'{flag} needs the output of step "{missing[0]}", and run {using} (the one '
                "given) did not complete it",
                f"run it too (--from {missing[0]}), or use a run that completed it "
                f"(--using RUN_ID; fetchflow runs {plan.file} lists them)",
            )
        raise UsageError(
            f'{flag} needs the output of step "{missing[0]}", and no run of {plan.name} in '
            f"the asset store {store.describe()} completed it",
            f"run it too (--from {missing[0]}), or run the whole workflow once "
            f"(fetchflow run {plan.file})",
        )
    used = {id(run) for run in sources.values()}
    newest = next(run for run in seen if id(run) in used)  # its inputs are the run's
    inputs = newest.record.get("inputs")
    inputs = dict(inputs) if isinstance(inputs, dict) else {}
    final = {**inputs, **(given or {})}
    reuse: dict[str, Reused] = {}
    for step_id in needed:
        source = sources[step_id]
        fingerprints = source.record.get("fingerprints")
        fingerprints = fingerprints if isinstance(fingerprints, dict) else {}
        # A run that reused an edited step's output records it under the new definition's
        # fingerprint: its own note says the output is older, and so it stays.
        earlier = source.steps[step_id].get("reused")
        edited = fingerprints.get(step_id) != step_fingerprint(plan.steps[step_id]) or (
            isinstance(earlier, str) and earlier.endswith(EDITED)
        )
        # Made from another output of a step it reads than the one reused now (a later
        # run remade that step): said, as an edit is.
        changed = _changed_upstream(plan, step_id, source, sources)
        note = f"reused from run {source.run_id}" + (f" {EDITED}" if edited else "")
        if changed:
            note += f" (made from an older {', '.join(changed)})"
        other = _other_inputs(plan, step_id, source, final)
        if other:
            note += f" (made with {', '.join(other)})"
        reuse[step_id] = Reused(source.steps[step_id].get("output"), note)
    reuse.update(_combinations_kept(plan, matrix_sources, sources, final))
    return Selection(
        newest.run_id,
        inputs,
        reuse,
        not_selected,
        selected,
    )


def _changed_upstream(
    plan: Plan, step_id: str, source: SavedRun, sources: Mapping[str, SavedRun]
) -> list[str]:
    """The steps ``step_id`` reads whose output in ``source`` is not the one used now (a
    later run remade it, or it runs now: not in ``sources``)."""
    return [
        upstream
        for upstream in plan.steps[step_id].depends_on
        if upstream not in sources
        or (
            sources[upstream] is not source
            and _output(source, upstream) != _output(sources[upstream], upstream)
        )
    ]


def _other_inputs(
    plan: Plan, step_id: str, source: SavedRun, final: Mapping[str, object]
) -> list[str]:
    """``name='value'`` of each input the step reads that ``source`` had another value of."""
    made_with = source.record.get("inputs")
    made_with = made_with if isinstance(made_with, dict) else {}
    return [
        f"{name}={made_with[name]!r}"
        for name in sorted(_inputs_read(plan.steps[step_id].raw_config))
        if name in made_with and name in final and made_with[name] != final[name]
    ]


def _combinations_kept(
    plan: Plan,
    matrix_sources: Mapping[str, SavedRun],
    sources: Mapping[str, SavedRun],
    final: Mapping[str, object],
) -> dict[str, Reused]:
    """What each selected matrix step is handed of the run that last ran it: its finished
    combinations (each reused only if its request renders the same now); the images of a
    combination that failed half-way only when the step, the inputs it reads and the
    upstream outputs it reads are all those they were made with."""
    kept: dict[str, Reused] = {}
    for step_id, run in matrix_sources.items():
        items = run.kept.get(step_id, [])
        fingerprints = run.record.get("fingerprints")
        fingerprints = fingerprints if isinstance(fingerprints, dict) else {}
        same = (
            fingerprints.get(step_id) == step_fingerprint(plan.steps[step_id])
            and not _changed_upstream(plan, step_id, run, sources)
            and not _other_inputs(plan, step_id, run, final)
        )
        if not same:
            items = [item for item in items if is_combination_checkpoint(item)]
        if items:
            counted = describe_kept(items, written_combinations(plan.steps[step_id]))
            kept[step_id] = Reused(
                items, f"continued from run {run.run_id} ({counted})", complete=False
            )
    return kept


def _inputs_read(value: object) -> set[str]:
    """The inputs a step's fields name (``inputs.product``, ``inputs["product"]``)."""
    if isinstance(value, str):
        return {match.group(1) or match.group(2) for match in _INPUT.finditer(value)}
    if isinstance(value, list):
        return {name for item in value for name in _inputs_read(item)}
    if isinstance(value, dict):
        return {name for item in value.values() for name in _inputs_read(item)}
    return set()


def _output(run: SavedRun, step_id: str) -> object:
    """A step's output in ``run`` as content: links (which a store renews) left out."""

    def content(value: object) -> object:
        if isinstance(value, dict):
            return {k: content(v) for k, v in value.items() if k != "file_url"}
        if isinstance(value, list):
            return [content(item) for item in value]
        return value

    return content(run.steps.get(step_id, {}).get("output"))


def read_selection(
    store: AssetStore,
    plan: Plan,
    *,
    only: Sequence[str] = (),
    start: str | None = None,
    using: str | None = None,
    given: Mapping[str, object] | None = None,
) -> Selection:
    """:func:`select_steps`, with a store that cannot be read said as a usage problem.

    Raises:
        UsageError: See :func:`select_steps`; also an unreadable store.
    """
    try:
        return select_steps(store, plan, only=only, start=start, using=using, given=given)
    except StorageError as error:
        raise UsageError(
            f"the earlier runs of {plan.name} cannot be read: {error.message}",
            error.hint or "check FETCHFLOW_STORE and the store's credentials",
        ) from None
