"""``fetchflow refs FILE [STEP] [--run RUN_ID] [--json]``: the variable picker.

Every reference each step's templates can use (``inputs.<name>``, each step it may read's
``<step>.output`` and the paths inside it, ``run.*``), with its type and description from the
output schemas; with ``--run``, the values that run produced, read from its records in the
store (``FETCHFLOW_STORE``). Never imports Prefect.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from fetchflow.cli.common import EXIT_OK, step_types
from fetchflow.errors import SettingsInvalid, StorageError, UsageError, closest

if TYPE_CHECKING:
    from fetchflow.run.checkpoints import SavedRun
    from fetchflow.settings import Settings
    from fetchflow.workflow.plan import Plan
    from fetchflow.workflow.refs import Ref, StepRefs

__all__ = ["main", "run_scope"]

#: A value is shown up to this many characters in the terminal (``--json``: whole).
VALUE_WIDTH = 60
#: A list in a run's values is shown up to this many items in the terminal.
ITEMS_SHOWN = 10
NONE = "—"


def main(args: argparse.Namespace) -> int:
    """List the references; exit 2 for an unknown step or run."""
    from fetchflow.workflow.checking import check_file
    from fetchflow.workflow.refs import plan_refs

    plan = check_file(args.file, step_types())
    if args.step is not None and args.step not in plan.steps:
        suggestion = closest(args.step, list(plan.steps))
        raise UsageError(
            f'no step "{args.step}" in {args.file}'
            + (f'; did you mean "{suggestion}"?' if suggestion else ""),
            f"use fetchflow refs {args.file} {suggestion}"
            if suggestion
            else f"steps: {', '.join(plan.steps)}",
        )
    listed = plan_refs(plan, args.step)
    scope = None
    if args.run is not None:
        from fetchflow.settings import load_settings

        scope = run_scope(_saved_run(load_settings(), args.run, plan))
    if args.json:
        print(json.dumps(_document(plan, listed, args.run, scope), indent=2, ensure_ascii=False))
    else:
        print("\n".join(_text(listed, scope)))
    return EXIT_OK


# -- the run's values ------------------------------------------------------------------------


def _saved_run(settings: Settings, run_id: str, plan: Plan) -> SavedRun:
    """The run's records, from the store.

    Raises:
        UsageError: The id is malformed, the store has no such run (the closest id is
            named), or the run is of another workflow.
        SettingsInvalid: The store cannot be opened or read.
    """
    from fetchflow.run.checkpoints import SavedRun
    from fetchflow.run.history import check_run_id, latest_runs
    from fetchflow.run.preflight import StoreOpener

    try:
        store = StoreOpener(settings)()
        check_run_id(run_id, store)
        saved = SavedRun.load(store, run_id)
        if saved is None:
            known = sorted(
                {key.split("/")[1] for key in store.list_state("runs/") if key.count("/") >= 2}
            )
            suggestion = closest(run_id, known)
            raise UsageError(
                f"no run {run_id!r} in the asset store {store.describe()}"
                + (f"; did you mean {suggestion!r}?" if suggestion else ""),
                f"use --run {suggestion}"
                if suggestion
                else "give a run that wrote to this store (the same FETCHFLOW_STORE); "
                f"latest runs: {latest_runs(store)}",
            )
    except StorageError as error:
        raise SettingsInvalid(error.format()) from None
    workflow = saved.record.get("workflow")
    if workflow != plan.name:
        raise UsageError(
            f"run {run_id!r} is a run of workflow {workflow!r}, not {plan.name!r}",
            f"give a run of {plan.name} (fetchflow runs {plan.file})",
        )
    return saved


def run_scope(saved: SavedRun) -> dict[str, object]:
    """What the run's templates saw, as far as its records keep it: its inputs, ``run``
    (its name lives in Prefect only) and each completed step's ``output``."""
    inputs = saved.record.get("inputs")
    scope: dict[str, object] = {
        "inputs": inputs if isinstance(inputs, dict) else {},
        "run": {"id": saved.run_id, "started_at": saved.record.get("started_at")},
    }
    for step_id, document in saved.steps.items():
        if document.get("status") == "completed" and "output" in document:
            scope[step_id] = {"output": document["output"]}
    return scope


def values_of(ref: Ref, scope: Mapping[str, object]) -> list[tuple[str, object]]:
    """``ref``'s values in ``scope``, each ``N`` taken as every item there is:
    ``[("hero.output.0.file_url", "file:///..."), ...]`` (empty when the run has none)."""
    from fetchflow.workflow.refs import ANY_ITEM, value_at

    found: list[tuple[str, object]] = []
    parts = ref.path.split(".")

    def walk(value: object, done: list[str], rest: Sequence[str]) -> None:
        if not rest:
            found.append((".".join(done), value))
            return
        head, *tail = rest
        if head == ANY_ITEM:
            if isinstance(value, list):
                for index, item in enumerate(value):
                    walk(item, [*done, str(index)], tail)
            return
        ok, inside = value_at(value, [head])
        if ok:
            walk(inside, [*done, head], tail)

    ok, start = value_at(scope, parts[:1])
    if ok:
        walk(start, parts[:1], parts[1:])
    return found


# -- output ----------------------------------------------------------------------------------


def _document(
    plan: Plan, listed: Sequence[StepRefs], run_id: str | None, scope: Mapping[str, object] | None
) -> dict[str, object]:
    steps = []
    for step in listed:
        references = []
        for ref in step.refs:
            entry = ref.to_json()
            if scope is not None:
                entry["values"] = [
                    {"path": path, "value": value} for path, value in values_of(ref, scope)
                ]
            references.append(entry)
        steps.append(
            {
                "id": step.step_id,
                "type": step.step_type,
                "upstream": list(step.upstream),
                "readable": list(step.readable),
                "references": references,
            }
        )
    return {"workflow": plan.name, "file": str(plan.file), "run": run_id, "steps": steps}


def shown_value(value: object, width: int = VALUE_WIDTH) -> str:
    """A value on one line: text quoted and trimmed, a list or object by its size."""
    if isinstance(value, list):
        return f"[{len(value)} item{'' if len(value) == 1 else 's'}]"
    if isinstance(value, dict):
        return f"{{{len(value)} field{'' if len(value) == 1 else 's'}}}"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else f"{text[: width - 1]}…"


def _text(listed: Sequence[StepRefs], scope: Mapping[str, object] | None) -> Iterator[str]:
    # Lines are cut to a terminal's width; piped or captured, they are whole (and the
    # result does not depend on the COLUMNS of whoever ran it).
    width = shutil.get_terminal_size((120, 24)).columns if sys.stdout.isatty() else 10_000
    for number, step in enumerate(listed):
        if number:
            yield ""
        reads = f"reads {', '.join(step.upstream)}" if step.upstream else "reads no step"
        others = [other for other in step.readable if other not in step.upstream]
        also = f" · may also read {', '.join(others)}" if others else ""
        yield f"{step.step_id} ({step.step_type}) {reads}{also}"
        rows = _rows(step.refs, scope)
        path_width = max(len(row[0]) for row in rows)
        type_width = max(len(row[1]) for row in rows)
        for path, kind, text in rows:
            line = f"  {path:<{path_width}}  {kind:<{type_width}}  {text}".rstrip()
            yield line if len(line) <= max(width, 60) else f"{line[: max(width, 60) - 1]}…"


def _rows(refs: Sequence[Ref], scope: Mapping[str, object] | None) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for ref in refs:
        if scope is None:
            text = ref.description
            if ref.items:
                text = f"{ref.items} item{'' if ref.items == '1' else 's'}. {text}"
            if ref.has_default:
                text = f"{text} (default: {json.dumps(ref.default, ensure_ascii=False)})"
            rows.append((ref.path, ref.type, text.strip()))
            continue
        values = values_of(ref, scope)
        if not values:
            rows.append((ref.path, ref.type, NONE))
        for index, (path, value) in enumerate(values):
            if index == ITEMS_SHOWN:
                rows.append((f"{ref.path} …", "", f"{len(values) - index} more (--json: all)"))
                break
            rows.append((path, ref.type, shown_value(value)))
    return rows
