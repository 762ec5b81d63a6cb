"""Running a step with ``matrix:``: once per combination, concurrently, one flat output.

Pure of Prefect, like :mod:`fetchflow.run.execution` (which calls :func:`execute_matrix`
for a step with a matrix). In order:

1. The axes are resolved (templated ones rendered and checked) and every combination's
   config is rendered and validated, so a bad value fails the step before any billable
   call.
2. The combinations run in a thread pool of ``FETCHFLOW_MATRIX_CONCURRENCY`` (the provider
   calls inside are still limited by the image steps' provider gate). Each one's scope has
   ``matrix`` (its axis values); every asset record it makes carries them (``matrix``), the
   records it keeps on the way included.
3. A combination of a billable or file-making step that ends is checkpointed at once (a kept
   item, :mod:`fetchflow.run.matrix_checkpoints`, with the hash of its rendered request):
   ``--resume``, a recovered run and ``--only``/``--from`` take its output back when the
   combination's request renders the same now, and run only the other combinations; one
   that ended half-way gets the images it kept (``StepContext.kept``) and makes the rest.
   A note under the step says how many were kept and how many made again (changed).
4. When all have ended, a failed combination fails the step, naming it
   (``matrix product=mug style=watercolor: ...``), with everything the others made as its
   partial output. Otherwise the outputs are joined in combination order and handed to
   :meth:`~fetchflow.step.Step.finish_matrix` (list outputs only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, TypeAdapter

from fetchflow.errors import RunError, StepError, TemplateError
from fetchflow.matrix_grid import record_name
from fetchflow.run.matrix_checkpoints import (
    MATRIX_KEPT_KEY,
    EarlierCombinations,
    combination_checkpoint,
    combination_key,
)
from fetchflow.run.reuse import GenerationCache, fresh_links
from fetchflow.step import Previews, Progress, StepContext
from fetchflow.templating import Templates
from fetchflow.workflow.matrix import (
    combination_label,
    combinations,
    combinations_problem,
    is_list_output,
    rendered_axis_problem,
)
from fetchflow.workflow.plan import PlannedStep

__all__ = ["MATRIX_KEPT_KEY", "CombinationCache", "execute_matrix", "resolve_combinations"]

#: Looks a combination's rendered config up (``cache: true``): its JSON output, or None; and
#: stores one.
CombinationCache = tuple[Callable[[BaseModel], object | None], Callable[[BaseModel, object], None]]


def resolve_combinations(
    step: PlannedStep, templates: Templates, scope: Mapping[str, object]
) -> list[dict[str, Any]]:
    """The step's combinations, its templated axes rendered against ``scope``.

    Raises:
        TemplateError: An axis template failed.
        StepError: An axis is not a non-empty list, zip lists differ in length, or there
            are too many combinations (not retryable).
    """
    axes: dict[str, list[Any]] = {}
    for axis, value in (step.common.matrix or {}).items():
        if isinstance(value, list):
            axes[axis] = value
            continue
        field = f"matrix.{axis}"
        try:
            rendered = templates.render_value(value, scope)
        except Exception as error:  # jinja2's errors, refusals and limits alike
            raise TemplateError(
                message=f'field "{field}": template failed: {error}',
                hint="check the references in this axis against the inputs and upstream "
                "outputs (fetchflow validate checks them)",
                step_id=step.id,
                field=field,
                retryable=False,
            ) from None
        problem = rendered_axis_problem(axis, rendered, str(value))
        if problem is not None or not isinstance(rendered, list):
            problem = problem or (axis, "not a list", "")
            raise StepError(
                message=f'field "matrix.{problem[0]}": {problem[1]}',
                hint=problem[2],
                step_id=step.id,
                retryable=False,
            )
        axes[axis] = rendered
    problem = combinations_problem(axes, step.common.matrix_mode)
    if problem is not None:
        raise StepError(
            message=f'field "matrix.{problem[0]}": {problem[1]}',
            hint=problem[2],
            step_id=step.id,
            retryable=False,
        )
    return combinations(axes, step.common.matrix_mode)


def _slug(values: Mapping[str, object]) -> str:
    """The axis values as a file-name part: ``mug-watercolor`` (an asset record by its file
    name's stem; accents dropped, ``café`` as ``cafe``; each value cut short on its own, so
    a long one leaves the others in)."""
    parts = []
    for value in values.values():
        name = record_name(value)
        text = (
            name.rpartition(".")[0] or name
            if name is not None
            else value
            if isinstance(value, str)
            else json.dumps(value, default=str)
        )
        ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        part = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:40].rstrip("-")
        if part:
            parts.append(part)
    return "-".join(parts)[:100].rstrip("-") or "combination"


def _slugs(combos: list[dict[str, Any]]) -> list[str]:
    """Each combination's file-name part; where two would read the same (``blue/green``
    and ``blue-green``), each such one ends with a short hash of its values, the same from
    run to run (a resumed run names a kept file as the run that made it)."""
    slugs = [_slug(values) for values in combos]
    seen = Counter(slugs)

    def hashed(values: Mapping[str, object]) -> str:
        text = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:6]

    return [
        slug if seen[slug] == 1 else f"{slug}-{hashed(values)}"
        for slug, values in zip(slugs, combos, strict=True)
    ]


def _file_name(name: str, slug: str, step_id: str) -> str:
    """``hero-1.png`` of combination mug/watercolor as ``hero-mug-watercolor-1.png``: the
    combinations of one step would otherwise give their files the same names."""
    head = f"{step_id}-"
    # Named already (an item kept by this very combination) only when the slug sits exactly
    # where it is put below: elsewhere it may be the name's number (slug "1", hero-1.png).
    if name.startswith(head):
        named = name.startswith(f"{head}{slug}-")
        return name if named else f"{head}{slug}-{name.removeprefix(head)}"
    stem, dot, suffix = name.rpartition(".")
    if (stem if dot else name).endswith(f"-{slug}"):
        return name
    return f"{stem}-{slug}.{suffix}" if dot else f"{name}-{slug}"


def _tag(item: object, values: Mapping[str, Any], slug: str, step_id: str) -> object:
    """An output item with the combination's axis values, when it has a ``matrix`` field
    (an asset record: its file name says the combination too); anything else as it is."""
    if isinstance(item, BaseModel) and "matrix" in type(item).model_fields:
        update: dict[str, object] = {"matrix": dict(values)}
        name = getattr(item, "file_name", None)
        if isinstance(name, str):
            update["file_name"] = _file_name(name, slug, step_id)
        return item.model_copy(update=update)
    if isinstance(item, dict) and isinstance(item.get("matrix"), dict):
        tagged = {**item, "matrix": dict(values)}
        if isinstance(item.get("file_name"), str):
            tagged["file_name"] = _file_name(item["file_name"], slug, step_id)
        return tagged
    return item


def _tag_output(output: object, values: Mapping[str, Any], slug: str, step_id: str) -> object:
    if isinstance(output, list):
        return [_tag(item, values, slug, step_id) for item in output]
    return _tag(output, values, slug, step_id)


class _CombinationLogger(logging.LoggerAdapter[Any]):
    """A combination's logger: each message starts with its axis values, so a warning
    (which the terminal and the gallery list once each) says which combination it is about."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[Any], label: str) -> None:
        super().__init__(logger, {})
        self._label = label

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        label = self._label.replace("%", "%%") if args else self._label
        self.logger.log(level, f"{label}: {msg}", *args, **kwargs)


class _SharedProgress:
    """One progress bar for every combination: the first ``start`` counts for all."""

    def __init__(self, inner: Progress, combinations: int) -> None:
        self.inner = inner
        self._combinations = combinations
        self._started = False
        #: Items per combination (the first ``start``'s total), to number drafts apart.
        self.per_combination = 1

    def start(self, total: int) -> None:
        if not self._started:
            self._started = True
            self.per_combination = max(1, total)
            self.inner.start(total * self._combinations)

    def advance(self, done: int = 1) -> None:
        self.inner.advance(done)


class _CombinationProgress:
    """One combination's view of the shared progress."""

    def __init__(self, shared: _SharedProgress, index: int, values: Mapping[str, object]) -> None:
        self.shared = shared
        self.index = index
        self.label = combination_label(values)

    def start(self, total: int) -> None:
        self.shared.start(total)

    def advance(self, done: int = 1) -> None:
        self.shared.advance(done)


class _CombinationPreviews(_CombinationProgress):
    """A combination's progress that shows its drafts among every combination's, each
    numbered after the items of the combinations before it and labelled with its axis
    values (``product=mug style=ink · partial 1 of 2``)."""

    def preview(self, item: int, label: str, image: bytes) -> None:
        inner = self.shared.inner
        assert isinstance(inner, Previews)  # only made for one that shows drafts
        inner.preview(
            self.index * self.shared.per_combination + item, f"{self.label} · {label}", image
        )


def _combination_progress(
    shared: _SharedProgress | None, index: int, values: Mapping[str, object]
) -> Progress | None:
    if shared is None:
        return None
    if isinstance(shared.inner, Previews):
        return _CombinationPreviews(shared, index, values)
    return _CombinationProgress(shared, index, values)


def execute_matrix(
    step: PlannedStep,
    templates: Templates,
    ctx: StepContext,
    configure: Callable[[Mapping[str, object]], BaseModel],
    *,
    cache: CombinationCache | None = None,
) -> object:
    """Run every combination of a matrix step; return the joined output as JSON data.

    Args:
        step: The planned step (with ``matrix``).
        templates: The run's template environment.
        ctx: The step's context (its ``kept`` may hold an earlier run's combinations).
        configure: Renders and validates the step's config for one scope (a reviewer's
            edits applied: they apply to every combination).
        cache: For ``cache: true``: look up and store one combination's output.

    Raises:
        RunError: A combination failed (after every other one ended), or a value was bad
            before anything ran.
    """
    combos = resolve_combinations(step, templates, ctx.scope)
    slugs = _slugs(combos)
    configs = [configure({**ctx.scope, "matrix": values}) for values in combos]
    # Each combination's request as rendered now: an earlier output counts only for it.
    requests = [GenerationCache.key(step, config) for config in configs]
    earlier = EarlierCombinations.read(ctx.kept)
    found_earlier = [earlier.find(v, r) for v, r in zip(combos, requests, strict=True)]
    _note_earlier(ctx, combos, earlier, found_earlier)
    # Only work that costs or makes files is worth a checkpoint document per combination.
    checkpoint = step.step_cls.billable or step.step_cls.produces_files
    adapter: TypeAdapter[Any] = TypeAdapter(step.step_cls.output_type)
    shared = _SharedProgress(ctx.progress, len(combos)) if ctx.progress is not None else None

    def links(output: object) -> object:
        return fresh_links(output, ctx.open_store)

    def run_one(index: int) -> object:
        values = combos[index]
        done = found_earlier[index]
        if done is not None:
            return adapter.validate_python(links(done.output))
        ctx.check_interrupt()
        found = cache[0](configs[index]) if cache is not None else None
        if found is not None:
            output = _tag_output(adapter.validate_python(found), values, slugs[index], step.id)
        else:
            on_kept = ctx.on_kept
            combo_ctx = dataclasses.replace(
                ctx,
                scope={**ctx.scope, "matrix": values},
                logger=_CombinationLogger(ctx.logger, combination_label(values)),
                kept=earlier.kept.get(combination_key(values)),
                on_kept=(lambda item: on_kept(_tag(item, values, slugs[index], step.id)))
                if on_kept
                else None,
                progress=_combination_progress(shared, index, values),
            )
            made = step.step_cls().run(configs[index], combo_ctx)
            output = _tag_output(made, values, slugs[index], step.id)
            if cache is not None:
                cache[1](configs[index], step.step_cls.dump_output(output))
        if checkpoint:
            ctx.keep(
                combination_checkpoint(
                    values, requests[index], step.step_cls.dump_output(output), ctx.run_id
                )
            )
        return output

    workers = max(1, min(ctx.settings.matrix_concurrency, len(combos)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"matrix-{step.id}") as pool:
        futures = [pool.submit(run_one, index) for index in range(len(combos))]
        outcomes: list[tuple[object, BaseException | None]] = []
        for future in futures:
            error = future.exception()
            outcomes.append((None if error is not None else future.result(), error))
    failed = [(index, error) for index, (_, error) in enumerate(outcomes) if error is not None]
    if failed:
        raise _failure(step, combos, outcomes, failed[0])
    results = [output for output, _ in outcomes]
    if not is_list_output(step.step_cls):
        return [step.step_cls.dump_output(output) for output in results]
    flat: list[object] = [item for output in results for item in output]  # type: ignore[attr-defined]
    every = dataclasses.replace(ctx, combinations=tuple(combos))
    finished = step.step_cls().finish_matrix(configs[0], flat, every)
    return step.step_cls.dump_output(finished)


def _note_earlier(
    ctx: StepContext,
    combos: list[dict[str, Any]],
    earlier: EarlierCombinations,
    found: list[Any],
) -> None:
    """Say under the step how many combinations an earlier run's checkpoints gave, and
    which ones it had made but are made again because their request changed since."""
    if not earlier.finished:
        return
    kept = [done for done in found if done is not None]
    runs = sorted({done.run_id for done in kept if done.run_id})
    changed = [
        values
        for values, done in zip(combos, found, strict=True)
        if done is None and combination_key(values) in earlier.finished
    ]
    made = len(combos) - len(kept)
    text = (
        f"{len(kept)} of {len(combos)} combinations kept"
        + (f" from run {', '.join(runs)}" if runs else "")
        + f", {made} made now"
    )
    if changed:
        shown = "; ".join(combination_label(values) for values in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        text += (
            f" ({len(changed)} made again: their request changed since, e.g. an edited "
            f"prompt or input: {shown}{more})"
        )
    ctx.logger.warning("%s", text)


def _failure(
    step: PlannedStep,
    combos: list[dict[str, Any]],
    outcomes: list[tuple[object, BaseException | None]],
    first: tuple[int, BaseException],
) -> BaseException:
    """The step's error for its first failed combination, with everything made kept."""
    partial: list[object] = []
    for values, slug, (output, error) in zip(combos, _slugs(combos), outcomes, strict=True):
        if error is None:
            dumped = step.step_cls.dump_output(output)
            partial += dumped if isinstance(dumped, list) else [dumped]
        elif isinstance(error, RunError) and isinstance(error.partial_output, list):
            partial += [_tag(item, values, slug, step.id) for item in error.partial_output]
    index, error = first
    label = f"matrix {combination_label(combos[index])}"
    others = sum(1 for _, e in outcomes if e is not None) - 1
    more = f" ({others} more combination{'s' if others != 1 else ''} failed)" if others else ""
    if isinstance(error, RunError):
        error.message = f"{label}: {error.message}{more}"
        error.step_id = error.step_id or step.id
        error.partial_output = partial or None
        return error
    wrapped = StepError(
        message=f"{label}: {type(error).__name__}: {error}{more}",
        hint="the other combinations ended and were kept; fetchflow run --resume RUN_ID "
        "runs only the ones that did not",
        step_id=step.id,
        partial_output=partial or None,
    )
    wrapped.__cause__ = error
    return wrapped
