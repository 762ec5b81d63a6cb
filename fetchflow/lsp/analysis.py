"""What the language server says about a workflow file, in plain Python (no LSP library).

- Diagnostics are ``fetchflow validate``'s problems (the same check, the same words), each
  placed at its ``line:col``.
- Completion inside a template (``<< hero.output.0.`` ...) offers the references the step can
  use (:mod:`fetchflow.workflow.refs`), ``matrix.<axis>`` in a step with a matrix; on a
  step's key line, the fields of its type with
  their descriptions; after ``type:``, the step types.
- Hover on a step id or a reference shows what it holds: a step's output fields, an input's
  type and default.

A file being edited is often invalid (a template half typed): completion and hover read the
file leniently (steps, types and inputs as far as they can be read) and fall back on the last
version that could be read at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fetchflow.errors import Problem, WorkflowInvalid, with_hint
from fetchflow.registry import StepRegistry
from fetchflow.step import Step
from fetchflow.templating import Templates
from fetchflow.workflow.checking import check_text, template_search_path
from fetchflow.workflow.loading import load_yaml
from fetchflow.workflow.refs import (
    ANY_ITEM,
    Ref,
    children,
    input_refs,
    matrix_refs,
    output_refs,
    readable_steps,
    run_refs,
    type_text,
)
from fetchflow.workflow.spec import STEP_COMMON_KEYS, InputSpec, StepCommon

__all__ = ["Analyzer", "Completion", "Diagnostic", "Outline", "StepOutline", "outline_of"]

_OPENERS = ("<<", "{{", "<%", "{%")
_CLOSERS = (">>", "}}", "%>", "%}")
_PATH_BEFORE = re.compile(r"[A-Za-z_]\w*(?:\.\w*)*$")
_WORD = re.compile(r"[\w.]")
_KEY_TYPED = re.compile(r"^(\s*)(- )?([A-Za-z_]\w*)?$")
_TYPE_VALUE = re.compile(r"^\s*(- )?type:\s*([\w-]*)$")
_IDENT = re.compile(r"\w+")
#: ``<id>.output`` in a step's text (not ``x.<id>.output`` nor ``xid.output``).
_READ = re.compile(r"(?<![\w.])(\w+)\s*\.\s*output\b")
#: At most this many item indexes are offered after ``hero.output.``.
MAX_INDEXES = 10


@dataclass(frozen=True)
class Diagnostic:
    """One problem, at 0-based ``line`` from ``start`` to ``end`` (characters)."""

    line: int
    start: int
    end: int
    message: str


@dataclass(frozen=True)
class Completion:
    """One completion: ``kind`` is ``reference``, ``step``, ``field`` or ``type``."""

    label: str
    kind: str
    detail: str = ""
    documentation: str = ""
    insert_text: str | None = None


@dataclass(frozen=True)
class StepOutline:
    """A step as far as it could be read: its id, type, where it starts, its fields."""

    id: str
    type: str | None
    line: int
    fields: dict[str, object]


@dataclass(frozen=True)
class Outline:
    """A workflow as far as it could be read (it may not validate)."""

    steps: list[StepOutline]
    inputs: dict[str, InputSpec]
    edges: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def step_at(self, line: int) -> StepOutline | None:
        """The step whose lines hold the 1-based ``line`` (None above the first step)."""
        found = None
        for step in self.steps:
            if step.line <= line:
                found = step
        return found

    def step(self, step_id: str) -> StepOutline | None:
        """The step with this id."""
        return next((step for step in self.steps if step.id == step_id), None)


def _axes(step: StepOutline | None) -> dict[str, Any]:
    """The step's matrix axes as far as they are written (none without a matrix)."""
    matrix = step.fields.get("matrix") if step is not None else None
    if not isinstance(matrix, dict):
        return {}
    return {axis: values for axis, values in matrix.items() if isinstance(axis, str)}


def _matrix_refs(step: StepOutline | None) -> list[Ref]:
    """``matrix.<axis>`` of each axis of the step (a file being edited need not validate)."""
    axes = _axes(step)
    if step is None or not axes:
        return []
    return matrix_refs(StepCommon.model_construct(id=step.id, type=step.type or "", matrix=axes))


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def outline_of(text: str, file: str) -> Outline | None:
    """The steps, types and inputs of ``text`` as far as they can be read; None when it is
    not YAML or not a mapping."""
    loaded = load_yaml(text, file)
    data = loaded.data
    if not isinstance(data, dict):
        return None
    inputs: dict[str, InputSpec] = {}
    raw_inputs = data.get("inputs")
    if isinstance(raw_inputs, dict):
        for name, spec in raw_inputs.items():
            try:
                inputs[str(name)] = InputSpec.model_validate(spec or {})
            except ValueError:
                continue
    steps: list[StepOutline] = []
    raw_steps = data.get("steps")
    for index, raw in enumerate(raw_steps if isinstance(raw_steps, list) else []):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            continue
        kind = raw.get("type")
        line = loaded.source.value(("steps", index)).line
        steps.append(StepOutline(raw["id"], kind if isinstance(kind, str) else None, line, raw))
    ids = [step.id for step in steps]
    # Ids that are words are found by one scan of each step's text (a pattern per id, as
    # many as there are steps, would be compiled again and again past re's cache: a
    # 600-step file took 49 s per hover); any other id (a file being edited) by its own.
    odd = [other for other in ids if not _IDENT.fullmatch(other)]
    place = {other: number for number, other in reversed(list(enumerate(ids)))}
    edges: dict[str, tuple[str, ...]] = {}
    for step in steps:
        text_of_step = "\n".join(_strings(step.fields))
        needs = step.fields.get("needs")
        needed = [needs] if isinstance(needs, str) else needs if isinstance(needs, list) else []
        read = {match.group(1) for match in _READ.finditer(text_of_step)}
        read.update(
            other
            for other in odd
            if re.search(rf"(?<![\w.]){re.escape(other)}\s*\.\s*output\b", text_of_step)
        )
        read.update(other for other in needed if isinstance(other, str))
        found = sorted((other for other in read if other in place), key=place.__getitem__)
        edges[step.id] = tuple(other for other in found if other != step.id)
    return Outline(steps, inputs, edges)


class Analyzer:
    """Answers for one editor session (it keeps the last readable outline of each file).

    Args:
        registry: The step types.
    """

    def __init__(self, registry: StepRegistry) -> None:
        self.registry = registry
        self._outlines: dict[str, Outline] = {}

    # -- diagnostics -------------------------------------------------------------------------

    def diagnostics(self, text: str, path: Path) -> list[Diagnostic]:
        """``fetchflow validate``'s problems with ``text`` (as the file at ``path``)."""
        file = str(path)
        templates = Templates(template_search_path(path))
        try:
            check_text(text, file, self.registry, templates, file_path=path)
        except WorkflowInvalid as invalid:
            problems = invalid.problems
        else:
            problems = []
        lines = text.split("\n")
        return [_diagnostic(problem, file, lines) for problem in problems]

    # -- completion --------------------------------------------------------------------------

    def outline(self, text: str, path: Path) -> Outline | None:
        """``text``'s outline, or the last one read of this file when it cannot be read."""
        found = outline_of(text, str(path))
        if found is not None:
            self._outlines[str(path)] = found
            return found
        return self._outlines.get(str(path))

    def refs_for(self, outline: Outline, step_id: str | None) -> list[Ref]:
        """Every reference the step can use (all steps' outputs above the steps)."""
        refs = input_refs(outline.inputs)
        readable = (
            readable_steps(outline.edges, step_id) if step_id in outline.edges else outline.edges
        )
        for other in readable:
            step = outline.step(other)
            step_cls = self.registry.get(step.type) if step and step.type else None
            if step is not None and step_cls is not None:
                refs += output_refs(other, step_cls, _length(step_cls, step.fields))
        own = _matrix_refs(outline.step(step_id)) if step_id is not None else []
        return refs + run_refs() + own

    def complete(self, text: str, path: Path, line: int, character: int) -> list[Completion]:
        """What may be typed at 0-based ``line``/``character``."""
        lines = text.split("\n")
        current = lines[line] if line < len(lines) else ""
        before = current[:character]
        outline = self.outline(text, path)
        if outline is None:
            return []
        step = outline.step_at(line + 1)
        if _in_template(before):
            typed = _PATH_BEFORE.search(before)
            return self._references(outline, step, typed.group(0) if typed else "")
        if step is None:
            return []
        if _TYPE_VALUE.match(before):
            return [
                Completion(name, "type", "step type", step_cls.summary())
                for name, step_cls in self.registry.items()
            ]
        if _KEY_TYPED.match(before):
            return self._fields(step)
        return []

    def _references(
        self, outline: Outline, step: StepOutline | None, typed: str
    ) -> list[Completion]:
        refs = self.refs_for(outline, step.id if step else None)
        prefix = typed.rpartition(".")[0]
        if not prefix and "." not in typed:
            roots = [
                Completion("inputs", "reference", "the workflow's inputs"),
                Completion("run", "reference", "id, name, started_at"),
            ]
            axes = _axes(step)
            if axes:
                roots.append(
                    Completion("matrix", "reference", f"this combination's {', '.join(axes)}")
                )
            for ref in refs:
                if ref.path.endswith(".output") and ref.path.count(".") == 1:
                    other = outline.step(ref.root)
                    kind = other.type if other else ""
                    roots.append(Completion(ref.root, "step", kind or "", _hover_step(ref, refs)))
            return roots
        found: list[Completion] = []
        for ref in children(refs, prefix):
            label = ref.path.rsplit(".", 1)[-1]
            if label == ANY_ITEM:
                parent = next((r for r in refs if r.path == ref.path.rsplit(".", 1)[0]), None)
                count = _count(parent.items if parent else "")
                for index in range(count):
                    found.append(Completion(str(index), "reference", ref.type, ref.description))
                continue
            found.append(Completion(label, "reference", ref.type, ref.description))
        return found

    def _fields(self, step: StepOutline) -> list[Completion]:
        step_cls = self.registry.get(step.type) if step.type else None
        present = set(step.fields)
        found: list[Completion] = []
        common = StepCommon.model_json_schema()
        sources: list[dict[str, Any]] = [common]
        if step_cls is not None:
            sources.insert(0, step_cls.config_model.model_json_schema())
        for schema in sources:
            defs = schema.get("$defs", {})
            for name, prop in schema.get("properties", {}).items():
                if name in present or (schema is common and name not in STEP_COMMON_KEYS):
                    continue
                found.append(
                    Completion(
                        name,
                        "field",
                        type_text(prop, defs),
                        str(prop.get("description", "")),
                        f"{name}: ",
                    )
                )
        return found

    # -- hover -------------------------------------------------------------------------------

    def hover(self, text: str, path: Path, line: int, character: int) -> str | None:
        """Markdown about the step id or reference at 0-based ``line``/``character``."""
        lines = text.split("\n")
        current = lines[line] if line < len(lines) else ""
        start = min(character, len(current))  # a client may point past the line's end
        while start > 0 and _WORD.match(current[start - 1]):
            start -= 1
        end = character
        while end < len(current) and _WORD.match(current[end]) and current[end] != ".":
            end += 1
        token = current[start:end].strip(".")
        if not token:
            return None
        outline = self.outline(text, path)
        if outline is None:
            return None
        step = outline.step_at(line + 1)
        refs = self.refs_for(outline, None)
        root = token.split(".", 1)[0]
        if root == "matrix" and step is not None:
            ref = _ref_at(_matrix_refs(step), token)
            return _hover_ref(ref) if ref else None
        if root in ("inputs", "run"):
            ref = _ref_at(refs, token)
            return _hover_ref(ref) if ref else None
        if outline.step(root) is None:
            return None
        if step is not None and step.id != root:
            refs = self.refs_for(outline, step.id)
        output = next((r for r in refs if r.path == f"{root}.output"), None)
        if output is None:
            own = self.refs_for(outline, None)
            output = next((r for r in own if r.path == f"{root}.output"), None)
            refs = own
        if output is None:
            return None
        shown = _hover_step(output, refs, outline.step(root))
        ref = _ref_at(refs, token)
        if ref is not None and ref.path != output.path and "." in token:
            return f"{_hover_ref(ref)}\n\n---\n\n{shown}"
        return shown


def _length(step_cls: type[Step[Any, Any]], fields: dict[str, object]) -> Any:
    from fetchflow.templating import is_template

    config = {k: v for k, v in fields.items() if k not in STEP_COMMON_KEYS}
    templated = frozenset(k for k, v in config.items() if any(is_template(s) for s in _strings(v)))
    try:
        return step_cls.output_length(config, templated)
    except Exception:  # a field half written: the length is unknown
        return None


def _count(items: str) -> int:
    """How many indexes to offer: the known count, the most there may be, else one."""
    number = items.removeprefix("at most ")
    return min(int(number), MAX_INDEXES) if number.isdigit() and int(number) > 0 else 1


def _in_template(before: str) -> bool:
    """Whether the text before the cursor ends inside ``<< ... >>`` (or ``{{ }}``, ...)."""
    opened = max(before.rfind(opener) for opener in _OPENERS)
    if opened < 0:
        return False
    return all(before.find(closer, opened + 2) < 0 for closer in _CLOSERS)


def _ref_at(refs: list[Ref], token: str) -> Ref | None:
    parts = [ANY_ITEM if part.isdigit() else part for part in token.split(".")]
    wanted = ".".join(parts)
    return next((ref for ref in refs if ref.path == wanted), None)


def _hover_ref(ref: Ref) -> str:
    text = f"`{ref.path}` — {ref.type}"
    if ref.description:
        text += f": {ref.description}"
    if ref.has_default:
        import json

        text += f"\n\ndefault: `{json.dumps(ref.default, ensure_ascii=False)}`"
    return text


def _hover_step(output: Ref, refs: list[Ref], step: StepOutline | None = None) -> str:
    head = f"**{output.root}**" + (f" ({step.type})" if step and step.type else "")
    size = f", {output.items} item{'' if output.items == '1' else 's'}" if output.items else ""
    lines = [head, "", f"`{output.path}` — {output.type}{size}"]
    inside = [r for r in refs if r.path.startswith(f"{output.path}.") and r.path != output.path]
    if inside:
        lines.append("")
        lines += [
            f"- `{ref.path}` {ref.type}" + (f" — {ref.description}" if ref.description else "")
            for ref in inside
        ]
    return "\n".join(lines)


def _diagnostic(problem: Problem, file: str, lines: list[str]) -> Diagnostic:
    what = problem.what
    message = f"{what}: {problem.message}" if what else problem.message
    if problem.file != file:  # in a template file the workflow includes
        message = f"{problem.where}: {message}"
        return Diagnostic(0, 0, 0, with_hint(message, problem.hint))
    line = max(problem.line - 1, 0)
    start = max(problem.column - 1, 0)
    text = lines[line] if line < len(lines) else ""
    end = start
    while end < len(text) and _WORD.match(text[end]):
        end += 1
    if end == start:
        end = min(start + 1, len(text)) if text else start
    return Diagnostic(line, start, end, with_hint(message, problem.hint))
